"""Benchmark 5: one ResNet-38d stage-1 step at the VOC recipe (crop 448), as configs/voc/localization_eps.yaml trains.

One step = ``zero_grad`` + ``LocalizationModule.training_step`` with the EPS saliency loss + ``backward`` +
SGD step (EPS's four parameter groups, BatchNorm and conv1a/b2 frozen) + scheduler step, driven without a
Trainer as in benchmark 2. The recipe's batch is 8; on the CPU it runs at a reduced batch (1 and 2 by
default) and the batch-8 figures are extrapolated linearly from them (time and activation memory grow with the
batch; parameters, gradients and momentum do not). Anchor: the official VOC log (halbielee/EPS
``log/log_voc12_eps.log``) shows 20,000 iterations at batch 8 in about 3 h 40 min on two GPUs, ~0.66 s per
iteration.

Usage: ``python benchmarks/bench_resnet38d.py [--device cpu|cuda] [--batches 1 2] [--amp] [--channels-last]``
(on a GPU: ``--device cuda --batches 8 --amp --channels-last``).
"""

from __future__ import annotations

import torch
from bench_step import build, make_batch, step_fn
from common import (
    CpuMeter,
    base_parser,
    device_peak,
    emit,
    format_load,
    format_other,
    goal,
    goals_table,
    md_table,
    median,
    setup_run,
    side_by_side,
    spread,
    wait_for_quiet,
)

RECIPE_BATCH = 8
OFFICIAL_S_PER_IT = 0.66  # 20,000 iterations in ~3 h 40 min on two GPUs
MODEL = dict(
    backbone="resnet38d",
    output_stride=8,
    freeze_bn=True,
    freeze_stem=True,
    optimizer="sgd",
    lr=0.01,
    head_lr_mult=10.0,
    bias_lr_mult=2.0,
    bias_decay=False,
    weight_decay=5e-4,
    momentum=5e-4,
    tau=0.4,
)


def measure(batch_size: int, device: torch.device, amp: bool, channels_last: bool, rounds: int) -> dict:
    setting = dict(model=MODEL, classes=20, crop=448, batch=batch_size)
    batch = make_batch(setting, device)
    if channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    module, optimizer, scheduler = build(setting, "eps", device, channels_last)
    step = step_fn(module, optimizer, scheduler, batch, amp, device)
    step()  # warm-up; creates the momentum buffers
    _, peak = device_peak(step, device)
    meter = CpuMeter()
    times = side_by_side({"step": step}, rounds, device, warmup=0)["step"]
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    del module, optimizer
    return {"batch": batch_size, "times": times, "peak": peak, "trainable": trainable, "other": meter.other()}


def at_recipe_batch(points: list[tuple[int, float]]) -> float:
    """The value at batch 8 of the least-squares line through (batch, value); proportional for one point."""
    if len(points) == 1:
        return points[0][1] * RECIPE_BATCH / points[0][0]
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    slope = sum((b - mean_b) * (v - mean_v) for b, v in points) / sum((b - mean_b) ** 2 for b, _ in points)
    return mean_v + slope * (RECIPE_BATCH - mean_b)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    device = setup_run(args)
    load = wait_for_quiet(args.wait_quiet)
    rounds = 2 if args.quick else 4
    results = [measure(b, device, args.amp, args.channels_last, rounds) for b in args.batches]
    rows = [
        [
            r["batch"],
            f"{median(r['times']):.2f}",
            spread(r["times"]) + " ms",
            f"{r['peak'] / 2**30:.2f}",
            format_other(r["other"]),
        ]
        for r in results
    ]
    by_batch = {r["batch"]: r for r in results}
    if RECIPE_BATCH in by_batch:
        time8, peak8 = median(by_batch[RECIPE_BATCH]["times"]), by_batch[RECIPE_BATCH]["peak"]
        how = "measured"
    else:
        time8 = at_recipe_batch([(r["batch"], median(r["times"])) for r in results])
        peak8 = at_recipe_batch([(r["batch"], r["peak"]) for r in results])
        how = f"extrapolated linearly from batches {', '.join(str(r['batch']) for r in results)}"
    variant = f"{device.type}{', bf16 autocast' if args.amp else ''}{', channels_last' if args.channels_last else ''}"
    iterations_h = 20000 * time8 / 3600
    goals = [
        goal(
            f"ResNet-38d VOC step, batch 8 ({variant})",
            f"official ~{OFFICIAL_S_PER_IT} s/it on 2 GPUs",
            f"{time8:.1f} s/it ({how}); 20k it = {iterations_h:.0f} h",
            None,
        )
    ]
    lines = [
        f"## ResNet-38d stage-1 step at the VOC recipe ({variant})",
        "",
        f"`benchmarks/bench_resnet38d.py`: EPS loss, crop 448, frozen BatchNorm and conv1a/b2 "
        f"({results[0]['trainable'] / 1e6:.1f}M of 105.1M parameters trained), SGD with EPS's four groups. "
        f"Started at {format_load(load)}; {rounds} timed steps per batch after one warm-up.",
        "",
        md_table(["batch", "median s/step", "range", "peak tensor memory (GiB)", "other processes"], rows),
        "",
        goals_table(goals),
        "",
        f"- Batch 8 ({how}): {time8:.1f} s per iteration and {peak8 / 2**30:.1f} GiB; the recipe's 20,000 "
        f"iterations would take {iterations_h:.0f} h here, vs about 3 h 40 min (~{OFFICIAL_S_PER_IT} s/it) for "
        "the official run on two GPUs. This machine is for tests and the demo; the VOC recipe needs a GPU.",
    ]
    emit(
        args,
        "\n".join(lines),
        {"goals": goals, "results": results, "batch8": {"time": time8, "peak": peak8}, "variant": variant},
    )


if __name__ == "__main__":
    main()
