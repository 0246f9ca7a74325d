"""Benchmark 14: EPS++'s extra cost (IRD + PAMR) on the ResNet-38d stage-1 step at the VOC crop 448 (CPU or GPU).

One step of ``configs/voc/localization_eps.yaml``'s model (bench_resnet38d's MODEL: ResNet-38d OS8, frozen
BatchNorm and stem, SGD with EPS's groups) with ``saliency_loss: eps`` and with ``ird`` (PAMR of the detached
softmax maps at the 56x56 map size, the recipe's dilations (1, 2, 4, 8, 12, 24), then the IRD loss), driven
without a Trainer as in benchmark 2; the two modules (same weights, same batch) alternate in one process, at
each batch size and thread count asked. Then the pieces ``ird`` adds (PAMR, the whole ``refine_maps``, the IRD
loss vs the EPS loss), alternated, which time far more rounds at little cost. Goal (issue 35): the ``ird``
step at most 5% above the ``eps`` step.

Usage: ``python benchmarks/bench_pamr448.py [--batches 1 2] [--thread-counts 1 2] [--rounds 2] [--device cpu]``.
"""

from __future__ import annotations

import torch
from bench_resnet38d import MODEL
from bench_step import breakdown, build, make_batch, step_fn
from common import (
    base_parser,
    emit,
    format_load,
    goal,
    goals_table,
    load_snapshot,
    md_table,
    median,
    setup_run,
    side_by_side,
)

GOAL = 0.05


def measure(batch_size: int, device: torch.device, rounds: int) -> dict:
    """Median seconds of the eps and ird steps (alternated) and of ird's pieces, at one batch size."""
    setting = dict(model=MODEL, classes=20, crop=448, batch=batch_size)
    batch = make_batch(setting, device)
    steps, modules = {}, {}
    for method in ("eps", "ird"):
        module, optimizer, scheduler = build(setting, method, device, channels_last=False)
        modules[method] = module
        steps[method] = step_fn(module, optimizer, scheduler, batch, False, device)
    before = load_snapshot()
    times = side_by_side(steps, rounds, device, warmup=1)
    pieces = breakdown(modules["ird"], batch, max(5, rounds), device)
    return {"times": times, "pieces": pieces, "load": [format_load(before), format_load(load_snapshot())]}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2, help="timed steps of each method (after one warm-up)")
    args = parser.parse_args()
    device = setup_run(args)
    rows, goals, results = [], [], []
    for threads in args.thread_counts:
        torch.set_num_threads(threads)
        for batch_size in args.batches:
            result = measure(batch_size, device, args.rounds)
            eps, ird = median(result["times"]["eps"]), median(result["times"]["ird"])
            pieces = {name: median(values) for name, values in result["pieces"].items()}
            extra = pieces["refine_maps (all three)"] + pieces["IRD loss fwd+bwd"] - pieces["EPS loss fwd+bwd"]
            rows.append(
                [
                    threads,
                    batch_size,
                    f"{eps:.2f}",
                    f"{ird:.2f}",
                    f"{100 * (ird / eps - 1):+.1f}%",
                    f"{1e3 * pieces['PAMR']:.1f}",
                    f"{1e3 * extra:.1f} ({100 * extra / eps:+.2f}%)",
                    " / ".join(result["load"]),
                ]
            )
            goals.append(
                goal(
                    f"ird step vs eps step, ResNet-38d crop 448, batch {batch_size}, {threads} thread(s)",
                    f"at most +{100 * GOAL:.0f}%",
                    f"{100 * (ird / eps - 1):+.1f}% (steps), {100 * extra / eps:+.2f}% (pieces)",
                    extra / eps <= GOAL,
                )
            )
            results.append({"threads": threads, "batch": batch_size, **result})
    markdown = "\n".join(
        [
            "## 14. EPS++ (IRD + PAMR) vs EPS on the ResNet-38d step at crop 448",
            "",
            __doc__.split("\n\n")[1].replace("\n", " "),
            "",
            goals_table(goals),
            "",
            md_table(
                [
                    "threads",
                    "batch",
                    f"eps step s (median of {args.rounds})",
                    "ird step s",
                    "ird / eps - 1 (steps)",
                    "PAMR ms",
                    "ird's extra pieces ms (of the eps step)",
                    "load before / after",
                ],
                rows,
            ),
        ]
    )
    emit(args, markdown, {"goals": goals, "results": results})


if __name__ == "__main__":
    main()
