"""Losses: classification, EPS and EPS++ (IRD) saliency losses (stage 1), segmentation loss (stage 3).

- EPS: Lee, Kim, Lee, Lee, Shim, "Railroading Weakly Supervised Semantic Segmentation with Saliency
  Maps as Pseudo-pixel Supervision" (CVPR 2021) -- ``eps_saliency_loss`` reproduces ``get_eps_loss`` of
  the authors' code (halbielee/EPS, ``eps.py``) value for value.
- EPS++: Lee, Lee, Lee, Shim, "Saliency as Pseudo-pixel Supervision for Weakly and Semi-supervised
  Semantic Segmentation" (TPAMI 2023) -- ``ird_saliency_loss``, the saliency loss with Inconsistent
  Region Drop.

Channel convention (as in the EPS code, where the classifier loss uses ``pred[:, :-1]`` and the
saliency loss the channel ``num_classes``): ``cam_logits`` has C + 1 channels, the C object classes
first (0..C-1) and the background channel LAST (index C). ``labels`` (B, C) is multi-hot over the objects.

Every function computes in float32 when given half/bfloat16 tensors (float64 stays float64) and
returns a scalar of that compute dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from epspp.constants import HALO, IGNORE_INDEX, INJECTED

__all__ = [
    "IRD_FLOOR",
    "IRD_FLOOR_FRACTION",
    "IRD_THRESHOLD_MAPS",
    "classification_loss",
    "eps_saliency_loss",
    "ird_saliency_loss",
    "ird_telemetry",
    "ird_threshold_map",
    "segmentation_loss",
]

#: the readings of the map that B() thresholds in IRD's ``N = B(M_r) XOR B(M_s)`` (docs/architecture.md,
#: "How we read IRD's B()"): ``normalized`` (the default), ``softmax`` and ``floored``
IRD_THRESHOLD_MAPS = ("normalized", "softmax", "floored")
#: the floored reading's defaults, 1-stage-wseg's object-class values (visinf/1-stage-wseg at 131e7de,
#: models/stage_net.py line 28, ``pseudo_gtmask(mask, cutoff_top=0.6, cutoff_low=0.2)``)
IRD_FLOOR_FRACTION = 0.6
IRD_FLOOR = 0.2


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check(cam_logits: torch.Tensor, saliency: torch.Tensor, labels: torch.Tensor) -> int:
    """Validate shapes; return C, the number of object classes."""
    if cam_logits.dim() != 4 or saliency.dim() != 4 or saliency.shape[1] != 1 or labels.dim() != 2:
        raise ValueError(
            "expected cam_logits (B, C+1, h, w), saliency (B, 1, H, W), labels (B, C); got "
            f"{tuple(cam_logits.shape)}, {tuple(saliency.shape)}, {tuple(labels.shape)}"
        )
    b, c1 = cam_logits.shape[:2]
    if saliency.shape[0] != b or labels.shape != (b, c1 - 1):
        raise ValueError(
            f"labels must be (B, C) = ({b}, {c1 - 1}) and saliency (B, 1, H, W) for cam_logits "
            f"{tuple(cam_logits.shape)}; got {tuple(labels.shape)}, {tuple(saliency.shape)}"
        )
    return c1 - 1


def _resize_saliency(saliency: torch.Tensor, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Saliency (B, 1, H, W) to ``size`` with nearest-neighbour interpolation (as the EPS code), detached."""
    saliency = saliency.detach().to(dtype)
    if tuple(saliency.shape[-2:]) != tuple(size):
        saliency = F.interpolate(saliency, size=size, mode="nearest")
    return saliency


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label soft margin loss (sigmoid BCE averaged over classes and batch).

    Args:
        logits: class logits (B, C), the object channels only.
        labels: multi-hot labels (B, C).

    Returns:
        Scalar loss, equal to ``F.multilabel_soft_margin_loss(logits, labels)``.
    """
    dtype = _compute_dtype(logits)
    return F.multilabel_soft_margin_loss(logits.to(dtype), labels.to(dtype))


def eps_saliency_loss(
    cam_logits: torch.Tensor,
    saliency: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.5,
    lam: float = 0.5,
    overlap_test: bool = True,
) -> torch.Tensor:
    """EPS saliency loss (CVPR 2021), as ``get_eps_loss`` in the authors' code.

    ``M = softmax(cam_logits)``; ``M_s`` = saliency resized to (h, w), nearest. For every object class
    the overlap ratio ``sum_p round(M_i) round(M_s) / sum_p (round(M_i) + 1e-4)`` (1e-4 added at every
    pixel; ``M_i`` detached; ``torch.round`` rounds 0.5 down to 0) is computed. A labelled class with
    ratio > ``tau`` is foreground; a labelled class with ratio <= ``tau`` joins the background together
    with the background channel (index C). Unlabelled classes are in neither set: their maps are left
    out of both sums, exactly as in the reference. ``M_fg`` / ``M_bg`` are the sums of the foreground /
    background maps, the estimated saliency is ``lam * M_fg + (1 - lam) * (1 - M_bg)`` and the loss is
    its mean squared error to ``M_s`` over all pixels and images. Gradients reach ``cam_logits``
    through ``M_fg`` and ``M_bg`` only.

    Args:
        cam_logits: localization logits (B, C+1, h, w), background last.
        saliency: saliency maps (B, 1, H, W) in [0, 1].
        labels: multi-hot image labels (B, C); a class is labelled where the value is non-zero.
        tau: overlap threshold for a class to count as foreground (EPS VOC scripts use 0.4).
        lam: weight of the foreground map in the estimated saliency.
        overlap_test: ``False`` counts every labelled class as foreground, whatever its overlap (the
            warm-up of ``LocalizationModule(eps_warmup_steps=...)``); ``True`` is the reference.

    Returns:
        Scalar loss.
    """
    c = _check(cam_logits, saliency, labels)
    dtype = _compute_dtype(cam_logits, saliency)
    b, _, h, w = cam_logits.shape
    sal = _resize_saliency(saliency, (h, w), dtype)
    maps = F.softmax(cam_logits.to(dtype), dim=1)

    labelled = labels != 0
    valid = torch.ones_like(labelled)  # (B, C)
    if overlap_test:
        obj = torch.round(maps[:, :c].detach())
        inter = (obj * torch.round(sal)).reshape(b, c, -1).sum(-1)
        area = (obj + 1e-4).reshape(b, c, -1).sum(-1)
        valid = inter / area > tau

    no_bg = labelled.new_zeros(b, 1)
    fg_sel = torch.cat([labelled & valid, no_bg], 1)[..., None, None]  # (B, C+1, 1, 1)
    bg_sel = torch.cat([labelled & ~valid, ~no_bg], 1)[..., None, None]
    fg = torch.where(fg_sel, maps, maps.new_zeros(())).sum(1, keepdim=True)
    bg = torch.where(bg_sel, maps, maps.new_zeros(())).sum(1, keepdim=True)
    estimate = fg * lam + (1 - bg) * (1 - lam)
    return F.mse_loss(estimate, sal)


def ird_threshold_map(
    refined: torch.Tensor,
    labels: torch.Tensor,
    threshold_maps: str = "normalized",
    floor_fraction: float = IRD_FLOOR_FRACTION,
    floor: float = IRD_FLOOR,
) -> torch.Tensor:
    """The map that B() thresholds on the refined side of IRD's ``N = B(M_r) XOR B(M_s)``, (B, 1, h, w).

    - ``normalized`` (the default): each labelled class's refined map ``M_r_i`` divided by its per-image
      spatial maximum (a map whose maximum is 0 stays 0), then the maximum over the labelled classes: a CAM
      localization map normalized as WSSS thresholds it (CAM, PSA, EPS's pseudo-masks). Every labelled map
      peaks at 1, so the strong half of each object is above 0.5 from the first step of a new head.
    - ``softmax``: ``sum_i y_i M_r_i`` of the refined softmax maps themselves; a new head's softmax over C+1
      channels starts below 0.5 on every pixel, so B() is 0 on every object at first.
    - ``floored``: relative with an absolute floor, as 1-stage-wseg thresholds its PAMR-refined softmax maps into
      pseudo ground truth (visinf/1-stage-wseg at 131e7de, models/stage_net.py ``pseudo_gtmask``, lines 28-43:
      each class's per-image maximum times ``cutoff_top`` = 0.6 (line 36), raised to ``cutoff_low`` = 0.2
      (lines 40-41), then ``mask > mask_max``, strict (line 43)): 1 where some labelled class's refined map
      exceeds both ``floor_fraction`` x its per-image maximum and ``floor``, else 0. B() reads the objects only,
      so the background's own factor there (0.7, line 35) and the removal of pixels that pass for two classes
      (lines 46-47, pseudo ground truth of one class per pixel) have no counterpart here.

    An image without labels gives 0 everywhere under every reading.

    Args:
        refined: refined softmax maps (B, C+1, h, w) or their C object channels (B, C, h, w).
        labels: multi-hot image labels (B, C).
        threshold_maps: ``normalized``, ``softmax`` or ``floored``.
        floor_fraction: ``floored`` only: the fraction of each class's per-image maximum to exceed.
        floor: ``floored`` only: the absolute floor to exceed.
    """
    if threshold_maps not in IRD_THRESHOLD_MAPS:
        raise ValueError(f"threshold_maps must be one of {', '.join(IRD_THRESHOLD_MAPS)}, got {threshold_maps!r}")
    c = labels.shape[1]
    dtype = _compute_dtype(refined)
    objects = refined.detach()[:, :c].to(dtype)
    y = labels.detach().to(dtype)[..., None, None]  # (B, C, 1, 1)
    if threshold_maps == "softmax":
        return (objects * y).sum(1, keepdim=True)
    peak = objects.amax(dim=(2, 3), keepdim=True)
    if threshold_maps == "floored":
        cutoff = (peak * floor_fraction).clamp_min(floor)  # 1-stage-wseg: mask_max * cutoff_top, max cutoff_low
        passes = (objects > cutoff) & (y != 0)
        return passes.any(1, keepdim=True).to(dtype)
    normalized = torch.where(peak > 0, objects / peak.clamp_min(torch.finfo(dtype).tiny), 0.0)
    return torch.where(y != 0, normalized, 0.0).amax(1, keepdim=True)


def ird_saliency_loss(
    cam_logits: torch.Tensor,
    saliency: torch.Tensor,
    labels: torch.Tensor,
    refined: torch.Tensor,
    return_inconsistent: bool = False,
    drop: bool = True,
    threshold_maps: str = "normalized",
    floor_fraction: float = IRD_FLOOR_FRACTION,
    floor: float = IRD_FLOOR,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """EPS++ saliency loss with Inconsistent Region Drop (TPAMI 2023).

    ``M = softmax(cam_logits)``, ``M_s`` = saliency resized to (h, w) (nearest) and
    ``M_fg = sum_i y_i M_i`` over the C object channels. With ``B(x) = x > 0.5`` the inconsistent region is
    ``N = B(M_r) XOR B(M_s)``, where ``M_r`` is the refined map that ``ird_threshold_map`` gives for
    ``threshold_maps`` (``normalized``: the labelled classes' refined maps each divided by its maximum, max
    over the classes; ``softmax``: their sum; ``floored``: 1 where one exceeds both ``floor_fraction`` x its
    maximum and ``floor``), and per image

        L = sum_p (1 - N_p) (M_s_p - M_fg_p)^2 / sum_p (1 - N_p)     (0 where every pixel is inconsistent),

    averaged over the batch. The squared error uses the softmax ``M_fg`` under both readings. ``refined``
    and ``saliency`` are detached: gradients reach ``cam_logits`` only.

    Args:
        cam_logits: localization logits (B, C+1, h, w), background last.
        saliency: saliency maps (B, 1, H, W) in [0, 1].
        labels: multi-hot image labels (B, C), used as the weights y_i.
        refined: PAMR-refined softmax maps (B, C+1, h, w) (or only the C object channels); this
            function does not run PAMR.
        return_inconsistent: also return the inconsistent region N.
        drop: ``False`` keeps every pixel in the loss (N is still computed and returned); used for
            the warm-up of ``LocalizationModule(ird_warmup_steps=...)``.
        threshold_maps: which map B() thresholds on the refined side: ``normalized`` (default), ``softmax`` or
            ``floored`` (docs/architecture.md, "How we read IRD's B()").
        floor_fraction: ``floored`` only: the fraction of each class's per-image maximum to exceed.
        floor: ``floored`` only: the absolute floor to exceed.

    Returns:
        Scalar loss, or ``(loss, N)`` with N a bool tensor (B, 1, h, w) when ``return_inconsistent``.
    """
    c = _check(cam_logits, saliency, labels)
    b, _, h, w = cam_logits.shape
    if refined.dim() != 4 or refined.shape[0] != b or refined.shape[1] not in (c, c + 1):
        raise ValueError(f"refined must be (B, C+1, h, w) for cam_logits {tuple(cam_logits.shape)}")
    if tuple(refined.shape[-2:]) != (h, w):
        raise ValueError(f"refined maps are {tuple(refined.shape[-2:])}, cam_logits {(h, w)}")
    dtype = _compute_dtype(cam_logits, saliency, refined)
    sal = _resize_saliency(saliency, (h, w), dtype)
    y = labels.detach().to(dtype)[..., None, None]  # (B, C, 1, 1)
    maps = F.softmax(cam_logits.to(dtype), dim=1)

    fg = (maps[:, :c] * y).sum(1, keepdim=True)
    reference = ird_threshold_map(refined.to(dtype), labels, threshold_maps, floor_fraction, floor)
    inconsistent = (reference > 0.5) ^ (sal > 0.5)  # (B, 1, h, w)

    keep = (~inconsistent).to(dtype) if drop else torch.ones_like(sal)
    num = (keep * (sal - fg).square()).sum((1, 2, 3))
    den = keep.sum((1, 2, 3))
    loss = (num / den.clamp_min(1)).mean()  # num = 0 where den = 0
    if return_inconsistent:
        return loss, inconsistent
    return loss


def ird_telemetry(
    cam_logits: torch.Tensor,
    saliency: torch.Tensor,
    labels: torch.Tensor,
    inconsistent: torch.Tensor,
    threshold_map: torch.Tensor | None = None,
    saliency_error: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """How IRD treats the salient pixels of a batch, at the map resolution where its loss is computed.

    With ``S = M_s > 0.5`` (saliency resized to (h, w), nearest, as the loss) and N the inconsistent region
    returned by ``ird_saliency_loss``, over all pixels of the batch:

    - ``inconsistent``: mean of N over all pixels;
    - ``inconsistent_salient``: share of the pixels of S that are in N (1: every salient pixel dropped);
    - ``inconsistent_background``: share of the pixels outside S that are in N;
    - ``fg_salient``: mean of ``M_fg = sum_i y_i softmax(cam)_i`` over the pixels of S;
    - with ``threshold_map`` (``ird_threshold_map``'s (B, 1, h, w) map that B() thresholds):
      ``threshold_map_salient`` and ``threshold_map_background``, its mean over S and outside S;
    - with ``saliency_error`` ((B, H, W) uint8 flags of the injected saliency errors, the data's
      ``saliency_error``; E = the pixels with a flag of ``INJECTED``, resized to (h, w) like the saliency):
      ``error_precision`` = |N & E| / |N|, ``error_recall`` = |N & E| / |E| and ``correct_dropped`` =
      |N & C| / |C| with C = S & ~E & ~H the correct salient pixels (H: the ``HALO`` flag, salient background
      that is no injected error but no correct supervision either), each pooled over the batch (one ratio of the
      batch's counts) and NaN when its denominator is 0.

    A share over an empty set of pixels is 0 (the error ratios: NaN). Every value is a detached scalar in [0, 1].
    """
    c = _check(cam_logits, saliency, labels)
    h, w = cam_logits.shape[-2:]
    if inconsistent.shape != (cam_logits.shape[0], 1, h, w):
        raise ValueError(
            f"inconsistent must be (B, 1, h, w) for cam_logits {tuple(cam_logits.shape)}, "
            f"got {tuple(inconsistent.shape)}"
        )
    dtype = _compute_dtype(cam_logits, saliency)
    salient = _resize_saliency(saliency, (h, w), dtype) > 0.5
    dropped = inconsistent.bool()
    y = labels.detach().to(dtype)[..., None, None]
    fg = (F.softmax(cam_logits.detach().to(dtype), dim=1)[:, :c] * y).sum(1, keepdim=True)

    def share(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return (values.to(dtype) * where).sum() / where.sum().clamp_min(1)

    values = {
        "inconsistent": dropped.to(dtype).mean(),
        "inconsistent_salient": share(dropped, salient),
        "inconsistent_background": share(dropped, ~salient),
        "fg_salient": share(fg, salient),
    }
    if threshold_map is not None:
        if threshold_map.shape != inconsistent.shape:
            raise ValueError(
                f"threshold_map must be (B, 1, h, w) = {tuple(inconsistent.shape)}, got {tuple(threshold_map.shape)}"
            )
        reference = threshold_map.detach().to(dtype)
        values |= {
            "threshold_map_salient": share(reference, salient),
            "threshold_map_background": share(reference, ~salient),
        }
    if saliency_error is not None:
        values |= _error_ratios(dropped, salient, saliency_error, (h, w), dtype)
    return values


def _error_ratios(
    dropped: torch.Tensor,
    salient: torch.Tensor,
    saliency_error: torch.Tensor,
    size: tuple[int, int],
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """``ird_telemetry``'s ``error_precision``, ``error_recall`` and ``correct_dropped`` (NaN over no pixel)."""
    if saliency_error.dim() != 3 or saliency_error.shape[0] != dropped.shape[0]:
        raise ValueError(
            f"saliency_error must be (B, H, W) for B = {dropped.shape[0]}, got {tuple(saliency_error.shape)}"
        )
    # the flags (0..15, exact in any float dtype) on the map grid once, nearest as the saliency
    flags = _resize_saliency(saliency_error[:, None], size, dtype).to(torch.int64)
    errors, halo = (flags & INJECTED) != 0, (flags & HALO) != 0

    def ratio(part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
        count = whole.sum().to(dtype)
        return torch.where(count > 0, (part & whole).sum().to(dtype) / count.clamp_min(1), torch.nan)

    return {
        "error_precision": ratio(errors, dropped),
        "error_recall": ratio(dropped, errors),
        "correct_dropped": ratio(dropped, salient & ~errors & ~halo),
    }


def segmentation_loss(
    logits: torch.Tensor, mask: torch.Tensor, is_labeled: torch.Tensor, pseudo_weight: float = 1.0
) -> torch.Tensor:
    """Cross-entropy of stage 3: one weighted mean over every valid pixel of the batch.

    ``sum_p w_p CE_p / sum_p w_p`` with ``w_p`` = 1 on images with ground truth, ``pseudo_weight`` on
    pseudo-labelled images and 0 where the mask is 255; ``pseudo_weight = 1`` is exactly
    ``F.cross_entropy(logits, mask, ignore_index=255)``, so WSSS and SSSS batches are scaled alike.

    Args:
        logits: (B, K, H, W) class logits (K = C + 1).
        mask: (B, H, W) int64 class ids, 255 = ignore.
        is_labeled: (B,) bool/0-1: the image's mask is ground truth (not a pseudo-mask).
        pseudo_weight: weight of the pixels of pseudo-labelled images.

    Returns:
        Scalar loss (0, still attached to ``logits``, when no pixel is valid or every weight is 0).
    """
    dtype = _compute_dtype(logits)
    pixel = F.cross_entropy(logits.to(dtype), mask, ignore_index=IGNORE_INDEX, reduction="none")
    image_weight = torch.where(is_labeled.bool(), 1.0, float(pseudo_weight)).to(device=pixel.device, dtype=dtype)
    weight = (mask != IGNORE_INDEX).to(dtype) * image_weight[:, None, None]
    return (weight * pixel).sum() / weight.sum().clamp_min(1e-12)  # no valid pixel: 0 / 1e-12 = 0
