"""``epspp render``: a grid PNG of image | saliency | mask overlay for a folder of predicted masks.

For eyeballing pseudo-masks (or segmentation predictions) where no ground truth exists: one row per
image captioned with its id and its image labels, column titles, and a legend of the classes that appear.
``--images DIR`` shows predictions of images outside a dataset (image | mask overlay).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from epspp.data.classes import read_classes
from epspp.data.io import image_files, read_image, read_mask, read_saliency
from epspp.data.labels import JSON_LABELS, NPY_LABELS, load_json_labels, load_npy_labels
from epspp.errors import DatasetError
from epspp.files import write_atomic
from epspp.panels import Row, blend, caption_for, legend_of, overview_picture
from epspp.runs.mask_files import OVERVIEW, OVERVIEW_SOFTWARE, is_overview, mask_files
from epspp.runs.ownership import check_output_file, refuse_inside
from epspp.visualize import heatmap

RENDER = OVERVIEW_SOFTWARE
ROWS_KEY = "epspp:rows"  # PNG text of an overview: its rows' ids, in order (JSON list)
rendered = is_overview  # the write rule's test of an --out file (kept under its old name)


def render(
    pred_dir: str | Path,
    root: str | Path | None = None,
    out: str | Path | None = None,
    num: int = 32,
    panel: int = 256,
    overwrite: bool = False,
    images: str | Path | None = None,
    saliency_dir: str | Path | None = None,
    mask_dir: str | Path | None = None,
    class_names: list[str] | None = None,
) -> Path:
    """Write the overview of ``num`` masks of ``PRED_DIR`` (evenly spread over the sorted ids); return its path.

    Args:
        pred_dir: folder of ``<id>.png`` masks (stage 2, a segmentation predict, or a predicted image folder).
        root: the dataset root: images (unless ``images``), saliency maps, class names and image labels.
        out: the PNG to write (default ``PRED_DIR/overview.png``).
        num: rows (images) at most.
        panel: width of each panel in pixels.
        overwrite: replace ``out`` also when epspp did not write it.
        images: the folder of the images (``--images``; images outside a dataset: no saliency column).
        saliency_dir: the saliency maps (default ``ROOT/saliency`` when the images are the root's).
        mask_dir: the ground truth the image labels are read from when the root has no ``cls_labels`` file.
        class_names: the class names (default ``ROOT/classes.json``, else ``PRED_DIR/manifest.json``).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DatasetError(f"--pred-dir {pred_dir} is not a folder")
    if num < 1:
        raise DatasetError(f"--num must be >= 1, got {num}")
    if panel < 16:
        raise DatasetError(f"--panel must be >= 16 pixels, got {panel}")
    if root is None and images is None:
        raise DatasetError("give the images: --root ROOT (a dataset) or --images DIR (a folder of images)")
    root = Path(root) if root is not None else None
    image_dir = Path(images) if images is not None else cast(Path, root) / "JPEGImages"  # one of them is given
    if not image_dir.is_dir():
        raise DatasetError(
            f"--images {image_dir} is not a folder"
            if images is not None
            else f"{image_dir} not found: is --root {root} a dataset root?"
        )
    target = Path(out) if out else pred_dir / OVERVIEW
    option = "--out" if out else f"--out (default PRED_DIR/{OVERVIEW})"
    refuse_inside(target, {root: "the dataset root", image_dir: "the image folder"}, option)
    check_output_file(target, RENDER, option, is_overview, overwrite)
    names = class_names or _class_names(root, pred_dir)
    masks = mask_files(pred_dir)
    if not masks:
        raise DatasetError(f"no <id>.png mask in {pred_dir}")
    ids = sorted(masks)
    chosen = [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, min(num, len(ids))).round().astype(int))]
    if saliency_dir is None and root is not None and images is None:
        saliency_dir = root / "saliency"
    saliency = Path(saliency_dir) if saliency_dir is not None and Path(saliency_dir).is_dir() else None
    labels = _labels_reader(root, Path(mask_dir) if mask_dir else None, names)
    found = image_files(image_dir)
    rows, shown = [], []
    for image_id in chosen:
        if image_id not in found:
            hint = (
                "--images the folder these masks were predicted from"
                if images
                else ("--root the dataset these masks were made from")
            )
            raise DatasetError(f"mask {masks[image_id]} has no image {image_dir}/{image_id}.*: is {hint}?")
        image = read_image(found[image_id])
        mask = read_mask(masks[image_id], len(names) if len(names) > 1 else 255)
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"mask {masks[image_id]} is {mask.shape[1]}x{mask.shape[0]}, its image "
                f"{found[image_id]} {image.shape[1]}x{image.shape[0]}: masks have their image's size"
            )
        panels = [image, blend(image, mask)]
        if saliency is not None:
            path = saliency / f"{image_id}.png"
            panels.insert(1, heatmap(read_saliency(path)) if path.is_file() else np.full_like(image, 230))
        shown.append(mask)
        rows.append(Row(image_id, caption_for(labels(image_id), mask, names), panels))
    titles = ["image", "saliency", "mask overlay"] if saliency is not None else ["image", "mask overlay"]
    picture = overview_picture(rows, titles, legend_of(shown, names), panel)
    _write_png(target, picture, {"Software": RENDER, ROWS_KEY: json.dumps(chosen)})
    return target


def _class_names(root: Path | None, pred_dir: Path) -> list[str]:
    """``ROOT/classes.json``; without a root the ``class_names`` of ``PRED_DIR/manifest.json`` (the mask writer's),
    else only ``background`` (other classes are then named ``class <id>``)."""
    if root is not None:
        return read_classes(root)
    try:
        names = json.loads((pred_dir / "manifest.json").read_text(encoding="utf-8")).get("class_names")
    except (OSError, ValueError, AttributeError):
        names = None
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) and names else ["background"]


def _labels_reader(root: Path | None, mask_dir: Path | None, names: list[str]) -> Callable[[str], list[str] | None]:
    """id -> its image labels (class names) from ``ROOT/cls_labels.json|npy`` or its ground-truth mask; None when
    the dataset does not know them (no root, or an id with neither)."""
    table: dict[str, np.ndarray] = {}
    if root is not None and (root / JSON_LABELS).is_file():
        table = load_json_labels(root / JSON_LABELS, names)
    elif root is not None and (root / NPY_LABELS).is_file():
        table = load_npy_labels(root / NPY_LABELS)
    truth = mask_dir or (root / "SegmentationClassAug" if root is not None else None)

    def labels(image_id: str) -> list[str] | None:
        if image_id in table:
            return [names[c + 1] if c + 1 < len(names) else f"class {c + 1}" for c in np.flatnonzero(table[image_id])]
        path = truth / f"{image_id}.png" if truth is not None else None
        if path is None or not path.is_file():
            return None
        return [names[c] for c in np.unique(read_mask(path, len(names))) if 0 < c < len(names)]

    return labels


def _write_png(target: Path, picture: np.ndarray, text: dict[str, str]) -> None:
    """Write ``picture`` with PNG text entries, under a temporary name then renamed."""
    tag = PngInfo()
    for key, value in text.items():
        tag.add_text(key, value)
    write_atomic(target, lambda tmp: Image.fromarray(picture).save(tmp, pnginfo=tag))
