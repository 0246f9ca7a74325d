"""Naive PAMR that materializes the neighbour dimension: the baseline for ``bench_pamr.py``.

Pixel-Adaptive Mask Refinement, Araslanov & Roth, "Single-stage Semantic Segmentation from Image
Labels", CVPR 2020. This is the straightforward formulation of the paper (the one its authors use):
every neighbour of every pixel is gathered with a dilated one-hot convolution, giving tensors of shape
(B, K, 8 * len(dilations), H, W) for the image and (B, C, 8 * len(dilations), H, W) for the masks at
every iteration. It follows the authors' ``models/mods/pamr.py`` (visinf/1-stage-wseg) operation for
operation: one-hot 3x3 kernels applied per dilation to replicate-padded inputs (``LocalAffinityAbs``,
``LocalAffinityCopy``, ``LocalStDev``: unbiased std over the 9 positions of every dilation), affinities
``-|I_p - I_q| / (1e-8 + 0.1 std)`` averaged over the image channels, softmax over the neighbours, masks
resized with ``align_corners=True``. It is the baseline of ``bench_pamr.py``, not part of the package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Offsets (row, col) of the 3x3 grid, in units of the dilation, row-major.
_GRID = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]
_NEIGHBOURS = [o for o in _GRID if o != (0, 0)]


def _one_hot_kernels(offsets: list[tuple[int, int]], centre: float = 0.0) -> torch.Tensor:
    """Conv kernels (len(offsets), 1, 3, 3) picking one grid cell each, optionally minus the centre."""
    weight = torch.zeros(len(offsets), 1, 3, 3)
    for k, (i, j) in enumerate(offsets):
        weight[k, 0, 1, 1] += centre
        weight[k, 0, i + 1, j + 1] += 1.0
    return weight


def _gather(x: torch.Tensor, kernel: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """Apply the one-hot kernels at every dilation: (B, K, H, W) -> (B, K, P * len(dilations), H, W)."""
    b, k, h, w = x.shape
    flat = x.reshape(b * k, 1, h, w)
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    outs = [F.conv2d(F.pad(flat, [d] * 4, mode="replicate"), kernel, dilation=d) for d in dilations]
    return torch.cat(outs, 1).view(b, k, -1, h, w)


class ReferencePAMR(nn.Module):
    """Conv-based PAMR with the neighbour dimension materialized (memory-hungry, for comparison).

    Args:
        num_iter: number of propagation steps.
        dilations: neighbourhood dilations.
    """

    def __init__(self, num_iter: int = 10, dilations: tuple[int, ...] = (1, 2, 4, 8, 12, 24)) -> None:
        super().__init__()
        self.num_iter = num_iter
        self.dilations = tuple(dilations)
        self.register_buffer("k_diff", -_one_hot_kernels(_NEIGHBOURS, centre=-1.0), persistent=False)
        self.register_buffer("k_copy", _one_hot_kernels(_NEIGHBOURS), persistent=False)
        self.register_buffer("k_std", _one_hot_kernels(_GRID), persistent=False)

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Refine ``masks`` (B, C, h, w) with the affinities of ``image`` (B, 3, H, W) -> (B, C, H, W)."""
        masks = F.interpolate(masks, size=image.shape[-2:], mode="bilinear", align_corners=True)
        std = _gather(image, self.k_std, self.dilations).std(2, keepdim=True)  # (B, K, 1, H, W)
        diff = _gather(image, self.k_diff, self.dilations).abs()  # |I_p - I_q|: (B, K, P, H, W)
        aff = (-diff / (1e-8 + 0.1 * std)).mean(1, keepdim=True)
        aff = F.softmax(aff, 2)  # (B, 1, P, H, W)
        for _ in range(self.num_iter):
            neighbours = _gather(masks, self.k_copy, self.dilations)  # (B, C, P, H, W)
            masks = (neighbours * aff).sum(2)
        return masks
