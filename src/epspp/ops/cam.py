"""Class activation maps to pseudo-masks: pure tensor ops (EPS/EPS++ inference, Sec. 3 of EPS).

The localization network gives logit maps (B, C+1, h, w): C object channels, then background last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

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


def multiscale_maps(
    forward_cam: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
    flip: bool = True,
    kind: MapKind = "softmax",
) -> torch.Tensor:
    """Object maps of one image summed over scales (and flips), at the image's resolution.

    The flipped copy runs in the same batch as the original at each scale.

    Args:
        forward_cam: the network: images (N, 3, h, w) -> logits (N, C+1, h', w').
        image: (1, 3, H, W) normalized image.
        scales: input scales.
        flip: add horizontally flipped inputs.
        kind: see ``object_maps``.

    Returns:
        (1, C, H, W) summed maps (float32).
    """
    height, width = image.shape[-2:]
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = image if size == (height, width) else F.interpolate(image, size, mode="bilinear", align_corners=False)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        maps = object_maps(forward_cam(batch), kind)
        maps = F.interpolate(maps, (height, width), mode="bilinear", align_corners=False)
        summed = maps[:1] + maps[1:].flip(-1) if flip else maps
        total = summed if total is None else total + summed
    return total
