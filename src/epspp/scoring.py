"""A folder of masks scored against a dataset's ground truth (``epspp evaluate`` and the mask writer share it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from epspp.data.classes import read_classes
from epspp.data.io import DatasetError, read_mask, read_split
from epspp.metrics import SegmentationMetrics
from epspp.runs.mask_files import refuse_overview


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
    confusion matrices.  Ids without ground truth are skipped and counted.

    Returns:
        ``metric`` (updated), ``evaluated`` and ``no_ground_truth`` counts for this rank.
    """
    pred_dir, root = Path(pred_dir), Path(root)
    names = read_classes(root)
    masks = Path(mask_dir) if mask_dir else root / "SegmentationClassAug"
    ids = read_split(root, split)
    metric = metric or SegmentationMetrics(len(names))
    evaluated = skipped = 0
    for image_id in ids[rank::world_size]:
        target_path = masks / f"{image_id}.png"
        if not target_path.is_file():
            skipped += 1
            continue
        pred_path = pred_dir / f"{image_id}.png"
        if not pred_path.is_file():
            raise DatasetError(f"prediction {pred_path} is missing (id {image_id} of split '{split}')")
        refuse_overview(pred_path, image_id)  # the one id whose mask could be render's picture
        target = read_mask(target_path, len(names))
        pred = read_mask(pred_path, len(names))
        if pred.shape != target.shape:
            raise DatasetError(
                f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} but the ground truth {target_path} is "
                f"{target.shape[1]}x{target.shape[0]} (WxH): predictions must have the image's size"
            )
        metric.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target.astype(np.int64)))
        evaluated += 1
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
