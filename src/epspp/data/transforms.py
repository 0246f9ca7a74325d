"""albumentations pipelines applied jointly to image, saliency and mask.

Training (EPS recipe, ``metadata/dataset.py``): random resize of the long side, horizontal flip, colour
jitter on the image only, normalization, then a random crop with padding: the image is padded after
normalization with 0 (the mean colour, as EPS's ``random_crop_with_saliency``), the saliency with 0, the
mask with 255 (ignore).  With ``scales`` (deeplab-pytorch's ``libs/datasets/base.py``, stage 3) the whole
image is scaled by a random choice of the factors instead, and padded at the bottom / right.  Evaluation:
only normalization, optionally shrinking images larger than ``eval_size`` and padding to ``eval_size``
squares (the default keeps every image at full resolution).

The spatial ops before the jitter run in one ``A.Compose`` where the saliency map is an extra *image*
target (so it is resized like the image and padded with 0), the mask a mask target (nearest, padded with
255); photometric ops then run on the image alone; the padding/crop runs jointly on the normalized image.
The saliency's error flags (``saliency_error``, when given) are a second mask target: nearest, like the mask,
but padded with 0 (they travel complemented, ``255 - flags``, so that the masks' padding value 255 reads 0).

Seeding: albumentations draws from generators of its own, which neither ``seed_everything`` nor the
DataLoader's worker seeding reaches.  ``JointTransform`` therefore re-seeds its pipelines for every sample
from PyTorch's default generator (see ``augmentation_seed``): the main process's generator is seeded by
``seed_everything``; each loader worker's by PyTorch from it (and by Lightning's worker seeding, which mixes
in the worker and the rank), so the augmentation follows the run's seed with any number of workers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import default_collate, get_worker_info

from epspp.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 (re-exported: their old path)

#: the targets besides ``image`` and ``mask`` that every pipeline moves with the image
TARGETS = {"saliency": "image", "saliency_error": "mask"}


def augmentation_seed() -> int:
    """The seed of one sample's augmentation, drawn from PyTorch's default generator.

    In a DataLoader worker that generator is already distinct per worker and (with Lightning's worker
    seeding) per rank; in the main process (``num_workers=0``) every DDP rank starts from the same
    ``seed_everything`` state, so the rank is mixed in.
    """
    seed = int(torch.randint(0, 2**62, (1,)).item())
    if get_worker_info() is None and dist.is_available() and dist.is_initialized():
        seed = int(np.random.SeedSequence([seed, dist.get_rank()]).generate_state(1, np.uint64)[0])
    return seed


@dataclass
class JointTransform:
    """Spatial ops on (image, saliency, mask), photometric ops on the image, then padding/cropping of all three."""

    spatial: A.Compose
    photometric: A.Compose
    placement: A.Compose | None = None
    shrink_to: int | None = None
    scale: float = 1.0

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray | None,
        saliency: np.ndarray | None = None,
        saliency_error: np.ndarray | None = None,
    ) -> dict[str, torch.Tensor]:
        """Transform numpy arrays into tensors.

        Args:
            image: (H, W, 3) uint8.
            mask: (H, W) uint8 class ids (255 = ignore), or None (stage-1 training reads none).
            saliency: (H, W) float32 in [0, 1], or None.
            saliency_error: (H, W) uint8 flags of the saliency's injected errors, or None.

        Returns:
            ``image`` (3, h, w) float32, ``mask`` (h, w) int64 when given and, when given, ``saliency``
            (1, h, w) float32 in [0, 1] and ``saliency_error`` (h, w) uint8 (geometry of the saliency, nearest,
            0 in the padding).  The random draws do not depend on whether a mask or error flags are given.
        """
        self.reseed(augmentation_seed())
        sal = np.zeros(image.shape[:2], np.float32) if saliency is None else saliency
        masks = {} if mask is None else {"mask": mask}
        if saliency_error is not None:
            masks["saliency_error"] = 255 - saliency_error  # complemented: the masks' padding 255 is then 0
        if self.scale != 1.0:
            image, masks, sal = _resize_long(image, masks, sal, max(1, round(max(image.shape[:2]) * self.scale)))
        if self.shrink_to is not None and max(image.shape[:2]) > self.shrink_to:
            image, masks, sal = _resize_long(image, masks, sal, self.shrink_to)
        out = self.spatial(image=image, saliency=sal[..., None], **masks)
        out["image"] = self.photometric(image=out["image"])["image"]
        if self.placement is not None:
            masks = {name: out[name] for name in masks}
            out = self.placement(image=out["image"], saliency=out["saliency"], **masks)
        result = {"image": torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()}
        if mask is not None:
            result["mask"] = torch.from_numpy(np.array(out["mask"], dtype=np.int64))
        if saliency is not None:
            sal_out = np.clip(out["saliency"][..., 0], 0.0, 1.0)
            result["saliency"] = torch.from_numpy(np.ascontiguousarray(sal_out))[None].float()
        if saliency_error is not None:
            result["saliency_error"] = torch.from_numpy(255 - np.asarray(out["saliency_error"], dtype=np.uint8))
        return result

    def reseed(self, seed: int) -> None:
        """Make the next call's random draws a function of ``seed`` (one stream shared by the pipelines)."""
        generator, py_random = np.random.default_rng(seed), random.Random(seed)
        for pipeline in (self.spatial, self.photometric, self.placement):
            if pipeline is not None:
                pipeline.set_random_state(generator, py_random)


def _resize_long(
    image: np.ndarray, masks: dict[str, np.ndarray], saliency: np.ndarray, long_side: int
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Resize so that the long side equals ``long_side`` (bilinear; nearest for the masks)."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
        {name: cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST) for name, mask in masks.items()},
        cv2.resize(saliency, size, interpolation=cv2.INTER_LINEAR),
    )


def _scale_choices(resize_long: Sequence[int]) -> list[int]:
    """Every long side in [low, high], drawn uniformly (EPS: ``random.randint(low, high)``)."""
    low, high = int(resize_long[0]), int(resize_long[1])
    if low > high or low < 1:
        raise ValueError(f"resize_long must be (low, high) with 1 <= low <= high, got {resize_long}")
    return list(range(low, high + 1))


INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def _pad_and_crop(crop_size: int, position: str = "random") -> A.Compose:
    """Pad to ``crop_size`` at ``position`` (image 0 = the mean after normalization, saliency 0, mask 255),
    then crop a random ``crop_size`` square."""
    return A.Compose(
        [
            A.PadIfNeeded(
                min_height=crop_size,
                min_width=crop_size,
                position=position,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
            ),
            A.RandomCrop(height=crop_size, width=crop_size),
        ],
        additional_targets=TARGETS,
    )


class _ScaleMaskLikePIL(A.RandomScale):
    """``RandomScale`` whose mask is resized as deeplab-pytorch's ``libs/datasets/base.py`` does it: PIL's
    nearest filter (cv2's picks other source pixels: labels shift by up to 1 px)."""

    def apply_to_mask(self, mask: np.ndarray, scale: float, **params: Any) -> np.ndarray:
        height, width = int(mask.shape[0] * scale), int(mask.shape[1] * scale)  # the image's size, as albumentations
        return np.asarray(Image.fromarray(mask).resize((width, height), resample=Image.Resampling.NEAREST))


def train_transform(
    crop_size: int,
    resize_long: Sequence[int] = (256, 512),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    color_jitter: float = 0.3,
    jitter_hue: float = 0.0,
    jitter_p: float = 0.8,
    interpolation: str = "bilinear",
    scales: Sequence[float] | None = None,
) -> JointTransform:
    """The EPS training pipeline: random long-side resize, flip, jitter, normalization, padded random crop.

    Args:
        crop_size: side of the square crop.
        resize_long: the long side is drawn uniformly from [low, high] (integers).
        mean: normalization mean (RGB, 0..1 scale).
        std: normalization std.
        color_jitter: brightness, contrast and saturation strength (0 disables the jitter).
        jitter_hue: hue strength (EPS: 0.1).
        jitter_p: probability of jittering an image (EPS: 1, always).
        interpolation: ``bilinear`` or ``bicubic`` (EPS resizes image and saliency bicubically) resize.
        scales: deeplab-pytorch's augmentation instead of ``resize_long``: the whole image scaled by a random
            choice of these factors (its VOC config: 0.5, 0.75, 1, 1.25, 1.5), padded at the bottom / right.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    if scales and min(scales) <= 0:
        raise ValueError(f"scales must be positive factors, got {list(scales)}")
    flag = INTERPOLATIONS[interpolation]
    resize = (
        A.OneOf([_ScaleMaskLikePIL(scale_limit=(s - 1, s - 1), interpolation=flag, p=1.0) for s in scales], p=1.0)
        if scales
        else A.LongestMaxSize(max_size=_scale_choices(resize_long), interpolation=flag)
    )
    spatial = A.Compose([resize, A.HorizontalFlip(p=0.5)], additional_targets=TARGETS)
    jitter = color_jitter
    photometric = A.Compose(
        [
            A.ColorJitter(
                brightness=jitter,
                contrast=jitter,
                saturation=jitter,
                hue=jitter_hue,
                p=jitter_p if jitter or jitter_hue else 0.0,
            ),
            A.Normalize(mean=tuple(mean), std=tuple(std)),
        ]
    )
    return JointTransform(spatial, photometric, _pad_and_crop(crop_size, "top_left" if scales else "random"))


def eval_transform(
    eval_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: float = 1.0,
) -> JointTransform:
    """Evaluation pipeline without random ops.

    Args:
        eval_size: when set, images whose long side exceeds it are shrunk to it, and all are padded
            (bottom/right; image 0 = the mean colour, mask 255) to ``eval_size`` squares so that they batch.
            ``None`` keeps every image at its original resolution (batches are padded by ``pad_collate``).
        mean: per-channel mean of the normalization (RGB, 0..1).
        std: per-channel standard deviation of the normalization.
        scale: every image (bilinear), saliency map (bilinear) and mask (nearest) is first resized by this
            factor, before ``eval_size`` applies: the scale a network was trained at (the demo's 2x regime).
    """
    placement = None
    if eval_size is not None:
        placement = A.Compose(
            [
                A.PadIfNeeded(
                    min_height=eval_size,
                    min_width=eval_size,
                    position="top_left",
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    fill_mask=IGNORE_INDEX,
                )
            ],
            additional_targets=TARGETS,
        )
    spatial = A.Compose([], additional_targets=TARGETS)
    photometric = A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std))])
    if scale <= 0:
        raise ValueError(f"eval scale must be > 0, got {scale}")
    return JointTransform(spatial, photometric, placement, shrink_to=eval_size, scale=scale)


def pad_collate(samples: list[dict]) -> dict:
    """Batch samples of different sizes at full resolution: pad to the largest, bottom/right.

    ``image`` is padded with 0 (the mean colour after normalization), ``saliency`` with 0 and ``mask`` with
    255 (ignored by the metrics); every other field is batched as PyTorch's default collate does.
    """
    height = max(int(sample["image"].shape[-2]) for sample in samples)
    width = max(int(sample["image"].shape[-1]) for sample in samples)
    fills = {"image": 0.0, "saliency": 0.0, "mask": IGNORE_INDEX}
    padded = []
    for sample in samples:
        sample = dict(sample)
        for key, fill in fills.items():
            if key in sample:
                tensor = sample[key]
                pad = (0, width - tensor.shape[-1], 0, height - tensor.shape[-2])
                sample[key] = torch.nn.functional.pad(tensor, pad, value=fill)
        padded.append(sample)
    return default_collate(padded)
