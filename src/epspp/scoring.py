"""A folder of masks scored against a dataset's ground truth (``epspp evaluate`` and the mask writer share it), and
masks scored against the synthetic dataset's context (``context_confusion``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from epspp.data.classes import read_classes
from epspp.data.io import DatasetError, check_mask_values, read_mask_pixels, read_split
from epspp.data.truth import read_context
from epspp.metrics import SegmentationMetrics, confusion_from_joint
from epspp.runs.mask_files import refuse_overview

#: pixels per ``cv2.calcHist`` call: its float32 counts are exact integers up to 2**24
EXACT_COUNTS = 1 << 24


def pair_counts(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(256, 256) int64 pixels per (target value, prediction value) of two (H, W) uint8 masks.

    One ``cv2.calcHist`` per block of at most ``EXACT_COUNTS`` pixels (a whole VOC or COCO mask is one),
    so that every float32 count is exact.
    """
    counts = np.zeros((256, 256), np.int64)
    height, width = target.shape
    rows, cols = max(1, EXACT_COUNTS // width), min(width, EXACT_COUNTS)
    for top in range(0, height, rows):
        for left in range(0, width, cols):
            blocks = [m[top : top + rows, left : left + cols] for m in (target, pred)]
            counts += cv2.calcHist(blocks, [0, 1], None, [256, 256], [0, 256, 0, 256]).astype(np.int64)
    return counts


def read_prediction(pred_dir: str | Path, image_id: str, split: str) -> np.ndarray:
    """``PRED_DIR/<id>.png`` as (H, W) uint8, its values not checked; a missing file or render's picture refused."""
    pred_path = Path(pred_dir) / f"{image_id}.png"
    if not pred_path.is_file():
        raise DatasetError(f"prediction {pred_path} is missing (id {image_id} of split '{split}')")
    refuse_overview(pred_path, image_id)  # the one id whose mask could be render's picture
    return read_mask_pixels(pred_path)


def evaluate_folder(
    pred_dir: str | Path,
    root: str | Path,
    split: str,
    mask_dir: str | Path | None = None,
    metric: SegmentationMetrics | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict:
    """Compare ``PRED_DIR/<id>.png`` with the ground truth of every id of a split that has one.

    Under DDP each rank reads ``ids[rank::world_size]``; ``metric.compute()`` then syncs the
    confusion matrices.  Ids without ground truth are skipped and counted.  Each pair of masks is
    counted by ``pair_counts`` (its (target, prediction) byte pairs), whose margins also give
    the value checks of both files; the sum of the pair counts goes into ``metric`` at the end.

    Returns:
        ``metric`` (updated), ``evaluated`` and ``no_ground_truth`` counts for this rank.
    """
    pred_dir, root = Path(pred_dir), Path(root)
    names = read_classes(root)
    masks = Path(mask_dir) if mask_dir else root / "SegmentationClassAug"
    ids = read_split(root, split)
    metric = metric or SegmentationMetrics(len(names))
    evaluated = skipped = 0
    joint = np.zeros((256, 256), np.int64)  # pixels per (target, prediction) value pair
    for image_id in ids[rank::world_size]:
        target_path = masks / f"{image_id}.png"
        if not target_path.is_file():
            skipped += 1
            continue
        pred_path = pred_dir / f"{image_id}.png"
        pred = read_prediction(pred_dir, image_id, split)
        target = read_mask_pixels(target_path)
        if pred.shape != target.shape:
            raise DatasetError(
                f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} but the ground truth {target_path} is "
                f"{target.shape[1]}x{target.shape[0]} (WxH): predictions must have the image's size"
            )
        pairs = pair_counts(target, pred)
        check_mask_values(target_path, pairs.sum(1), len(names))
        check_mask_values(pred_path, pairs.sum(0), len(names))
        joint += pairs
        evaluated += 1
    metric.add_confusion(confusion_from_joint(joint, len(names)))
    return {"metric": metric, "evaluated": evaluated, "no_ground_truth": skipped, "class_names": names}


def scores_to_json(scores: dict, class_names: list[str]) -> dict:
    """mIoU and per-class IoU in percent (None for classes absent from both)."""
    per_class = {
        n: (None if v != v else round(100 * v, 3)) for n, v in zip(class_names, scores["iou"].tolist(), strict=True)
    }
    return {
        "miou": round(100 * float(scores["miou"]), 3),
        "pixel_accuracy": round(100 * float(scores["pixel_accuracy"]), 3),
        "per_class_iou": per_class,
    }


def context_confusion(
    masks_of_id: Callable[[str], np.ndarray],
    root: str | Path,
    ids: Iterable[str],
    labels_of_id: Callable[[str], np.ndarray],
    class_names: list[str] | None = None,
) -> dict:
    """The share of context pixels (``ROOT/SegmentationContext``) whose predicted label is their owner class:
    rails labelled train, water labelled boat, counted in the images labelled with the owner class only (a
    context without its object, e.g. rails without a train, cannot be taken for it by a mask of the image's
    labelled classes, so it would only dilute the share).

    Args:
        masks_of_id: the predicted (H, W) class-id mask of an id (e.g. ``read_prediction`` of a folder).
        root: the synthetic dataset's root.
        ids: the images to score; their counts are pooled.
        labels_of_id: an image's multi-hot labels of the C object classes (``data.labels.image_labels``).
        class_names: the root's classes when the caller has read them already (else read here).

    Returns:
        ``context_confusion`` (the pooled share, None without context pixels), ``per_class`` (owner class name ->
        its share, for each class owning context pixels) and ``context_pixels`` (the pooled count).
    """
    names = class_names if class_names is not None else read_classes(root)
    total, confused = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for image_id in ids:
        owner, pred = read_context(root, image_id), np.asarray(masks_of_id(image_id))
        if pred.shape != owner.shape:
            raise DatasetError(
                f"the prediction of {image_id} is {pred.shape[1]}x{pred.shape[0]} but its context map in "
                f"{Path(root) / 'SegmentationContext'} is {owner.shape[1]}x{owner.shape[0]} (WxH)"
            )
        labelled = np.zeros(256, bool)
        labelled[1 + np.flatnonzero(np.asarray(labels_of_id(image_id)))] = True
        context = labelled[owner]  # owner 0 (no context) is never labelled
        total += np.bincount(owner[context], minlength=256)
        confused += np.bincount(owner[context & (pred == owner)], minlength=256)
    owners = np.flatnonzero(total)
    if owners.size and owners.max() >= len(names):
        raise DatasetError(f"the context maps of {root} name class {owners.max()}, but it has {len(names)} classes")
    pixels = int(total.sum())
    return {
        "context_confusion": float(confused.sum() / pixels) if pixels else None,
        "per_class": {names[c]: float(confused[c] / total[c]) for c in owners},
        "context_pixels": pixels,
    }
