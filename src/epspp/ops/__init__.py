"""Operators: PAMR refinement, multi-scale CAM inference and pseudo-mask assembly."""

from epspp.ops.cam import maps_to_mask, multiscale_maps, normalize_maps, object_maps, with_background
from epspp.ops.pamr import PAMR

__all__ = ["PAMR", "maps_to_mask", "multiscale_maps", "normalize_maps", "object_maps", "with_background"]
