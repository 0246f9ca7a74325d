"""Where the synthetic generator put its context and its saliency errors (``epspp.data.synthetic`` writes them).

``ROOT/SegmentationContext/<id>.png``: at each context pixel (rails, water, the hard difficulty's mat) the id of
the class it belongs to (rails: train), 0 elsewhere; context pixels are background in the ground truth.
``<saliency folder>/errors/<id>.png``: the bits of the saliency errors injected at each pixel, ``MISSING_CLASS``
(object pixels removed from the map), ``MISSING_PART`` (object pixels cut), ``FALSE_COVERAGE`` (background made
salient), ``HALO`` (background above 0.5 only because of the hard difficulty's halo); ``INJECTED``: the first three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from epspp.constants import ERRORS_DIR, FALSE_COVERAGE, HALO, INJECTED, MISSING_CLASS, MISSING_PART
from epspp.errors import DatasetError, reading

CONTEXT_DIR = "SegmentationContext"
__all__ = [
    "CONTEXT_DIR",
    "ERRORS_DIR",
    "FALSE_COVERAGE",
    "HALO",
    "INJECTED",
    "MISSING_CLASS",
    "MISSING_PART",
    "read_context",
    "read_saliency_errors",
]


def _read_png(path: Path, what: str, advice: str) -> np.ndarray:
    """A one-band 8-bit PNG (grey or palette) as (H, W) uint8; one-line errors naming ``path``."""
    if not path.is_file():
        raise DatasetError(f"{what} {path} not found: {advice}")
    with reading(path, what, advice), Image.open(path) as image:
        if image.mode not in ("L", "P"):
            raise DatasetError(f"{what} {path} has mode {image.mode}, expected an 8-bit grey or palette PNG: {advice}")
        return np.asarray(image, dtype=np.uint8)


def read_context(root: str | Path, image_id: str) -> np.ndarray:
    """``ROOT/SegmentationContext/<id>.png``: (H, W) uint8, the owner class id of each context pixel, else 0."""
    path = Path(root) / CONTEXT_DIR / f"{image_id}.png"
    return _read_png(path, "context map", "regenerate the dataset with epspp prepare synthetic --overwrite")


def read_saliency_errors(saliency_dir: str | Path, image_id: str) -> np.ndarray:
    """``SALIENCY_DIR/errors/<id>.png``: (H, W) uint8 bit flags of the saliency errors injected at each pixel."""
    path = Path(saliency_dir) / ERRORS_DIR / f"{image_id}.png"
    return _read_png(path, "saliency error map", "regenerate the dataset or saliency variant that wrote the maps")
