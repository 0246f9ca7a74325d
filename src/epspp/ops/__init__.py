"""Operators: PAMR refinement, multi-scale CAM inference and pseudo-mask assembly."""

from epspp.ops.cam import (
    bicubic_resize,
    bilinear_resize,
    labelled_argmax,
    maps_to_mask,
    multiscale_maps,
    normalize_maps,
    object_maps,
    pil_bicubic_resize,
    with_background,
)
from epspp.ops.pamr import PAMR

__all__ = [
    "PAMR",
    "bicubic_resize",
    "bilinear_resize",
    "labelled_argmax",
    "maps_to_mask",
    "multiscale_maps",
    "normalize_maps",
    "object_maps",
    "pil_bicubic_resize",
    "with_background",
]
