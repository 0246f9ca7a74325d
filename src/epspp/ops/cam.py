"""Class activation maps to pseudo-masks: pure tensor ops (EPS/EPS++ inference, Sec. 3 of EPS).

The localization network gives logit maps (B, C+1, h, w): C object channels, then background last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MapKind = Literal["softmax", "relu"]


def object_maps(cam_logits: torch.Tensor, kind: MapKind) -> torch.Tensor:
    """Non-negative object localization maps (B, C, h, w) from logits (B, C+1, h, w).

    ``softmax``: the EPS/EPS++ maps (softmax over the C+1 channels, object channels kept).
    ``relu``: the classic CAM (ReLU of the object channels).
    """
    if kind == "softmax":
        return cam_logits.float().softmax(dim=1)[:, :-1]
    return F.relu(cam_logits.float()[:, :-1])


def normalize_maps(maps: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero the maps of classes absent from the label and divide each map by its maximum.

    Args:
        maps: (B, C, H, W) non-negative maps.
        labels: (B, C) multi-hot image labels.
        eps: added to each maximum (a map of zeros stays zero).
    """
    maps = maps * labels[:, :, None, None].to(maps.dtype)
    peak = maps.flatten(2).amax(dim=2)[:, :, None, None]
    return maps / (peak + eps)


def with_background(maps: torch.Tensor, bg_threshold: float) -> torch.Tensor:
    """Score maps (B, C+1, H, W) of [background = bg_threshold everywhere, class maps]; argmax = mask ids."""
    return torch.cat([torch.full_like(maps[:, :1], bg_threshold), maps], dim=1)


def maps_to_mask(maps: torch.Tensor, bg_threshold: float) -> torch.Tensor:
    """Argmax over [background = bg_threshold, class maps]: (B, C, H, W) -> (B, H, W) ids 0..C."""
    return with_background(maps, bg_threshold).argmax(dim=1)


def labelled_argmax(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(dim=1)`` of one image's (1, C+1, H, W) scores, taken over the background and its labelled
    classes only: the other channels are 0 (``normalize_maps``, kept 0 by PAMR and the CRF) and the background
    score is > 0, so they never win; 3 channels instead of 21 for a VOC image with 2 labels."""
    keep = torch.cat([labels.new_zeros(1, dtype=torch.long), labels[0].nonzero()[:, 0] + 1])
    return keep[scores[:, keep].argmax(dim=1)]


def bilinear_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (N, 3, H, W) normalized image."""
    return F.interpolate(image, size, mode="bilinear", align_corners=False)


def _picture(image: torch.Tensor, mean_t: torch.Tensor, std_t: torch.Tensor) -> torch.Tensor:
    """The uint8 picture's values (0..255, float32, rounded) behind a normalized (N, 3, H, W) image."""
    return ((image.float() * std_t + mean_t) * 255.0).round().clamp(0, 255)


def bicubic_resize(
    image: torch.Tensor, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``pil_bicubic_resize`` on the image's own device: torch's antialiased bicubic (PIL's kernel, a = -0.5,
    widened when shrinking) of the rounded picture, in PIL's two passes (width, then height), each rounded to
    uint8 values, then normalized again. On photos it differs from PIL's by at most 2 grey levels, with 97-99%
    of the pixels equal (float vs PIL's fixed-point weights; BENCHMARKS.md, section 11)."""
    mean_t = image.new_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = image.new_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    picture = _picture(image, mean_t, std_t)
    for step in ((picture.shape[-2], size[1]), size):  # PIL clips its first pass to 0..255: so does this
        picture = F.interpolate(picture, step, mode="bicubic", align_corners=False, antialias=True)
        picture = picture.round().clamp(0, 255)
    return ((picture / 255.0 - mean_t) / std_t).to(image.dtype)


def pil_bicubic_resize(
    image: torch.Tensor, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Resize as EPS's ``infer.py``: the uint8 RGB picture with PIL's bicubic filter, normalized again.

    The uint8 picture is recovered exactly from the normalized (N, 3, H, W) image (``mean``/``std`` of the
    0..1 scale, as the data pipeline used).
    """
    mean_t = image.new_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = image.new_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    pictures = _picture(image, mean_t, std_t).to(torch.uint8)
    resized = []
    for picture in pictures.permute(0, 2, 3, 1).cpu().numpy():
        array = np.asarray(Image.fromarray(picture).resize((size[1], size[0]), resample=Image.Resampling.BICUBIC))
        resized.append(torch.from_numpy(array.copy()))
    stacked = torch.stack(resized).permute(0, 3, 1, 2).to(image.device, torch.float32) / 255.0
    return ((stacked - mean_t) / std_t).to(image.dtype)


def multiscale_maps(
    forward_cam: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
    flip: bool = True,
    kind: MapKind = "softmax",
    resize: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] = bilinear_resize,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Object maps of one image summed over scales (and flips), at the image's resolution.

    The flipped copy runs in the same batch as the original at each scale.

    Args:
        forward_cam: the network: images (N, 3, h, w) -> logits (N, C+1, h', w').
        image: (1, 3, H, W) normalized image.
        scales: input scales.
        flip: add horizontally flipped inputs.
        kind: see ``object_maps``.
        resize: how the image is scaled (``bilinear_resize``, ``pil_bicubic_resize`` as EPS, or
            ``bicubic_resize`` on the device).
        classes: the object channels to keep (indices into C, e.g. the image's labelled classes): only they
            are upsampled and summed; ``None`` keeps all C. The softmax still runs over all C+1 channels.

    Returns:
        (1, C, H, W) summed maps (float32); (1, len(classes), H, W) with ``classes``.
    """
    height, width = image.shape[-2:]
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = image if size == (height, width) else resize(image, size)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        maps = object_maps(forward_cam(batch), kind)
        maps = maps if classes is None else maps[:, classes]
        maps = F.interpolate(maps, (height, width), mode="bilinear", align_corners=False)
        summed = maps[:1] + maps[1:].flip(-1) if flip else maps
        total = summed if total is None else total + summed
    return cast(torch.Tensor, total)  # scales is never empty
