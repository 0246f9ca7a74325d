"""Class names and colour palettes of the supported datasets.

Every dataset root written by ``epspp prepare`` holds ``classes.json``
(``{"names": [...], "palette": [[r, g, b], ...]}``, index 0 = background; ``palette`` is optional), so the
number of classes is always read from the dataset, never hard-coded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from epspp.config_checks import MAX_OBJECT_CLASSES
from epspp.data.npy_labels import NPY_LABELS, load_npy_labels
from epspp.errors import DatasetError

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

COCO_CLASSES: tuple[str, ...] = (
    "background",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "disc", "square", "triangle", "train", "boat")

CLASSES_FILE = "classes.json"


def voc_palette(num_entries: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved), as a (num_entries, 3) uint8 array.

    Index 255 (ignore) is white-ish in VOC's map; we keep the standard definition. Returns a fresh
    copy of a cached table (the pseudo-mask writer asks for it once per image).
    """
    return _voc_palette(num_entries).copy()


@functools.lru_cache(maxsize=8)
def _voc_palette(num_entries: int) -> np.ndarray:
    palette = np.zeros((num_entries, 3), dtype=np.uint8)
    for index in range(num_entries):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def write_classes(root: str | Path, names: tuple[str, ...] | list[str]) -> None:
    """Write ``ROOT/classes.json`` (names with background first, and the VOC palette)."""
    palette = voc_palette(len(names)).tolist()
    path = Path(root) / CLASSES_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"names": list(names), "palette": palette}, indent=1))
    tmp.replace(path)


def lists_classes(root: str | Path, names: tuple[str, ...] | list[str]) -> bool:
    """Whether ``ROOT/classes.json`` lists exactly ``names`` (a missing or unreadable file does not)."""
    try:
        return json.loads((Path(root) / CLASSES_FILE).read_text(encoding="utf-8")).get("names") == list(names)
    except (OSError, ValueError, AttributeError):
        return False


def check_class_names(names: list[str], where: str) -> list[str]:
    """Return ``names`` if no two are equal, also ignoring case (``Cat`` and ``cat``), else raise naming ``where``."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.get(name.casefold())
        if other is not None:
            how = "twice" if other == name else f"as {other!r} and {name!r}, names that differ only in case"
            raise DatasetError(f"{where}: class {name!r} is listed {how}: use one spelling per class")
        seen[name.casefold()] = name
    return list(names)


def read_classes(root: str | Path) -> list[str]:
    """Class names (background first) of the dataset at ``root``.

    Reads ``ROOT/classes.json``; without it, falls back on ``cls_labels.npy`` (20 labels: VOC,
    80: COCO).
    """
    root = Path(root)
    path = root / CLASSES_FILE
    if path.is_file():
        try:
            names = json.loads(path.read_text(encoding="utf-8"))["names"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            expected = '{"names": ["background", ...]}'
            raise DatasetError(f"cannot read {path}: expected {expected} ({error})") from error
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: 'names' must list the background and at least one class, as strings")
        if len(names) - 1 > MAX_OBJECT_CLASSES:
            raise DatasetError(
                f"{path} lists {len(names) - 1} classes besides the background; masks are 8-bit PNGs that hold "
                f"at most {MAX_OBJECT_CLASSES} (ids 1..{MAX_OBJECT_CLASSES}, 255 = ignore): merge classes or "
                "split the dataset"
            )
        return check_class_names(names, str(path))
    labels = root / NPY_LABELS
    if labels.is_file():
        table = load_npy_labels(labels)
        count = len(next(iter(table.values())))
        for names in (VOC_CLASSES, COCO_CLASSES):
            if len(names) == count + 1:
                return list(names)
        return ["background"] + [f"class_{i}" for i in range(1, count + 1)]
    raise DatasetError(
        f"{path} not found: cannot tell the dataset's classes. Datasets made by `epspp prepare "
        f'synthetic|voc|coco|folder` have it; otherwise write it: {{"names": ["background", "cat", ...]}} '
        f"(background first, then the classes in label order)."
    )
