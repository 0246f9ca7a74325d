"""Image-level labels of a dataset root: ``cls_labels.json``, EPS's ``cls_labels.npy``, or derived from the masks.

``cls_labels.npy`` (the EPS download) is read by ``epspp.data.npy_labels``, which runs no code.
``cls_labels.json`` (written by ``epspp prepare folder``) is the safe format: ``{id: [class name, ...]}``
with the names of ``classes.json``.  Labels derived from masks are cached in the dataset's cache folder outside
the dataset (``epspp.data.cache``; JSON), keyed on each mask's size and mtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from epspp.data.cache import dataset_cache
from epspp.data.classes import read_classes
from epspp.data.io import read_mask
from epspp.data.npy_labels import NPY_LABELS, load_npy_labels
from epspp.errors import DatasetError, OutputError
from epspp.files import write_json

__all__ = ["JSON_LABELS", "LABEL_CACHE", "NPY_LABELS", "image_labels", "load_json_labels", "load_npy_labels"]

JSON_LABELS = "cls_labels.json"
LABEL_CACHE = "cls_labels_from_masks.json"  # in the dataset's cache folder (epspp.data.cache)


def load_json_labels(path: Path, class_names: list[str]) -> dict[str, np.ndarray]:
    """Read ``cls_labels.json`` (``{id: [class name, ...]}``) as multi-hot arrays over ``class_names[1:]``."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if not isinstance(table, dict):
        raise DatasetError(f"{path} must hold an object {{id: [class names]}}")
    index = {name: i for i, name in enumerate(class_names[1:])}
    labels = {}
    for image_id, names in table.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: the labels of {image_id!r} must be a list of class names, got {names!r}")
        unknown = [n for n in names if n not in index]
        if unknown:
            raise DatasetError(
                f"{path}: id {image_id!r} has classes {unknown} that classes.json does not list "
                f"(known: {class_names[1:]})"
            )
        label = np.zeros(len(index), np.float32)
        label[[index[n] for n in names]] = 1.0
        labels[image_id] = label
    return labels


def image_labels(
    root: str | Path, ids: list[str], num_classes: int, mask_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Image-level multi-hot labels (C object classes, float32) for ``ids``.

    Read from ``ROOT/cls_labels.json`` or ``ROOT/cls_labels.npy`` when one exists; otherwise derived
    from the ground-truth masks (classes 1..C present; 0 and 255 are not labels) and cached in the dataset's
    cache folder, ``dataset_cache(root)``, outside the root (one cache file per mask folder).
    """
    root = Path(root)
    for name in (JSON_LABELS, NPY_LABELS):
        given = root / name
        if given.is_file():
            table = load_json_labels(given, read_classes(root)) if name == JSON_LABELS else load_npy_labels(given)
            missing = [i for i in ids if i not in table]
            if missing:
                raise DatasetError(f"{given} has no label for {len(missing)} ids, e.g. {missing[:5]}")
            wrong = [i for i in ids if np.asarray(table[i]).shape != (num_classes,)]
            if wrong:
                raise DatasetError(
                    f"{given}: the label of {wrong[0]!r} has shape {np.asarray(table[wrong[0]]).shape}"
                    f", but the dataset has {num_classes} object classes (classes.json): "
                    "one 0/1 entry per object class"
                )
            return {i: np.asarray(table[i], np.float32) for i in ids}
    return _labels_from_masks(root, ids, num_classes, Path(mask_dir) if mask_dir else root / "SegmentationClassAug")


def _labels_from_masks(root: Path, ids: list[str], num_classes: int, masks: Path) -> dict[str, np.ndarray]:
    cache = dataset_cache(root) / LABEL_CACHE
    if masks.resolve() != (root / "SegmentationClassAug").resolve():  # one cache per mask folder
        digest = hashlib.sha1(str(masks.resolve()).encode()).hexdigest()[:12]
        cache = cache.with_name(f"{cache.stem}_{digest}{cache.suffix}")
    entries = _read_cache(cache) if cache.is_file() else {}
    labels: dict[str, np.ndarray] = {}
    changed = False
    for image_id in ids:
        path = masks / f"{image_id}.png"
        try:
            stat = path.stat()
        except OSError:
            raise DatasetError(
                f"image-level labels are derived from the masks, and {path} is missing: add the mask, or give "
                f"the labels of every id in {root / JSON_LABELS} ({{id: [class names]}}, see `epspp prepare folder`)"
            ) from None
        key = [stat.st_size, stat.st_mtime_ns]
        entry = entries.get(image_id)
        if entry is None or entry.get("key") != key:  # new or edited mask
            present = np.unique(read_mask(path, num_classes + 1))
            entry = {"key": key, "classes": [int(c) for c in present if 0 < c <= num_classes]}
            entries[image_id] = entry
            changed = True
        label = np.zeros(num_classes, np.float32)
        label[[c - 1 for c in entry["classes"]]] = 1.0
        labels[image_id] = label
    if changed:
        _save_cache(cache, entries)
    return labels


def _read_cache(path: Path) -> dict:
    try:
        entries = json.loads(path.read_text())["entries"]
        if not isinstance(entries, dict):
            raise ValueError("'entries' is not an object")
        return entries
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"cannot read {path} (a cache epspp made: delete it and it is rebuilt): {error}") from error


def _save_cache(path: Path, entries: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"version": 1, "entries": entries}, indent=None)
    except (OSError, OutputError):
        pass  # a read-only cache folder: labels are recomputed next time
