"""Segmentation metrics (mIoU, per-class IoU, pixel accuracy) over torchmetrics, DDP-synced."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix

IGNORE_INDEX = 255


class SegmentationMetrics(Metric):
    """Accumulates a confusion matrix (ignore 255) and reports IoU per class, mIoU and pixel accuracy.

    Classes that never occur in the ground truth nor in the predictions are left out of the mean.
    Built on ``MulticlassConfusionMatrix``, so states are summed across DDP ranks.
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.confusion = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index, validate_args=False)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Add predictions and targets of equal shape (class ids; target 255 = ignore)."""
        if preds.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(preds.shape)} differs from target {tuple(target.shape)}")
        self.confusion.update(preds.long().flatten(), target.long().flatten())

    def compute(self) -> dict[str, torch.Tensor]:
        return scores_from_confusion(self.confusion.compute())

    def reset(self) -> None:
        super().reset()
        self.confusion.reset()


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU per class (NaN where a class is absent from both), mIoU and pixel accuracy.

    Args:
        confusion: (K, K) counts, rows = ground truth, columns = prediction.
    """
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = torch.where(union > 0, true_positive / union.clamp_min(1), torch.full_like(union, float("nan")))
    total = confusion.sum()
    return {
        "iou": iou.float(),
        "miou": iou.nanmean().float() if bool((union > 0).any()) else torch.tensor(0.0),
        "pixel_accuracy": (true_positive.sum() / total.clamp_min(1)).float(),
    }


def iou_table(iou: torch.Tensor, class_names: list[str] | None = None) -> str:
    """A plain-text table of per-class IoU (percent) and the mean, for printing."""
    names = class_names or [str(i) for i in range(len(iou))]
    width = max(len(n) for n in names + ["mIoU"])
    lines = [f"{'class':<{width}}  IoU(%)"]
    for name, value in zip(names, iou.tolist()):
        lines.append(f"{name:<{width}}  {'  n/a' if value != value else f'{100 * value:6.2f}'}")
    lines.append(f"{'mIoU':<{width}}  {100 * float(iou.nanmean()):6.2f}")
    return "\n".join(lines)
