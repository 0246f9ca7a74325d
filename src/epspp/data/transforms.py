"""albumentations pipelines applied jointly to image, saliency and mask.

Training (EPS recipe): random resize of the long side, horizontal flip, colour jitter on the image
only, random crop with padding (mask 255 = ignore, saliency 0), normalization.  With ``scales``
(deeplab-pytorch's ``libs/datasets/base.py``, stage 3): the whole image scaled by a random choice of
the factors, flip, padding at the bottom / right with the mean colour (mask 255) up to the crop, random
crop.  Evaluation: only normalization, plus (for batched validation) a shrink of images larger than
``eval_size`` and padding to ``eval_size``.

Spatial ops run in one ``A.Compose`` where the saliency map is an extra *image* target (so it is
resized bilinearly and padded with 0), the mask a mask target (nearest, padded with 255); photometric
ops then run on the image alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255


@dataclass
class JointTransform:
    """A spatial pipeline on (image, saliency, mask), then a photometric one on the image."""

    spatial: A.Compose
    photometric: A.Compose
    shrink_to: int | None = None

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, saliency: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """Transform numpy arrays into tensors.

        Args:
            image: (H, W, 3) uint8.
            mask: (H, W) uint8 class ids (255 = ignore).
            saliency: (H, W) float32 in [0, 1], or None.

        Returns:
            ``image`` (3, h, w) float32, ``mask`` (h, w) int64 and, when given, ``saliency``
            (1, h, w) float32 in [0, 1].
        """
        sal = np.zeros(mask.shape, np.float32) if saliency is None else saliency
        if self.shrink_to is not None and max(mask.shape) > self.shrink_to:
            image, mask, sal = _shrink(image, mask, sal, self.shrink_to)
        out = self.spatial(image=image, mask=mask, saliency=sal[..., None])
        image = self.photometric(image=out["image"])["image"]
        result = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
            "mask": torch.from_numpy(np.array(out["mask"], dtype=np.int64)),
        }
        if saliency is not None:
            sal_out = np.clip(out["saliency"][..., 0], 0.0, 1.0)
            result["saliency"] = torch.from_numpy(np.ascontiguousarray(sal_out))[None].float()
        return result


def _shrink(
    image: np.ndarray, mask: np.ndarray, saliency: np.ndarray, long_side: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize so that the long side equals ``long_side`` (bilinear; nearest for the mask)."""
    height, width = mask.shape
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
        cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST),
        cv2.resize(saliency, size, interpolation=cv2.INTER_LINEAR),
    )


def _scale_choices(resize_long: Sequence[int]) -> list[int]:
    low, high = int(resize_long[0]), int(resize_long[1])
    if low > high or low < 1:
        raise ValueError(f"resize_long must be (low, high) with 1 <= low <= high, got {resize_long}")
    step = max(1, (high - low) // 32)
    return list(range(low, high + 1, step))


def _scale_ops(crop_size: int, resize_long: Sequence[int], scales: Sequence[float] | None,
               mean: Sequence[float]) -> list:
    """The resize and padding ops: EPS's long-side resize and zero padding, or deeplab-pytorch's scales and mean."""
    if not scales:
        resize = A.LongestMaxSize(max_size=_scale_choices(resize_long), interpolation=cv2.INTER_LINEAR)
        position, fill = "random", 0
    else:
        if min(scales) <= 0:
            raise ValueError(f"scales must be positive factors, got {list(scales)}")
        resize = A.OneOf([A.RandomScale(scale_limit=(s - 1, s - 1), interpolation=cv2.INTER_LINEAR, p=1.0)
                          for s in scales], p=1.0)
        position, fill = "top_left", tuple(round(255 * m) for m in mean)
    pad = A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position=position,
                        border_mode=cv2.BORDER_CONSTANT, fill=fill, fill_mask=IGNORE_INDEX)
    return [resize, A.HorizontalFlip(p=0.5), pad]


def train_transform(
    crop_size: int,
    resize_long: Sequence[int] = (256, 512),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    color_jitter: float = 0.3,
    scales: Sequence[float] | None = None,
) -> JointTransform:
    """The EPS training pipeline: random long-side resize, flip, jitter, padded random crop.

    ``scales`` (segmentation only: the saliency map would be padded with the mean too) replaces the
    long-side resize by deeplab-pytorch's: a random choice of these factors of the whole image, and
    pads with the mean colour (0 after normalization) at the bottom / right.
    """
    spatial = A.Compose(
        [
            *_scale_ops(crop_size, resize_long, scales, mean),
            A.RandomCrop(height=crop_size, width=crop_size),
        ],
        additional_targets={"saliency": "image"},
    )
    jitter = color_jitter
    photometric = A.Compose(
        [
            A.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0.0, p=0.8 if jitter else 0.0),
            A.Normalize(mean=tuple(mean), std=tuple(std)),
        ]
    )
    return JointTransform(spatial, photometric)


def eval_transform(
    eval_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> JointTransform:
    """Evaluation pipeline without random ops.

    Args:
        eval_size: when set, images whose long side exceeds it are shrunk to it, and all are padded
            (bottom/right; mask 255) to ``eval_size`` squares so that they batch. ``None`` keeps the
            original resolution (prediction, batch size 1).
    """
    ops: list = []
    if eval_size is not None:
        ops = [
            A.PadIfNeeded(
                min_height=eval_size, min_width=eval_size, position="top_left",
                border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX,
            ),
        ]
    spatial = A.Compose(ops, additional_targets={"saliency": "image"})
    photometric = A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std))])
    return JointTransform(spatial, photometric, shrink_to=eval_size)
