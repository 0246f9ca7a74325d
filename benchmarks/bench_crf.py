"""Benchmark 6: dense CRF (``epspp.ops.dense_crf``, pydensecrf2) as stage 3 runs it on VOC test predictions.

One 500x375 (W x H) picture (smooth random colours with a few sharp edges) and 21-class probabilities,
deeplab-pytorch's parameters (10 iterations, pos 3/1, bilateral 4/67/3). Measured: the seconds per image in
this process, and the throughput of ``DenseCRF(workers=N)`` over a batch of images for N = 1 .. the usable
cores. The time of a whole VOC val split (1,449 images) is extrapolated from the measured throughput with
the configured ``crf_workers`` (8), assuming one free core per worker: on fewer cores, the usable cores'
measured throughput bounds it.

Usage: ``python benchmarks/bench_crf.py [--quick]``.
"""

from __future__ import annotations

import os
import time

import numpy as np
from common import base_parser, emit, format_load, goal, goals_table, load_snapshot, md_table, median, setup_run

from epspp.ops.crf import DenseCRF, dense_crf

HEIGHT, WIDTH, CLASSES = 375, 500, 21
VOC_VAL = 1449
CONFIGURED_WORKERS = 8  # crf_workers of configs/voc/segmentation_test.yaml


def make_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image with regions of different colours and 21-class softmax probabilities that roughly follow them."""
    rng = np.random.default_rng(seed)
    regions = rng.integers(0, CLASSES, (HEIGHT // 25 + 1, WIDTH // 25 + 1)).repeat(25, 0).repeat(25, 1)
    regions = regions[:HEIGHT, :WIDTH]
    colours = rng.integers(0, 256, (CLASSES, 3))
    image = np.clip(colours[regions] + rng.normal(0, 8, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    logits = rng.normal(0, 1, (CLASSES, HEIGHT, WIDTH)) + 2.0 * (np.arange(CLASSES)[:, None, None] == regions)
    probs = np.exp(logits - logits.max(0))
    return image, (probs / probs.sum(0)).astype(np.float32)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    setup_run(args)
    image, probs = make_inputs()
    load_before = load_snapshot()
    repeats = 1 if args.quick else 3
    dense_crf(image, probs)  # warm-up
    single = []
    for _ in range(repeats):
        start = time.perf_counter()
        dense_crf(image, probs)
        single.append(time.perf_counter() - start)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows, throughput = [], {}
    for workers in sorted({1, cores}):
        crf = DenseCRF(workers=workers)
        batch = 2 * workers
        try:
            crf([image] * workers, [probs] * workers)  # start the processes
            start = time.perf_counter()
            crf([image] * batch, [probs] * batch)
            elapsed = time.perf_counter() - start
        finally:
            crf.close()
        throughput[workers] = batch / elapsed
        rows.append([workers, batch, f"{elapsed:.1f}", f"{throughput[workers]:.2f}"])
    load_after = load_snapshot()
    per_image = median(single)
    best = throughput[max(throughput)]
    configured = min(CONFIGURED_WORKERS, cores)
    assumed = CONFIGURED_WORKERS / per_image  # one free core per worker
    markdown = "\n".join(
        [
            "## 6. Dense CRF (stage 3 test predictions)",
            "",
            __doc__.split("\n\n")[1].replace("\n", " "),
            "",
            goals_table([goal("CRF per 500x375 image, 21 classes", "measured", f"{per_image:.2f} s", None)]),
            "",
            md_table(
                ["", "value"],
                [
                    [f"one image, this process (median of {repeats})", f"{per_image:.2f} s"],
                    ["VOC val (1,449 images), 1 process", f"{VOC_VAL * per_image / 60:.0f} min"],
                    [
                        f"VOC val, {CONFIGURED_WORKERS} workers on {CONFIGURED_WORKERS} free cores (extrapolated)",
                        f"{VOC_VAL / assumed / 60:.1f} min",
                    ],
                    [
                        f"VOC val, {configured} workers on this machine's {cores} cores (measured throughput)",
                        f"{VOC_VAL / best / 60:.0f} min",
                    ],
                ],
            ),
            "",
            md_table(["workers", "images", "seconds", "images/s"], rows),
            "",
            f"Load before / after: {format_load(load_before)} / {format_load(load_after)}.",
        ]
    )
    emit(args, markdown, {"goals": [], "per_image_s": per_image, "throughput": throughput, "cores": cores})


if __name__ == "__main__":
    main()
