"""Benchmark 1: ``epspp.ops.PAMR`` against the conv-based reference formulation (``pamr_reference.py``).

PAMR (Araslanov & Roth, CVPR 2020) as EPS++ uses it, 10 iterations. Cases, each as the package runs it:

- ``a`` training-time refinement (``LocalizationModule.refine_maps``): B = 8, C + 1 = 21 softmax maps of
  56x56 (448 crop at output stride 8), the image resized to the map size (bilinear, as ``refine_maps``
  does), dilations (1, 2, 4, 8, 12, 24);
- ``b`` full-resolution pseudo-mask refinement (``predict_step`` with ``refine: pamr``): B = 1, 21 score
  maps already at the image's 500x375 (W x H) resolution, dilations (1, 2, 4, 8, 12, 24);
- ``demo`` the demo's training-time refinement (``configs/demo/localization_eps++.yaml``): B = 16, 6 maps
  of 8x8 (64 crop, OS 8), dilations (1, 2).

All implementations of a case run in one process under ``torch.no_grad``, interleaved (see
``common.side_by_side``); the median of the timed calls is reported. Peak memory: the peak of the tensor
memory a call allocates (CUDA: ``max_memory_allocated``; CPU: the allocator's events replayed from the
profiler, ``common.cpu_tensor_peak``), inputs excluded, output included. The outputs are compared
(max abs difference, goal <= 1e-5).

``ours (1 thread)`` is our PAMR with ``torch.set_num_threads(1)`` (CPU only); on CUDA ``ours (compile)``
is ``torch.compile(PAMR)``.

Usage: ``python benchmarks/bench_pamr.py [--device cpu|cuda] [--cases a b demo] [--quick]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import (
    CpuMeter,
    base_parser,
    device_peak,
    emit,
    format_load,
    format_other,
    goal,
    goals_table,
    load_snapshot,
    max_busy,
    md_table,
    median,
    setup_run,
    side_by_side,
    spread,
    wait_for_quiet,
)
from pamr_reference import ReferencePAMR

from epspp.ops import PAMR

FULL = (1, 2, 4, 8, 12, 24)
CASES = {
    "a": dict(
        batch=8,
        classes=21,
        crop=(448, 448),
        size=(56, 56),
        dilations=FULL,
        label="a: training maps, B=8, C=21, 56x56 (448 crop, image resized to 56x56)",
    ),
    "b": dict(
        batch=1, classes=21, crop=None, size=(375, 500), dilations=FULL, label="b: full resolution, B=1, C=21, 500x375"
    ),
    "demo": dict(
        batch=16,
        classes=6,
        crop=(64, 64),
        size=(8, 8),
        dilations=(1, 2),
        label="demo: training maps, B=16, C=6, 8x8 (64 crop), dilations (1, 2)",
    ),
}
# timed calls per implementation (full run, --quick)
ROUNDS = {
    "a": ({"ours": 10, "ours (1 thread)": 10, "reference": 5}, 3),
    "b": ({"ours": 5, "ours (1 thread)": 5, "reference": 3}, 1),
    "demo": ({"ours": 30, "ours (1 thread)": 30, "reference": 10}, 3),
}
NUM_ITER = 10
TOLERANCE = 1e-5


def make_inputs(cfg: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic image-like input (spatially correlated, normalized) and softmax maps, as PAMR gets them."""
    gen = torch.Generator().manual_seed(0)
    height, width = cfg["crop"] or cfg["size"]
    image = F.avg_pool2d(torch.randn(cfg["batch"], 3, height, width, generator=gen), 5, 1, 2) * 2.0
    if cfg["crop"] is not None:  # refine_maps: the image resized to the map size
        image = F.interpolate(image, cfg["size"], mode="bilinear", align_corners=False)
    logits = torch.randn(cfg["batch"], cfg["classes"], *cfg["size"], generator=gen).mul(3)
    return image.to(device), logits.softmax(1).to(device)


def one_thread(fn):
    def call():
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(previous)

    return call


def run_case(name: str, device: torch.device, quick: bool, wait: float) -> dict:
    cfg = CASES[name]
    image, masks = make_inputs(cfg, device)
    ours = PAMR(NUM_ITER, cfg["dilations"]).to(device)
    reference = ReferencePAMR(NUM_ITER, cfg["dilations"]).to(device)
    impls = {"ours": lambda: ours(image, masks)}
    if device.type == "cpu":
        impls["ours (1 thread)"] = one_thread(lambda: ours(image, masks))
    else:
        try:
            compiled = torch.compile(ours)
            with torch.no_grad():
                compiled(image, masks)
            impls["ours (compile)"] = lambda: compiled(image, masks)
        except Exception as error:  # noqa: BLE001 - report, do not fail the benchmark
            print(f"torch.compile of PAMR failed: {error}")
    impls["reference"] = lambda: reference(image, masks)

    full, quick_rounds = ROUNDS[name]
    rounds = {k: (quick_rounds if quick else full.get(k, full["ours"])) for k in impls}
    load_before = wait_for_quiet(wait)
    meter = CpuMeter()
    with torch.no_grad():
        outputs, peaks = {}, {}
        for impl, fn in impls.items():  # the profiled call doubles as the warm-up
            outputs[impl], peaks[impl] = device_peak(fn, device)
        times = side_by_side(impls, rounds, device, warmup=0)
    other = meter.other()
    load_after = load_snapshot()
    diffs = {k: (outputs[k].float() - outputs["reference"].float()).abs().max().item() for k in impls}
    return {
        "case": name,
        "label": cfg["label"],
        "times": times,
        "peaks": peaks,
        "diffs": diffs,
        "load": [format_load(load_before), format_load(load_after)],
        "busy": max_busy(load_before, load_after),
        "other": other,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["a", "b", "demo"], choices=sorted(CASES))
    args = parser.parse_args()
    device = setup_run(args)
    results = [run_case(case, device, args.quick, args.wait_quiet) for case in args.cases]

    mem_kind = "CUDA max_memory_allocated" if device.type == "cuda" else "CPU tensor allocations (profiler)"
    rows = []
    goals = []
    for res in results:
        t_ref = median(res["times"]["reference"])
        m_ref = res["peaks"]["reference"]
        for impl in res["times"]:
            t = median(res["times"][impl])
            m = res["peaks"][impl]
            is_ref = impl == "reference"
            rows.append(
                [
                    res["label"] if impl == next(iter(res["times"])) else "",
                    impl,
                    f"{t * 1e3:.1f}",
                    spread(res["times"][impl]),
                    len(res["times"][impl]),
                    "1.0x" if is_ref else f"{t_ref / t:.1f}x",
                    f"{m / 2**20:.1f}",
                    "1.0x" if is_ref else f"{m_ref / max(m, 1):.1f}x",
                    "-" if is_ref else f"{res['diffs'][impl]:.1e}",
                ]
            )
        if res["case"] == "b":
            speed = t_ref / median(res["times"]["ours"])
            memory = m_ref / max(res["peaks"]["ours"], 1)
            diff = res["diffs"]["ours"]
            goals.append(goal("PAMR (b): speed vs reference", ">= 3x", f"{speed:.1f}x", speed >= 3))
            goals.append(goal("PAMR (b): peak memory vs reference", ">= 5x less", f"{memory:.1f}x less", memory >= 5))
            goals.append(goal("PAMR (b): same output", "<= 1e-5", f"{diff:.1e}", diff <= TOLERANCE))

    lines = [
        "## 1. PAMR vs the reference formulation",
        "",
        f"Method: {NUM_ITER} iterations; every implementation of a case in one process, calls interleaved "
        f"(order rotated each round) after one warm-up call; figures are medians (range and count given). "
        f"Peak memory = {mem_kind} during one call, inputs excluded, output included. "
        "Reference = `benchmarks/pamr_reference.py`, the conv-based formulation of Araslanov & Roth's code "
        "(materializes the (B, C, 8 x dilations, H, W) neighbour tensor every iteration). Speed-up and memory "
        "ratio are reference / implementation.",
        "",
        md_table(
            [
                "case",
                "implementation",
                "median (ms)",
                "range (ms)",
                "n",
                "speed-up",
                "peak (MiB)",
                "memory ratio",
                "max abs diff",
            ],
            rows,
        ),
        "",
        "CPU share used by other processes during each case: "
        + "; ".join(f"{r['case']}: {format_other(r['other'])}" for r in results)
        + ". Load: "
        + "; ".join(f"{r['case']}: {r['load'][0]} -> {r['load'][1]}" for r in results),
        "",
    ]
    if goals:
        lines += [goals_table(goals), ""]
    payload = {
        "goals": goals,
        "results": [{k: v for k, v in r.items()} for r in results],
    }
    emit(args, "\n".join(lines), payload)


if __name__ == "__main__":
    main()
