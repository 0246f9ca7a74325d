"""Pixel-Adaptive Mask Refinement (PAMR).

Araslanov & Roth, "Single-stage Semantic Segmentation from Image Labels", CVPR 2020. EPS++ (Lee et al.,
TPAMI 2023) uses it to refine the localization maps before the Inconsistent Region Drop and, optionally,
the pseudo-masks.

For every pixel p the affinity to each of its 8 neighbours q at every dilation d (replicate padding) is

    k(p, q) = mean over image channels of  -|I_p - I_q| / (1e-8 + 0.1 * sigma_p),

where sigma_p is the per-channel unbiased standard deviation of the image over the 9 * len(dilations)
positions {p and its 8 neighbours} at every dilation (p counted once per dilation). The affinities are
normalized with a softmax over the 8 * len(dilations) neighbours, and each iteration replaces every mask
value by the affinity-weighted sum of its neighbours' values.

The usual implementation gathers the neighbours with dilated one-hot convolutions and so materializes a
(B, C, 8 * len(dilations), H, W) tensor at every iteration. This one keeps only the affinities
(B, 8 * len(dilations), H, W), computed once, and accumulates the weighted neighbours in place from
slices of one replicate-padded copy of the masks (two such buffers, used in turn), so the iterations
allocate nothing. When autograd has to track the masks or the image, a functional variant of the same
loop is used instead.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PAMR"]

# Neighbour offsets of the 3x3 grid in units of the dilation (row, col), row-major, centre excluded.
_NEIGHBOURS = tuple((i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0))
# Elements per in-place accumulation on a single-threaded CPU (row blocks of the masks): stays in cache.
_CPU_BLOCK = 1 << 18


def _offsets(dilations: tuple[int, ...]) -> list[tuple[int, int]]:
    """(dy, dx) of the 8 neighbours at every dilation, dilation-major."""
    return [(i * d, j * d) for d in dilations for i, j in _NEIGHBOURS]


def _window(padded: torch.Tensor, pad: int, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """View of ``padded`` (..., h + 2 pad, w + 2 pad) shifted by (dy, dx): value at p is x[p + (dy, dx)]."""
    return padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def _fill_border(buf: torch.Tensor, pad: int, h: int, w: int) -> None:
    """Replicate the interior (..., pad:pad+h, pad:pad+w) of ``buf`` into its border, in place."""
    if pad == 0:
        return
    rows = slice(pad, pad + h)
    buf[..., rows, :pad] = buf[..., rows, pad : pad + 1]
    buf[..., rows, pad + w :] = buf[..., rows, pad + w - 1 : pad + w]
    buf[..., :pad, :] = buf[..., pad : pad + 1, :]
    buf[..., pad + h :, :] = buf[..., pad + h - 1 : pad + h, :]


class PAMR(nn.Module):
    """Pixel-Adaptive Mask Refinement (Araslanov & Roth, CVPR 2020), memory-lean.

    Args:
        num_iter: number of propagation steps.
        dilations: neighbourhood dilations; 8 neighbours are used at each.
    """

    def __init__(self, num_iter: int = 10, dilations: tuple[int, ...] = (1, 2, 4, 8, 12, 24)) -> None:
        super().__init__()
        if num_iter < 0:
            raise ValueError(f"num_iter must be >= 0, got {num_iter}")
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be positive integers, got {dilations}")
        self.num_iter = int(num_iter)
        self.dilations = tuple(int(d) for d in dilations)

    def extra_repr(self) -> str:
        """The iterations and dilations, in the module's repr."""
        return f"num_iter={self.num_iter}, dilations={self.dilations}"

    def affinity(self, image: torch.Tensor) -> torch.Tensor:
        """Softmax-normalized neighbour affinities (B, 8 * len(dilations), H, W) of ``image`` (B, K, H, W)."""
        b, _, h, w = image.shape
        pad = max(self.dilations)
        offsets = _offsets(self.dilations)
        n_dil = len(self.dilations)
        padded = F.pad(image, [pad] * 4, mode="replicate")

        # Two-pass (numerically stable) unbiased std over {p, neighbours} at every dilation.
        n = 9 * n_dil
        total = image * n_dil
        for dy, dx in offsets:
            total = total + _window(padded, pad, dy, dx, h, w)
        mean = total / n
        sq = (image - mean).square() * n_dil
        for dy, dx in offsets:
            sq = sq + (_window(padded, pad, dy, dx, h, w) - mean).square()
        denom = 1e-8 + 0.1 * (sq / (n - 1)).sqrt()
        del total, sq

        if torch.is_grad_enabled() and image.requires_grad:
            logits = torch.stack(
                [(-(image - _window(padded, pad, dy, dx, h, w)).abs() / denom).mean(1) for dy, dx in offsets],
                1,
            )
            return F.softmax(logits, 1)
        logits = image.new_empty(b, len(offsets), h, w)
        for k, (dy, dx) in enumerate(offsets):
            logits[:, k] = (-(image - _window(padded, pad, dy, dx, h, w)).abs() / denom).mean(1)
        # In-place softmax over the neighbours (no autograd here).
        logits.sub_(logits.amax(1, keepdim=True)).exp_()
        return logits.div_(logits.sum(1, keepdim=True))

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Refine ``masks`` (B, C, h, w) with the affinities of ``image`` (B, K, H, W).

        Returns:
            Refined masks (B, C, H, W) in the dtype of ``masks``; computed in float32 (float64 when an
            input is float64).
        """
        if image.dim() != 4 or masks.dim() != 4 or image.shape[0] != masks.shape[0]:
            raise ValueError(f"expected image (B, K, H, W) and masks (B, C, h, w), got {image.shape}, {masks.shape}")
        out_dtype = masks.dtype
        dtype = torch.float64 if torch.float64 in (image.dtype, masks.dtype) else torch.float32
        image = image.to(dtype)
        masks = masks.to(dtype)
        h, w = image.shape[-2:]
        if masks.shape[-2:] != (h, w):
            masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=True)
        if self.num_iter == 0:
            return masks.to(out_dtype)

        aff = self.affinity(image)
        if torch.is_grad_enabled() and (masks.requires_grad or aff.requires_grad):
            return self._propagate_autograd(masks, aff).to(out_dtype)
        pad = max(self.dilations)
        src = masks.new_empty(*masks.shape[:2], h + 2 * pad, w + 2 * pad)
        src[..., pad : pad + h, pad : pad + w] = masks
        del masks  # the padded copy replaces it
        return self._propagate_inplace(src, aff).to(out_dtype)

    def _propagate_autograd(self, masks: torch.Tensor, aff: torch.Tensor) -> torch.Tensor:
        """Propagation with fresh tensors at every step, so that autograd can track it."""
        h, w = masks.shape[-2:]
        pad = max(self.dilations)
        offsets = _offsets(self.dilations)
        for _ in range(self.num_iter):
            padded = F.pad(masks, [pad] * 4, mode="replicate")
            out = _window(padded, pad, *offsets[0], h, w) * aff[:, 0:1]
            for k in range(1, len(offsets)):
                out = torch.addcmul(out, _window(padded, pad, *offsets[k], h, w), aff[:, k : k + 1])
            masks = out
        return masks

    def _propagate_inplace(self, src: torch.Tensor, aff: torch.Tensor) -> torch.Tensor:
        """Propagation accumulating in place into two replicate-padded buffers used in turn.

        Args:
            src: the masks (B, C, H + 2 pad, W + 2 pad) in the interior of a buffer padded by
                ``pad = max(dilations)``; the border is filled here and the buffer is overwritten.
            aff: affinities (B, P, H, W).

        Each neighbour is one kernel over the whole tensor, except on a single-threaded CPU, where the
        rows are processed in blocks of about ``_CPU_BLOCK`` elements so that the accumulator stays in
        cache across the neighbours. (With several threads the many small parallel kernels of the
        blocked loop are slow as soon as the cores are shared with other processes.)
        """
        b, c = src.shape[:2]
        h, w = aff.shape[-2:]
        pad = max(self.dilations)
        offsets = _offsets(self.dilations)
        blocked = src.device.type == "cpu" and torch.get_num_threads() == 1
        rows = max(1, _CPU_BLOCK // (b * c * w)) if blocked else h
        _fill_border(src, pad, h, w)
        dst = torch.empty_like(src) if self.num_iter > 1 else None
        result = None
        for it in range(self.num_iter):
            if it == self.num_iter - 1:  # the last step writes an unpadded tensor
                dst = None
                result = src.new_empty(b, c, h, w)
            for r0 in range(0, h, rows):
                r1 = min(h, r0 + rows)
                if result is None:
                    out = cast(torch.Tensor, dst)[..., pad + r0 : pad + r1, pad : pad + w]  # set unless result is
                else:
                    out = result[..., r0:r1, :]
                for k, (dy, dx) in enumerate(offsets):
                    win = src[..., pad + r0 + dy : pad + r1 + dy, pad + dx : pad + dx + w]
                    if k == 0:
                        torch.mul(win, aff[:, 0:1, r0:r1], out=out)
                    else:
                        out.addcmul_(win, aff[:, k : k + 1, r0:r1])
            if result is None:
                _fill_border(cast(torch.Tensor, dst), pad, h, w)
                src, dst = cast(torch.Tensor, dst), src
        return cast(torch.Tensor, result)  # num_iter >= 1: the last step sets it
