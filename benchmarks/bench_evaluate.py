"""Benchmark 11: `epspp evaluate`'s folder scoring vs the official EPS evaluation loop (halbielee/EPS evaluate_png.py).

1,000 VOC-size (500x375, W x H) ground-truth masks (background, one to three ellipses of the 20 object classes,
a 5-pixel 255 band on their borders, as VOC's void outlines) and predictions (the same ellipses shifted and
resized, sometimes of another class) are written as palette PNGs to a temporary VOC-layout folder. Timed, in
one process per thread count (OMP/MKL/OPENBLAS_NUM_THREADS and torch.set_num_threads = 1, then 2), the two
contenders alternated round by round: ``epspp.scoring.evaluate_folder`` + ``compute()`` (what `epspp
evaluate` runs, without the ~10 s of start-up of the command), and the official loop re-implemented here
(its code stays outside the repository): PIL reads, the prediction cropped to the ground truth's size, one
``np.bincount`` per image row into a float64 21x21 matrix, ``nanmean`` of the IoUs; and its whole-image
variant (one ``np.bincount`` per image, the same matrix). The mIoUs must be equal.

Usage: ``python benchmarks/bench_evaluate.py [--quick] [--masks N]``.
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

import numpy as np
import torch
from common import base_parser, emit, format_load, goal, goals_table, load_snapshot, md_table, median
from PIL import Image

from epspp.data.classes import write_classes
from epspp.data.io import write_mask_png
from epspp.scoring import evaluate_folder

HEIGHT, WIDTH, CLASSES = 375, 500, 21


def ellipses(rng: np.random.Generator, shapes: list[tuple[int, float, float, float, float]]) -> np.ndarray:
    """A (H, W) uint8 mask of filled ellipses (class, centre y, centre x, radius y, radius x) over background."""
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for cls, cy, cx, ry, rx in shapes:
        mask[((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1] = cls
    return mask


def make_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ground-truth mask with 255 borders and a prediction that roughly follows it."""
    shapes = [
        (
            int(rng.integers(1, CLASSES)),
            rng.uniform(0, HEIGHT),
            rng.uniform(0, WIDTH),
            rng.uniform(30, 150),
            rng.uniform(30, 200),
        )
        for _ in range(int(rng.integers(1, 4)))
    ]
    target = ellipses(rng, shapes)
    inner = ellipses(rng, [(c, cy, cx, max(ry - 5, 1), max(rx - 5, 1)) for c, cy, cx, ry, rx in shapes])
    target[target != inner] = 255  # the void band on each outline
    moved = [
        (
            c if rng.random() > 0.2 else int(rng.integers(1, CLASSES)),
            cy + rng.normal(0, 15),
            cx + rng.normal(0, 15),
            ry * rng.uniform(0.8, 1.2),
            rx * rng.uniform(0.8, 1.2),
        )
        for c, cy, cx, ry, rx in shapes
    ]
    return target, ellipses(rng, moved)


def write_dataset(folder: Path, count: int) -> tuple[Path, Path]:
    """A VOC-layout root (split ``train``, classes, SegmentationClassAug) and a folder of predictions."""
    root, preds = folder / "root", folder / "preds"
    for sub in (root / "ImageSets" / "Segmentation", root / "SegmentationClassAug", preds):
        sub.mkdir(parents=True)
    write_classes(root, ["background"] + [f"class{i}" for i in range(1, CLASSES)])
    rng = np.random.default_rng(0)
    ids = [f"img{i:05d}" for i in range(count)]
    for image_id in ids:
        target, pred = make_pair(rng)
        write_mask_png(root / "SegmentationClassAug" / f"{image_id}.png", target)
        write_mask_png(preds / f"{image_id}.png", pred)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return root, preds


def official_miou(root: Path, preds: Path, rows: bool) -> float:
    """mIoU as halbielee/EPS evaluate_png.py computes it (``rows``: its bincount per image row)."""
    k = CLASSES
    hist = np.zeros((k, k))
    ids = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for image_id in ids:
        gt_image = Image.open(root / "SegmentationClassAug" / f"{image_id}.png")
        w, h = gt_image.size
        gt = np.array(gt_image, dtype=np.uint8)
        pred = np.array(Image.open(preds / f"{image_id}.png").crop((0, 0, w, h)), dtype=np.uint8)
        pairs = zip(pred, gt, strict=True) if rows else [(pred.ravel(), gt.ravel())]
        for lp, lt in pairs:
            keep = (lt < k) & (lp < k)
            hist += np.bincount(k * lt[keep].astype(int) + lp[keep], minlength=k * k).reshape(k, k)
    diag = np.diag(hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nanmean(diag / (hist.sum(1) + hist.sum(0) - diag)))


def epspp_miou(root: Path, preds: Path) -> float:
    """mIoU as `epspp evaluate` computes it."""
    return float(evaluate_folder(preds, root, "train")["metric"].compute()["miou"])


def worker(folder: Path, threads: int, rounds: int) -> dict:
    """Alternate the contenders ``rounds`` times at ``threads`` threads; seconds per run and the mIoUs."""
    torch.set_num_threads(threads)
    root, preds = folder / "root", folder / "preds"
    contenders = {
        "epspp": lambda: epspp_miou(root, preds),
        "official (row bincount)": lambda: official_miou(root, preds, rows=True),
        "official (whole-image bincount)": lambda: official_miou(root, preds, rows=False),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    mious: dict[str, float] = {}
    before = load_snapshot()
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            mious[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {"times": times, "miou": mious, "load_before": before, "load_after": load_snapshot()}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=1000, help="number of mask pairs (default 1000)")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # one thread count's run
    args = parser.parse_args()
    rounds = 2 if args.quick else 3
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.threads or 1, rounds)))
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        write_dataset(Path(tmp), args.masks)
        for threads in (1, 2):
            env = dict(
                os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
            )
            out = subprocess.run(
                [sys.executable, __file__, "--worker", tmp, "--threads", str(threads)]
                + (["--quick"] if args.quick else []),
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            results[threads] = json.loads(out.stdout.splitlines()[-1])
    rows, goals = [], []
    for threads, result in results.items():
        epspp = median(result["times"]["epspp"])
        for name, values in result["times"].items():
            ratio = median(values) / epspp
            rows.append(
                [
                    threads,
                    name,
                    f"{median(values):.2f}",
                    f"{min(values):.2f} - {max(values):.2f}",
                    f"{1e3 * median(values) / args.masks:.2f}",
                    f"{ratio:.2f}x",
                    f"{100 * result['miou'][name]:.4f}",
                    f"{format_load(result['load_before'])} / {format_load(result['load_after'])}",
                ]
            )
        official = median(result["times"]["official (row bincount)"])
        equal = max(result["miou"].values()) - min(result["miou"].values()) < 1e-6  # epspp reports float32
        goals.append(
            goal(
                f"`evaluate_folder` vs the official loop, {args.masks} masks, {threads} thread(s)",
                "3x faster, equal mIoU" if threads == 1 else "faster, equal mIoU",
                f"{official / epspp:.1f}x faster, mIoU {'equal' if equal else 'DIFFERENT'}",
                equal and official / epspp >= (3.0 if threads == 1 else 1.0),
            )
        )
    markdown = "\n".join(
        [
            "## 11. mIoU of a folder of masks: `epspp evaluate` vs the official loop",
            "",
            __doc__.split("\n\n")[1].replace("\n", " "),
            "",
            goals_table(goals),
            "",
            md_table(
                [
                    "threads",
                    "contender",
                    f"s per {args.masks} masks (median of {rounds})",
                    "min - max (s)",
                    "ms per mask",
                    "time / epspp's",
                    "mIoU %",
                    "load before / after",
                ],
                rows,
            ),
        ]
    )
    emit(args, markdown, {"goals": goals, "results": results})


if __name__ == "__main__":
    main()
