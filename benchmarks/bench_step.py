"""Benchmark 2: cost of one stage-1 optimizer step, CAM baseline (``none``) vs EPS (``eps``) vs EPS++ (``ird``).

One step = ``zero_grad`` + ``LocalizationModule.training_step`` (forward, classification loss, the
method's saliency term: for ``ird`` PAMR of the detached softmax maps with the image resized to the
map size, then the IRD loss; the train mAP update) + ``backward`` + ``optimizer.step`` + scheduler
step. The three modules (same backbone, same initial weights, same batch) live in one process; their
steps are interleaved (order rotated every round) and the median is reported. The module is driven
without a Trainer (a stub provides ``optimizers``/``global_step``; ``self.log`` is a no-op), so
Lightning's own per-step overhead, the same for every method, is not in the figures: the relative
overhead reported is an upper bound of the one a real run sees.

Settings:

- ``demo``: ``configs/demo/localization_*.yaml``: timm resnet10t (channels 32-256, stem 16), output
  stride 8, crop 64, batch 16, 5 classes, Adam; PAMR dilations (1, 2) (the eps++ demo config);
- ``r50``: resnet50, output stride 16, crop 320, batch 4, 20 classes, SGD, PAMR dilations
  (1, 2, 4, 8, 12, 24) (the VOC recipe at a crop that fits a CPU run);
- ``r18os8``: resnet18, output stride 8, crop 256, batch 8, 20 classes (32x32 maps: PAMR's share is
  larger than at ``r50``).

The extra work of ``ird`` is then broken down (same process, interleaved): the image resize, the softmax
of the detached maps, PAMR, and the IRD loss forward + backward (vs the EPS loss).

Usage: ``python benchmarks/bench_step.py [--device cpu|cuda] [--settings demo r50 r18os8] [--quick]
[--amp] [--channels-last] [--compile]``.
"""

from __future__ import annotations

import contextlib
import types

import torch
import torch.nn.functional as F
from common import (
    CpuMeter,
    base_parser,
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

from epspp.losses import eps_saliency_loss, ird_saliency_loss
from epspp.models import LocalizationModule

SETTINGS = {
    "demo": dict(
        label="demo: resnet10t (32-256), OS8, crop 64, batch 16, C=5",
        model=dict(
            backbone="resnet10t",
            backbone_kwargs={"channels": [32, 64, 128, 256], "stem_width": 16},
            output_stride=8,
            optimizer="adam",
            lr=0.002,
            head_lr_mult=1.0,
            weight_decay=0.0,
            pamr_dilations=(1, 2),
        ),
        classes=5,
        crop=64,
        batch=16,
        rounds=(30, 5),
    ),
    "r50": dict(
        label="resnet50, OS16, crop 320, batch 4, C=20",
        model=dict(backbone="resnet50", output_stride=16, optimizer="sgd", lr=0.01),
        classes=20,
        crop=320,
        batch=4,
        rounds=(5, 2),
    ),
    "r18os8": dict(
        label="resnet18, OS8, crop 256, batch 8, C=20",
        model=dict(backbone="resnet18", output_stride=8, optimizer="sgd", lr=0.01),
        classes=20,
        crop=256,
        batch=8,
        rounds=(5, 2),
    ),
}
METHODS = ("none", "eps", "ird")
GOAL = 0.10


def make_batch(setting: dict, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(0)
    b, c, size = setting["batch"], setting["classes"], setting["crop"]
    image = F.avg_pool2d(torch.randn(b, 3, size, size, generator=gen), 5, 1, 2) * 2.0
    # saliency: a soft disc per image; labels: 1-3 classes
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.3 + 0.4 * torch.rand(b, 1, 1, generator=gen)
    saliency = torch.sigmoid((radius - (yy**2 + xx**2).sqrt()) * 20)[:, None]
    labels = torch.zeros(b, c)
    for i in range(b):
        labels[i, torch.randperm(c, generator=gen)[: 1 + i % 3]] = 1
    return {"image": image.to(device), "saliency": saliency.to(device), "label": labels.to(device)}


def build(setting: dict, method: str, device: torch.device, channels_last: bool) -> tuple:
    torch.manual_seed(0)
    module = LocalizationModule(num_classes=setting["classes"], saliency_loss=method, **setting["model"])
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    stub = types.SimpleNamespace(
        optimizers=[],
        global_step=10**6,
        estimated_stepping_batches=10**6,
        _logger_connector=types.SimpleNamespace(should_update_logs=False),  # watch_ird: not a logging step
    )
    module._trainer = stub  # noqa: SLF001 - drive the LightningModule without a Trainer
    module.log = lambda *a, **k: None
    module.log_dict = lambda *a, **k: None
    config = module.configure_optimizers()
    stub.optimizers = [config["optimizer"]]
    module.train()
    return (
        module,
        config["optimizer"],
        config["lr_scheduler"]["scheduler"] if isinstance(config["lr_scheduler"], dict) else config["lr_scheduler"],
    )


def step_fn(module, optimizer, scheduler, batch, amp: bool, device: torch.device):
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        scheduler.step()

    return step


def breakdown(module: LocalizationModule, batch: dict, rounds: int, device: torch.device) -> dict:
    """Times of the pieces ``ird`` adds (and of the EPS loss, for comparison)."""
    with torch.no_grad():
        cam = module(batch["image"]).float()
    leaf = cam.detach().requires_grad_(True)
    size = cam.shape[-2:]
    small = F.interpolate(batch["image"].float(), size, mode="bilinear", align_corners=False)
    probs = cam.softmax(1)
    refined = module.pamr(small, probs)

    def ird_loss() -> None:
        leaf.grad = None
        loss, _ = ird_saliency_loss(leaf, batch["saliency"], batch["label"], refined, return_inconsistent=True)
        loss.backward()

    def eps_loss() -> None:
        leaf.grad = None
        eps_saliency_loss(leaf, batch["saliency"], batch["label"], module.hparams.tau, module.hparams.lam).backward()

    pieces = {
        "image resize": lambda: F.interpolate(batch["image"].float(), size, mode="bilinear", align_corners=False),
        "softmax of detached maps": lambda: cam.detach().float().softmax(dim=1),
        "PAMR": lambda: module.pamr(small, probs),
        "refine_maps (all three)": lambda: module.refine_maps(batch["image"], cam),
        "IRD loss fwd+bwd": ird_loss,
        "EPS loss fwd+bwd": eps_loss,
    }
    return side_by_side(pieces, rounds, device, warmup=2)


def run_setting(
    name: str, device: torch.device, quick: bool, amp: bool, channels_last: bool, compile_: bool, wait: float
) -> dict:
    setting = SETTINGS[name]
    batch = make_batch(setting, device)
    if channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    steps, modules = {}, {}
    for method in METHODS:
        module, optimizer, scheduler = build(setting, method, device, channels_last)
        if compile_:
            module.net = torch.compile(module.net)
        modules[method] = module
        steps[method] = step_fn(module, optimizer, scheduler, batch, amp, device)
    full, short = setting["rounds"]
    rounds = short if quick else full
    load_before = wait_for_quiet(wait)
    meter = CpuMeter()
    times = side_by_side(steps, rounds, device, warmup=2)
    other = meter.other()
    load_mid = load_snapshot()
    meter = CpuMeter()
    pieces = breakdown(modules["ird"], batch, max(3, rounds), device)
    other_pieces = meter.other()
    load_after = load_snapshot()
    maps = tuple(modules["ird"](batch["image"][:1]).shape[-2:])
    return {
        "setting": name,
        "label": setting["label"],
        "maps": maps,
        "times": times,
        "pieces": pieces,
        "load": [format_load(load_before), format_load(load_mid), format_load(load_after)],
        "busy": max_busy(load_before, load_mid, load_after),
        "threads": torch.get_num_threads(),
        "other": other,
        "other_pieces": other_pieces,
        "dilations": modules["ird"].pamr.dilations,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["demo", "r18os8", "r50"], choices=sorted(SETTINGS))
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (meant for --device cuda)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model and input")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    args = parser.parse_args()
    device = setup_run(args)
    results = [
        run_setting(s, device, args.quick, args.amp, args.channels_last, args.compile, args.wait_quiet)
        for s in args.settings
    ]

    rows, piece_rows, goals = [], [], []
    for res in results:
        base = median(res["times"]["none"])
        for method in METHODS:
            t = median(res["times"][method])
            rows.append(
                [
                    res["label"] if method == "none" else "",
                    method,
                    f"{t * 1e3:.1f}",
                    spread(res["times"][method]),
                    len(res["times"][method]),
                    f"{res['maps'][0]}x{res['maps'][1]}" if method == "none" else "",
                    "-" if method == "none" else f"{100 * (t / base - 1):+.1f}%",
                ]
            )
        overhead = median(res["times"]["ird"]) / base - 1
        paired = median([a / b - 1 for a, b in zip(res["times"]["ird"], res["times"]["none"], strict=True)])
        res["paired_overhead"] = paired
        goals.append(
            goal(
                f"step ird vs none ({res['setting']})",
                "<= +10%",
                f"{100 * overhead:+.1f}% (paired rounds: {100 * paired:+.1f}%)",
                overhead <= GOAL,
            )
        )
        for piece, values in res["pieces"].items():
            piece_rows.append(
                [
                    res["label"] if piece == next(iter(res["pieces"])) else "",
                    piece,
                    f"{median(values) * 1e3:.2f}",
                    f"{100 * median(values) / base:.1f}%",
                ]
            )

    variant = (
        ", ".join(
            v
            for v, on in (
                ("bf16 autocast", args.amp),
                ("channels_last", args.channels_last),
                ("torch.compile", args.compile),
            )
            if on
        )
        or "fp32, eager"
    )
    lines = [
        "## 2. Stage-1 step cost: none vs eps vs ird",
        "",
        f"Method: `LocalizationModule.training_step` + backward + optimizer and scheduler step, driven without a "
        f"Trainer ({variant}, device {device}); the three methods' modules (same backbone, weights, batch) in one "
        "process, steps interleaved after 2 warm-up steps each; medians. Overhead = median step / median step(none) "
        "- 1; the goal table also gives the median over rounds of the paired ratio (same round, same load).",
        "",
        md_table(["setting", "method", "median step (ms)", "range (ms)", "n", "maps", "vs none"], rows),
        "",
        "Where the extra time of `ird` goes (median ms of each piece, and as a share of the `none` step):",
        "",
        md_table(["setting", "piece", "median (ms)", "share of none step"], piece_rows),
        "",
        "CPU share used by other processes during the steps / the breakdown: "
        + "; ".join(f"{r['setting']}: {format_other(r['other'])} / {format_other(r['other_pieces'])}" for r in results)
        + ". Load: "
        + "; ".join(f"{r['setting']}: " + " -> ".join(r["load"]) for r in results),
        "",
        goals_table(goals),
        "",
    ]
    emit(args, "\n".join(lines), {"goals": goals, "results": results, "variant": variant})


if __name__ == "__main__":
    main()
