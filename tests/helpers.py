"""Independent readers of the VOC-layout files, for checking the package against them.

Import with ``from helpers import ...`` (``tests/`` is on ``sys.path`` through its conftest).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import timm
from PIL import Image

SPLITS = "ImageSets/Segmentation"

# the smallest timm CNN available: timm's test model where it exists, else a narrow ResNet-10
TINY = "test_resnet" if "test_resnet" in timm.list_models("test_resnet") else "resnet10t"
TINY_KWARGS = None if TINY == "test_resnet" else {"channels": [16, 32, 64, 128], "stem_width": 8}


def split_ids(root: Path, split: str) -> list[str]:
    """Ids listed in ``ROOT/ImageSets/Segmentation/<split>.txt``."""
    return (Path(root) / SPLITS / f"{split}.txt").read_text().split()


def read_png(path: Path) -> np.ndarray:
    """A PNG as a numpy array of its raw values (palette indices for palette PNGs)."""
    with Image.open(path) as image:
        return np.array(image)


def gt_mask(root: Path, image_id: str) -> np.ndarray:
    """Ground-truth class ids (H, W) uint8 of ``image_id``."""
    return read_png(Path(root) / "SegmentationClassAug" / f"{image_id}.png")


def labels_from_masks(root: Path, ids: list[str], num_classes: int) -> dict[str, np.ndarray]:
    """Multi-hot (C,) labels: the classes 1..C present in each ground-truth mask."""
    labels = {}
    for image_id in ids:
        label = np.zeros(num_classes, np.float32)
        for value in np.unique(gt_mask(root, image_id)):
            if 0 < value <= num_classes:
                label[value - 1] = 1.0
        labels[image_id] = label
    return labels


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file under ``root`` (hidden ones included)."""
    root = Path(root)
    return {
        str(path.relative_to(root)): hashlib.sha1(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write_png(path: Path, array: np.ndarray, mode: str = "L") -> None:
    """Write a uint8 array as a PNG of the given mode (``L`` grey, ``P`` palette, ``RGB``)."""
    Image.fromarray(np.asarray(array, np.uint8), mode=mode).save(path)
