"""Datasets the benchmarks read, built once under ``/tmp/bench_data`` (``--data-root`` to move it).

- ``synthetic``: the default synthetic dataset (``epspp prepare synthetic``: 1000 train / 200 val, 64 px,
  5 classes), plus a split ``bench300`` (its first 300 training ids) for the pseudo-mask benchmark;
- ``voclike``: a VOC-like tree of ``VOC_IMAGES`` 500x375 JPEGs (20 VOC classes; smooth random images with
  one to three elliptic objects, their masks, 8-bit saliency maps), splits ``train`` (all) and ``val``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import common  # noqa: F401 - puts src/ on the path
import numpy as np

from epspp.data.classes import VOC_CLASSES, write_classes
from epspp.data.io import write_grey_png, write_jpeg, write_mask_png
from epspp.data.synthetic import generate_synthetic

DEFAULT_ROOT = Path("/tmp/bench_data")
VOC_IMAGES = 36
VOC_SIZE = (375, 500)  # (H, W): VOC's usual landscape 500x375


def ensure_synthetic(root: Path = DEFAULT_ROOT) -> Path:
    path = root / "synthetic"
    if not (path / "ImageSets/Segmentation/train.txt").is_file():
        generate_synthetic(path, overwrite=True)
    split = path / "ImageSets/Segmentation/bench300.txt"
    if not split.is_file():
        ids = (path / "ImageSets/Segmentation/train.txt").read_text().split()[:300]
        split.write_text("\n".join(ids) + "\n")
    return path


def _voc_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = VOC_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # smooth background: a few low-frequency waves per channel plus noise
    image = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        for _ in range(3):
            fy, fx, phase = rng.uniform(0.005, 0.03, 2).tolist() + [rng.uniform(0, 6.28)]
            image[..., c] += 40 * np.sin(fy * yy + fx * xx + phase)
    image += 110 + rng.normal(0, 8, image.shape)
    mask = np.zeros((h, w), np.uint8)
    saliency = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, len(VOC_CLASSES)))
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        image[inside] = rng.uniform(20, 235, 3) + rng.normal(0, 10, (int(inside.sum()), 3))
        mask[inside] = cls
        saliency[inside] = 1.0
    edge = np.zeros_like(mask, bool)
    edge[1:-1, 1:-1] = (mask[1:-1, 1:-1] != mask[:-2, 1:-1]) | (mask[1:-1, 1:-1] != mask[1:-1, :-2])
    mask[edge] = 255  # VOC's ignore band along object boundaries
    saliency = np.clip(saliency * 230 + rng.normal(0, 10, saliency.shape), 0, 255)
    return np.clip(image, 0, 255).astype(np.uint8), mask, saliency.astype(np.uint8)


def ensure_voc_like(root: Path = DEFAULT_ROOT, count: int = VOC_IMAGES) -> Path:
    path = root / "voclike"
    split = path / "ImageSets/Segmentation/train.txt"
    if split.is_file() and len(split.read_text().split()) == count:
        return path
    tmp = root / f".voclike.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("JPEGImages", "SegmentationClassAug", "saliency", "ImageSets/Segmentation"):
        (tmp / sub).mkdir(parents=True)
    ids = [f"2007_{i:06d}" for i in range(count)]
    for i, image_id in enumerate(ids):
        image, mask, saliency = _voc_sample(np.random.default_rng([7, i]))
        write_jpeg(tmp / "JPEGImages" / f"{image_id}.jpg", image, quality=90)
        write_mask_png(tmp / "SegmentationClassAug" / f"{image_id}.png", mask)
        write_grey_png(tmp / "saliency" / f"{image_id}.png", saliency)
    (tmp / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    (tmp / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[: max(1, count // 6)]) + "\n")
    write_classes(tmp, VOC_CLASSES)
    shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="build the benchmark datasets")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    print(ensure_synthetic(args.data_root), ensure_voc_like(args.data_root))
