"""Segmentation metrics (mIoU, per-class IoU, pixel accuracy) over torchmetrics, DDP-synced.

The confusion matrix comes from one ``torch.bincount`` over a combined (target, prediction) index, on the
device of the metric: an unweighted integer count does not depend on the order of the additions, so it is
deterministic on the CPU and on CUDA, and torch allows it under ``torch.use_deterministic_algorithms(True)``
(torchmetrics' deterministic fallback would build a pixels x K(K+1) matrix instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from epspp.constants import IGNORE_INDEX


class SegmentationMetrics(Metric):
    """Accumulates a confusion matrix (ignore 255) and reports IoU per class, mIoU and pixel accuracy.

    The state is a (K, K+1) count matrix: rows = ground truth, columns = prediction, where the last
    column gathers predictions outside 0..K-1 (e.g. 255 in a pseudo-mask): they count as misses of
    the ground-truth class and as nobody's false positive.  Classes that never occur in the ground
    truth nor in the predictions are left out of the mean.  The state is a torchmetrics sum state,
    so it is summed across DDP ranks by ``compute()``.

    Args:
        num_classes: K, background included.
        ignore_index: ground-truth value that is not scored.
        **kwargs: torchmetrics ``Metric`` options (e.g. ``sync_on_compute=False``).
    """

    full_state_update = False
    confusion: torch.Tensor  # the state add_state registers

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs: Any) -> None:

        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confusion", torch.zeros(num_classes, num_classes + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add predictions and targets of equal shape (class ids; target 255 = ignore)."""
        if preds.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(preds.shape)} differs from target {tuple(target.shape)}")
        k = self.num_classes
        target = target.to(self.confusion.device).flatten().long()
        preds = preds.to(self.confusion.device).flatten().long()
        ignored = target == self.ignore_index
        if bool((~ignored & ((target < 0) | (target >= k))).any()):
            raise ValueError(f"target has values outside 0..{k - 1} other than the ignore index {self.ignore_index}")
        # predictions outside 0..K-1 go to column K; ignored pixels to one extra bin past the (K, K+1) block
        column = torch.where((preds >= 0) & (preds < k), preds, k)
        index = torch.where(ignored, k * (k + 1), target * (k + 1) + column)
        counts = torch.bincount(index, minlength=k * (k + 1) + 1)
        self.confusion += counts[: k * (k + 1)].reshape(k, k + 1)

    def add_confusion(self, confusion: torch.Tensor) -> None:
        """Add a (K, K+1) count matrix laid out as the state (e.g. ``confusion_from_joint``'s)."""
        self.confusion += confusion.to(self.confusion.device, torch.long)

    def compute(self) -> dict[str, torch.Tensor]:
        """IoU per class, mIoU, pixel accuracy and pixels scored (``scores_from_confusion``)."""
        return scores_from_confusion(self.confusion)


def confusion_from_joint(joint: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """The (K, K+1) state of ``SegmentationMetrics`` from a (256, 256) count of (target, prediction) byte pairs.

    Target rows K..255 (255 = ignore) are dropped: the caller has refused other target values there.
    Prediction values outside 0..K-1 are summed into column K, as ``SegmentationMetrics.update`` counts them.
    """
    joint = torch.as_tensor(joint, dtype=torch.long)
    k = num_classes
    rows = joint[:k]
    return torch.cat([rows[:, :k], rows[:, k:].sum(1, keepdim=True)], dim=1)


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU per class (NaN where a class is absent from both), mIoU, pixel accuracy and the pixels scored.

    Args:
        confusion: (K, K) counts, rows = ground truth, columns = prediction; or (K, K+1) with a last
            column of predictions that are no class (counted as misses).
    """
    confusion = confusion.double()
    k = confusion.shape[0]
    true_positive = confusion[:, :k].diagonal()
    union = confusion.sum(1) + confusion[:, :k].sum(0) - true_positive
    iou = torch.where(union > 0, true_positive / union.clamp_min(1), torch.full_like(union, float("nan")))
    total = confusion.sum()
    return {
        "iou": iou.float(),
        "miou": iou.nanmean().float() if bool((union > 0).any()) else torch.tensor(0.0, device=iou.device),
        "pixel_accuracy": (true_positive.sum() / total.clamp_min(1)).float(),
        "pixels": total.long(),
    }


def iou_table(iou: torch.Tensor, class_names: list[str] | None = None) -> str:
    """A plain-text table of per-class IoU (percent) and the mean, for printing."""
    names = class_names or [str(i) for i in range(len(iou))]
    width = max(len(n) for n in names + ["mIoU"])
    lines = [f"{'class':<{width}}  IoU(%)"]
    for name, value in zip(names, iou.tolist(), strict=True):
        lines.append(f"{name:<{width}}  {'  n/a' if value != value else f'{100 * value:6.2f}'}")
    mean = 0.0 if bool(iou.isnan().all()) else float(iou.nanmean())  # as scores_from_confusion's (and --json's)
    lines.append(f"{'mIoU':<{width}}  {100 * mean:6.2f}")
    return "\n".join(lines)
