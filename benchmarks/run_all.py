"""Run every benchmark of ``benchmarks/`` and write ``BENCHMARKS.md`` (``make bench``).

Each benchmark runs in a fresh subprocess (its own threads, allocator and imports) and hands back a
markdown section and a JSON summary; this script adds the machine, the method, a summary of the goals
and the explanations computed from the figures, and writes the file atomically, keeping the numbered
sections of the file it replaces that it does not generate (the hand-timed ones; ``sections.py``). Before each benchmark
it waits (up to ``--wait-quiet`` s) for the other processes to leave the CPUs mostly idle, and it
records the load next to each figure either way.

Usage::

    python benchmarks/run_all.py --out BENCHMARKS.md                  # CPU, ~6-9 min on 2 cores
    python benchmarks/run_all.py --quick --out /tmp/B.md              # smoke run, fewer repeats
    python benchmarks/run_all.py --device cuda --out BENCHMARKS_GPU.md
        # CUDA: the same benchmarks on the GPU, plus stage-1 steps with bf16 autocast + channels_last and
        # with torch.compile, and PAMR under torch.compile
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    HERE,
    REPO,
    CpuMeter,
    format_load,
    format_other,
    machine_info,
    md_table,
    median,
    verdict,
    wait_for_quiet,
)
from sections import merge_sections, section_number

PYTHON = sys.executable


def run(name: str, script: str, extra: list[str], args: argparse.Namespace, tmp: Path, log: list[str]) -> dict:
    md, js = tmp / f"{name}.md", tmp / f"{name}.json"
    cmd = [
        PYTHON,
        str(HERE / script),
        "--device",
        args.device,
        "--md-out",
        str(md),
        "--json-out",
        str(js),
        "--wait-quiet",
        str(min(10.0, args.wait_quiet)),
        *extra,
    ]
    if args.quick:
        cmd.append("--quick")
    snap = wait_for_quiet(args.wait_quiet)
    print(f"[bench] {name}: {' '.join(cmd[1:])}  ({format_load(snap)})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    meter = CpuMeter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=args.timeout)
    other = meter.other()
    elapsed = time.perf_counter() - start
    log.append(
        f"- `{name}`: {elapsed:.0f} s; other processes used {format_other(other)} of the CPUs meanwhile; "
        f"started at {format_load(snap)}"
    )
    if res.returncode != 0 or not md.is_file():
        tail = (res.stderr or res.stdout)[-3000:]
        print(tail, file=sys.stderr)
        text = f"**{name} failed** (exit {res.returncode}):\n\n```\n{tail}\n```\n"
        return {"name": name, "ok": False, "markdown": text, "json": {}, "seconds": elapsed}
    print(f"[bench] {name}: done in {elapsed:.0f} s", file=sys.stderr, flush=True)
    return {
        "name": name,
        "ok": True,
        "markdown": md.read_text(),
        "json": json.loads(js.read_text()),
        "seconds": elapsed,
    }


# ------------------------------------------------------------------------------------- analysis
CONTENDED = 0.15  # other processes above this share of the CPUs during a measurement: flagged


def contention(share: float | None) -> str:
    """A warning when other processes used a noticeable share of the CPUs during a measurement."""
    if share is None or share < CONTENDED:
        return ""
    return (
        f" **Measured while other processes used {100 * share:.0f}% of the CPUs**: with two OpenMP threads "
        "on two shared cores such figures can be several times the quiet-machine ones (see benchmark 1's "
        "1-thread column); compare the ratios, not the absolute times."
    )


def pamr_notes(payload: dict) -> list[str]:
    notes = []
    for res in payload.get("results", []):
        t = {k: median(v) for k, v in res["times"].items()}
        peaks = res["peaks"]
        if res["case"] == "b":
            notes.append(
                f"- (b) full resolution: ours {t['ours'] * 1e3:.0f} ms vs reference {t['reference'] * 1e3:.0f} ms "
                f"({t['reference'] / t['ours']:.1f}x), peak {peaks['ours'] / 2**20:.0f} vs "
                f"{peaks['reference'] / 2**20:.0f} MiB ({peaks['reference'] / max(peaks['ours'], 1):.0f}x less), "
                f"outputs equal to {res['diffs']['ours']:.0e}. Ours computes the (B, 48, H, W) affinities once and "
                "accumulates the 48 weighted neighbours in place from slices of one replicate-padded copy of the "
                "masks (two buffers used in turn); the reference gathers the neighbours with a dilated one-hot "
                "convolution per dilation, materializing (B, C, 48, H, W) (~720 MiB here) and its product with "
                "the affinities at every iteration." + contention(res.get("other"))
            )
        if res["case"] == "a":
            notes.append(
                f"- (a) training maps: ours {t['ours'] * 1e3:.0f} ms vs reference {t['reference'] * 1e3:.0f} ms, "
                f"{peaks['ours'] / 2**20:.0f} vs {peaks['reference'] / 2**20:.0f} MiB. This case now refines "
                "56x56 maps with the image resized to 56x56, as `LocalizationModule.refine_maps` does; the "
                "previous version of this benchmark refined them at a 448x448 image, which training never does "
                "(and for which the reference needs ~19 GiB)." + contention(res.get("other"))
            )
        if res["case"] == "demo":
            notes.append(
                f"- demo (8x8 maps, dilations 1-2): ours {t['ours'] * 1e3:.1f} ms, reference "
                f"{t['reference'] * 1e3:.1f} ms; at this size both are kernel-launch overhead."
                + contention(res.get("other"))
            )
        if "ours (1 thread)" in t and t["ours"] > 1.2 * t["ours (1 thread)"]:
            slower = t["ours"] / t["ours (1 thread)"]
            notes.append(
                f"- {res['case']}: with {res.get('threads', 2)} threads ours took {slower:.1f}x the single-threaded "
                "time. PAMR is hundreds of short kernels (48 neighbours x 10 iterations); each "
                "parallel region waits for all its OpenMP threads, and a thread that loses its core to another "
                "process stalls the region for a scheduler time slice. This happens whenever the cores are shared "
                "(other jobs, or the data-loader workers of the same run, see benchmark 4); other processes used "
                f"{format_other(res.get('other'))} of the CPUs during this case."
            )
    return notes


def step_notes(payload: dict) -> list[str]:
    notes = []
    for res in payload.get("results", []):
        base = median(res["times"]["none"])
        ird = median(res["times"]["ird"]) / base - 1
        eps = median(res["times"]["eps"]) / base - 1
        paired = res.get("paired_overhead")
        pieces = {k: median(v) for k, v in res["pieces"].items()}
        extra = (pieces["refine_maps (all three)"] + pieces["IRD loss fwd+bwd"]) / base
        text = (
            f"- {res['label']} (maps {res['maps'][0]}x{res['maps'][1]}): ird {100 * ird:+.1f}% "
            f"(paired rounds {100 * (paired or 0):+.1f}%), eps {100 * eps:+.1f}% over none. Pieces: PAMR "
            f"{pieces['PAMR'] * 1e3:.1f} ms ({100 * pieces['PAMR'] / base:.1f}% of the none step), image resize "
            f"{pieces['image resize'] * 1e3:.2f} ms, extra softmax {pieces['softmax of detached maps'] * 1e3:.2f} "
            f"ms, IRD loss forward + backward {pieces['IRD loss fwd+bwd'] * 1e3:.2f} ms (EPS loss "
            f"{pieces['EPS loss fwd+bwd'] * 1e3:.2f} ms): refine_maps + IRD loss = {100 * extra:.1f}% of the "
            "none step, what ird should add."
        )
        if res["setting"] == "demo":
            text += (
                " At 8x8 maps PAMR costs kernel-launch overhead, not arithmetic: ~380 kernels (the affinities of 16 "
                "neighbours, then 10 iterations of 16 accumulations and a border refresh) on tensors of a few "
                "thousand elements, a few ms whatever the map size. A variant that stacks the neighbours to launch "
                "fewer kernels was tried while writing this benchmark (2.1 vs 3.4 ms at this size, ~2% of the "
                "step, but 2-4x slower at 20x20 and 32x32 maps) and not adopted."
            )
            if ird > 0.10:
                text += (
                    f" The goal is missed by {100 * (ird - 0.10):.1f} points: with a step this short, PAMR's "
                    "fixed cost is the whole margin; a quiet-machine run measures about +7%."
                )
        text += contention(max(res.get("other") or 0.0, res.get("other_pieces") or 0.0))
        notes.append(text)
    return notes


def pseudo_notes(payload: dict) -> list[str]:
    notes = []
    for res in payload.get("results", []):
        t, n, wall = res["timers"], max(res["images"], 1), res["wall"]
        forward = t.get("network forward", 0.0)
        outside = 1 - forward / wall
        pieces = {k: v for k, v in t.items() if not k.endswith("(total)") and k != "network forward"}
        top = sorted(pieces.items(), key=lambda kv: -kv[1])[:3]
        top_text = ", ".join(f"{k} {1e3 * v / n:.2f} ms/image" for k, v in top)
        text = (
            f"- {res['label']}: {res['images'] / wall:.1f} images/s, network {1e3 * forward / n:.1f} ms/image, "
            f"{100 * outside:.0f}% of the stage outside the network; largest pieces outside: {top_text}."
        )
        if res["setting"] == "demo" and outside >= 0.20:
            rates = {r["setting"]: r["images"] / r["wall"] for r in payload.get("results", [])}
            text += (
                f" The demo network costs only {1e3 * forward / n:.1f} ms per image, so fixed per-image costs decide "
                "the share: a one-image batch through the worker processes (~1.5 ms of pickling and shared-memory "
                "file descriptors for its 5 tensors, measured alone), Lightning's per-batch loop, the PNG "
                "(~0.5 ms), the argmax and the small ops of `predict_step`."
            )
            if "demo0" in rates:
                text += (
                    f" Loading in the main process (`demo0`, `--data.num_workers 0`) gives {rates['demo0']:.0f} "
                    f"instead of {rates['demo']:.0f} images/s: worth setting in `configs/demo/pseudo_masks.yaml`."
                )
            text += (
                " Under 20% would need several images per `predict_step` (the demo's images all have the same "
                "size): a change of the one-image-per-batch prediction contract, beyond a small fix."
            )
        if res["setting"] == "voc":
            pamr = t.get("PAMR", 0.0)
            text += (
                f" PAMR at full resolution is {1e3 * pamr / n:.0f} ms/image ({100 * pamr / wall:.0f}% of the "
                "stage); without it (the VOC config's `refine: none`) the work outside the network is "
                f"{100 * (1 - forward / (wall - pamr)):.0f}%."
            )
        text += contention(res.get("other"))
        notes.append(text)
    return notes


def data_notes(payload: dict) -> list[str]:
    e2e = payload.get("end_to_end", {})
    notes = []
    for name in ("stage 1 ird", "stage 3 wsss"):
        ideal = e2e.get(f"{name} / in-memory batches")
        real = {k: v for k, v in e2e.items() if k.startswith(f"{name} / real loader")}
        nice = next((v for k, v in real.items() if "default worker_nice" in k), None)
        normal = next((v for k, v in real.items() if "worker_nice 0" in k), None)
        zero = e2e.get(f"{name} / real loader, 0 workers")
        if not (ideal and nice and normal and zero):
            continue
        bound = payload.get("bounds", {}).get(name, {})
        notes.append(
            f"- demo {name}: in-memory batches {ideal:.0f} samples/s; real loader with 2 workers {nice:.0f} "
            f"(niceness 19, the new default on the CPU) vs {normal:.0f} at normal priority; 0 workers {zero:.0f}. "
            f"Loading one sample costs {100 * bound.get('serial', 0):.0f}% of a step's time per sample: that is "
            f"what serial loading adds, and perfectly overlapped on the {payload.get('cores', 2)} cores it would "
            f"still add {100 * bound.get('overlapped', 0):.0f}%."
            + contention((payload.get("other") or {}).get(f"end to end {name}"))
        )
    missed = any(g["met"] is False for g in payload.get("goals", []) if g["name"].startswith("end to end"))
    notes.append(
        f"- Why {'the goal is missed' if missed else 'this needed attention'}: the loader alone is several times "
        "faster than the step, so throughput is not the limit; CPU time is. The step keeps both cores busy with "
        "two OpenMP threads (which also spin between kernels), so the workers' ~1 ms per 64-px sample (PIL "
        "decoding of three files, albumentations' per-call overhead; no single hot spot) finds no idle core: "
        "the best achievable is about the serial cost above, which 0 workers or niced workers reach. At normal "
        "priority the workers do worse than serial: they preempt the step's threads inside parallel regions, "
        "which then wait for the descheduled thread (the effect seen in benchmark 1); niceness 19 removes that "
        "penalty. Going further needs a cheaper per-sample pipeline (e.g. the 64-px dataset decoded once into "
        "memory), more cores, or the step on a GPU; with a ResNet step (benchmark 2) the loader is tens of times "
        "ahead."
    )
    return notes


# ------------------------------------------------------------------------------------- document
SRC_CHANGES = """\
Made for the goals above (unit tests: `.venv/bin/pytest -q tests/unit` passes):

- `src/epspp/data/workers.py` (new) and `EPSDataModule(worker_nice=None)` in `src/epspp/data/datamodule.py`:
  the data-loading workers run at niceness 19 when the trainer's root device is the CPU (`worker_nice: null`,
  the default; set an integer to choose, 0 = unchanged). The `worker_init_fn` that does it also calls
  Lightning's `pl_worker_init_function` when `seed_everything(workers=True)` asked for worker seeding (Lightning
  only adds its own when a loader has none), so seeding is unchanged. On a GPU nothing changes. (Benchmark 4;
  stage 2 is unaffected: the demo pseudo-masks ran at 65-67 images/s with niced or normal-priority workers,
  3 alternating runs each on a quiet machine.)
- `src/epspp/data/classes.py`: `voc_palette()` returns a copy of a cached table instead of rebuilding it with
  a Python loop on every call (0.37 ms; the pseudo-mask writer calls it once per image). (Benchmark 3.)
"""

GPU_PENDING = """\
No GPU was available to this run: GPU figures are pending. To produce them on a CUDA machine:

    .venv/bin/python benchmarks/run_all.py --device cuda --out BENCHMARKS_GPU.md

With `--device cuda` the same benchmarks run on the GPU (CUDA `max_memory_allocated` for peak memory, timings
with `torch.cuda.synchronize`), plus: PAMR under `torch.compile` (benchmark 1), and the stage-1 step with bf16
autocast + channels_last and with bf16 + channels_last + `torch.compile` of the network (benchmark 2,
`bench_step.py --amp --channels-last [--compile]`), and the ResNet-38d VOC step at the recipe's batch 8 with
bf16 + channels_last (benchmark 5, `bench_resnet38d.py --batches 8 --amp --channels-last`). These variants are
implemented but only exercised when CUDA is available.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument(
        "--only", nargs="+", default=None, choices=["pamr", "step", "pseudo", "data", "resnet38d", "crf", "evaluate"]
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        help="seconds to wait, before each benchmark, for the CPUs to be < 25%% busy with other work",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per-benchmark time limit (s)")
    parser.add_argument("--json-dir", type=Path, default=None, help="also keep every benchmark's raw JSON here")
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    info = machine_info(args.device)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available here")
        info = machine_info(args.device)
    from datasets import ensure_synthetic, ensure_voc_like

    ensure_synthetic()
    ensure_voc_like()
    log: list[str] = []
    start_load = wait_for_quiet(0)
    cuda = args.device.startswith("cuda")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plan = [
            ("pamr", "bench_pamr.py", []),
            ("step", "bench_step.py", []),
            ("pseudo", "bench_pseudo.py", []),
            ("data", "bench_data.py", ["--step-json", str(tmp / "step.json")]),
            ("resnet38d", "bench_resnet38d.py", []),
            ("crf", "bench_crf.py", []),
            ("evaluate", "bench_evaluate.py", []),
        ]
        if cuda:
            plan.insert(2, ("step-bf16", "bench_step.py", ["--amp", "--channels-last"]))
            plan.insert(3, ("step-compile", "bench_step.py", ["--amp", "--channels-last", "--compile"]))
            plan.append(("resnet38d-bf16", "bench_resnet38d.py", ["--batches", "8", "--amp", "--channels-last"]))
        results = {}
        for name, script, extra in plan:
            if args.only and name.split("-")[0] not in args.only:
                continue
            results[name] = run(name, script, extra, args, tmp, log)
            if args.json_dir is not None and (tmp / f"{name}.json").is_file():
                args.json_dir.mkdir(parents=True, exist_ok=True)
                (args.json_dir / f"{name}.json").write_text((tmp / f"{name}.json").read_text())
    end_load = wait_for_quiet(0)
    minutes = (time.perf_counter() - t0) / 60

    goals = []
    for name, res in results.items():
        for g in res["json"].get("goals", []):
            goals.append([name, g["name"], g["target"], g["measured"], verdict(g["met"])])
    machine_rows = [
        ["CPU", info["cpu"]],
        ["cores (logical / usable)", f"{info['logical_cpus']} / {info['usable_cpus']}"],
        ["memory", f"{info['memory_gib']:.1f} GiB" if info["memory_gib"] else "?"],
        ["Python / torch", f"{info['python']} / {info['torch']}"],
        [
            "torch threads (intra / inter-op)",
            f"{info['torch_threads']} / {info['torch_interop_threads']} "
            f"({info['parallel_backend']}, OMP_NUM_THREADS="
            f"{info['omp_num_threads_env'] or 'unset'})",
        ],
        ["device", info["device"] + (f" ({info['gpu']})" if info.get("gpu") else "")],
        ["load at start / end", f"{format_load(start_load)} / {format_load(end_load)}"],
    ]
    notes = {
        "pamr": pamr_notes,
        "step": step_notes,
        "pseudo": pseudo_notes,
        "data": data_notes,
    }
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`{Path(PYTHON).name} benchmarks/run_all.py"
        f"{' --quick' if args.quick else ''}{' --device ' + args.device if args.device != 'cpu' else ''}`) on "
        f"{started}, {minutes:.1f} min. These are benchmarks, not tests: figures move with the machine's load, "
        "which is recorded next to each of them (`load` = 1/5/15-min load averages; `CPUs x% busy with other "
        "work` = share of all CPUs used by other processes in the 0.5 s before the snapshot).",
        "",
        "## Summary of the goals",
        "",
        md_table(["benchmark", "goal", "target", "measured", "verdict"], goals) if goals else "(no goals measured)",
        "",
        "## Machine",
        "",
        md_table(["", ""], machine_rows),
        "",
        "## Method",
        "",
        "- Every benchmark runs in a fresh Python process (`benchmarks/bench_*.py`, each runnable alone); "
        f"before each, the runner waits up to {args.wait_quiet:.0f} s for the other processes to leave the CPUs "
        "< 25% busy.",
        "- Figures are medians of repeated runs after warm-up; the number of repeats and the range are given.",
        "- Ratios are measured side by side in one process: the implementations or methods compared are called "
        "in turn, the order rotated every round, so that a change of load hits them alike.",
        "- CPU peak memory is the peak of the tensor memory a call allocates (the allocator's events replayed "
        "from `torch.profiler`; the CPU analogue of CUDA's `max_memory_allocated`).",
        "- Caveat of this machine: with torch's default 2 OpenMP threads on 2 cores, any other CPU load slows "
        "short parallel kernels far more than its share (a thread preempted inside a parallel region stalls the "
        "region): while other jobs held about one core, PAMR at case (a) took ~4.5 s instead of ~0.1 s and the "
        "demo network ~190 ms per image instead of ~12 ms. Figures flagged as measured under load are of that "
        "kind; the runner records the CPU share other processes used during every benchmark.",
        "- Data: `/tmp/bench_data/synthetic` (`epspp prepare synthetic` defaults: 1000/200 images of 64 px) and "
        "`/tmp/bench_data/voclike` (36 generated 500x375 JPEGs with masks and saliency), built on first use "
        "by `benchmarks/datasets.py`.",
        "",
        "Run log:",
        "",
        *log,
        "",
    ]
    generated, failed = {}, []
    for name, res in results.items():
        text = [res["markdown"].rstrip(), ""]
        key = name.split("-")[0]
        if res["ok"] and key in notes and not name.startswith("step-"):
            found = notes[key](res["json"])
            if found:
                text += ["Findings:", "", *found, ""]
        number = section_number(res["markdown"]) if res["ok"] else None
        if number is None:
            failed += text
        else:  # step-bf16 / step-compile share section 2's number: they follow it
            generated[number] = generated.get(number, "") + "\n".join(text) + "\n"
    gpu = "GPU figures are in the sections above (device cuda)." if cuda else GPU_PENDING
    generated[5] = "\n".join(["## 5. GPU", "", gpu])
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    previous = out.read_text(encoding="utf-8") if out.is_file() else ""
    parts += merge_sections(generated, previous) + failed
    parts += ["## Source changes", "", SRC_CHANGES]
    text = "\n".join(parts).rstrip() + "\n"

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp_out.write_text(text)
    os.replace(tmp_out, out)
    print(f"[bench] wrote {out} ({minutes:.1f} min)", file=sys.stderr)
    if not all(r["ok"] for r in results.values()):
        raise SystemExit("some benchmarks failed: see the file")


if __name__ == "__main__":
    main()
