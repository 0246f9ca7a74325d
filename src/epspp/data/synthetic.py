"""A synthetic dataset in the VOC layout that reproduces the problems EPS++ addresses.

Five object classes by default (disc, square, triangle, train, boat), up to 20 with ``num_classes``
(:data:`FAMILIES`: shape, texture and colour families that share colours, shapes and textures with
each other, so that no single cue names a class), each with jittered colour and texture, on a
cluttered background with neutral distractor blobs.
Co-occurring context: a train always stands on rails and a boat always floats on water; the
context is background (0) in the ground truth, so a plain CAM learns to fire on it. The simulated
saliency map is the blurred union of the objects with the paper's three error types injected at
configurable per-image rates: a missing class, a missing part, and false coverage (preferably the
context). Every image's errors are recorded in ``ROOT/synthetic.json``, and where they are in pixels in
``ROOT/saliency/errors/<id>.png`` (bit flags, :mod:`epspp.data.truth`); the context pixels and the class they
belong to in ``ROOT/SegmentationContext/<id>.png``.

``SyntheticConfig.difficulty`` ``"hard"`` makes the saliency more like a real detector's (the ``HARD_*``
constants): errors systematic by class, graded maps with halos, partial co-occurrence, three context classes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import numpy as np
from scipy import ndimage

from epspp import __version__
from epspp.config_checks import MAX_SIDE
from epspp.data.classes import SYNTHETIC_CLASSES, voc_palette, write_classes
from epspp.data.generated import write_generated_root
from epspp.data.io import write_grey_png, write_jpeg, write_mask_png
from epspp.data.truth import FALSE_COVERAGE, HALO, MISSING_CLASS, MISSING_PART

DISC, SQUARE, TRIANGLE, TRAIN, BOAT = 1, 2, 3, 4, 5
CONTEXT_CLASSES = (TRAIN, BOAT)  # anchored to their context: a train on rails, a boat on water
RED, GREEN, YELLOW, PURPLE, ORANGE = (205, 55, 50), (55, 160, 70), (230, 185, 40), (125, 65, 175), (185, 85, 35)
BLUE, CYAN, PINK, BROWN = (50, 90, 200), (40, 170, 180), (225, 110, 170), (120, 85, 50)
COLOURS = {DISC: RED, SQUARE: GREEN, TRIANGLE: YELLOW, TRAIN: PURPLE, BOAT: ORANGE}
PALETTE = voc_palette()
MAX_COVER = 0.35  # a new object may hide at most this fraction of an earlier object's visible pixels
MAX_CLASSES = 20  # object classes of the WSSS dataset (VOC's count)
CONTEXT_WITH_CLASS = 0.5  # pretraining corpus: a train on rails, a boat on water, in this share of their images
CONTEXT_WITHOUT_CLASS = 0.15  # pretraining corpus: rails (water) in this share of the images without a train (boat)
CONTEXT_NAMES = {TRAIN: "rails", BOAT: "water", DISC: "mat"}  # the mat: the hard difficulty's third context

# the hard difficulty (``SyntheticConfig.difficulty: hard``); the three ``*_rate`` errors are added on top of these
HARD_CONTEXT_CLASSES = (TRAIN, BOAT, DISC)  # classes with a context (background in the ground truth)
HARD_CONTEXT_SHOWN = 0.8  # a context class's context is in this share of its images (partial co-occurrence)
HARD_CONTEXT_ALONE = 0.1  # ... and in this share of the images without its class
HARD_CONTEXT_SALIENT = {TRAIN: 0.8, BOAT: 0.3, DISC: 0.5}  # the context near its object is salient in this share
HARD_PART_CLASS = TRIANGLE  # every object of this class misses a part of its saliency ...
HARD_PART_FRACTION = (0.25, 0.45)  # ... this fraction of it, cut from a random side
HARD_MISSING_CLASS = SQUARE  # this class is missing from the map in HARD_MISSING_RATE of its images
HARD_MISSING_RATE = 0.4
HARD_LEVELS = (0.55, 1.0)  # graded maps: the objects' saliency varies smoothly within this range over the image
HARD_HALO_PEAK = (0.7, 0.95)  # halo: a soft rim around the salient objects, peak x exp(-distance / width) ...
HARD_HALO_WIDTH = 0.08  # ... width in image sides; its background pixels above 0.5 carry the HALO bit


class Family(NamedTuple):
    """A free-standing object class: a shape, a texture and a base colour (``_free_object`` draws it)."""

    name: str
    shape: str
    texture: str
    colour: tuple[int, int, int]


# classes 6..20 of the WSSS dataset: each shares its shape, its texture or its colour with other classes
# (and with the first five), never all three; classes 21.. are the pretraining corpus's distractor families
FAMILIES: tuple[Family, ...] = (
    Family("ring", "ring", "plain", BLUE),
    Family("cross", "cross", "stripes", RED),
    Family("star", "star", "plain", YELLOW),
    Family("hexagon", "hexagon", "dots", PURPLE),
    Family("diamond", "diamond", "checker", ORANGE),
    Family("crescent", "crescent", "noise", CYAN),
    Family("bar", "bar", "dots", GREEN),
    Family("pentagon", "pentagon", "stripes", BLUE),
    Family("half_disc", "half_disc", "checker", RED),
    Family("striped_disc", "ellipse", "stripes", PURPLE),
    Family("checked_ring", "ring", "checker", YELLOW),
    Family("dotted_square", "rectangle", "dots", CYAN),
    Family("chevron", "chevron", "plain", ORANGE),
    Family("grid_triangle", "triangle", "grid", GREEN),
    Family("target", "ellipse", "rings", PINK),
    # distractor families: only in the pretraining corpus (ImageNet's classes beyond VOC's)
    Family("octagon", "octagon", "checker", BROWN),
    Family("arrow", "arrow", "stripes", PINK),
    Family("kite", "kite", "dots", RED),
    Family("hourglass", "hourglass", "plain", CYAN),
    Family("frame", "frame", "stripes", GREEN),
    Family("tee", "tee", "checker", BLUE),
    Family("grid_disc", "ellipse", "grid", YELLOW),
    Family("dotted_star", "star", "dots", ORANGE),
)
CLASS_NAMES: tuple[str, ...] = SYNTHETIC_CLASSES[1:] + tuple(f.name for f in FAMILIES)  # every class, by id - 1
NUM_FAMILIES = len(CLASS_NAMES)


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of the first ``num_classes`` classes, background first (5: ``SYNTHETIC_CLASSES``)."""
    return ("background",) + CLASS_NAMES[:num_classes]


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of :func:`generate_synthetic` (all recorded in ``synthetic.json``)."""

    num_train: int = 1000
    num_val: int = 200
    image_size: int = 64
    seed: int = 0
    missing_class_rate: float = 0.1
    missing_part_rate: float = 0.2
    false_coverage_rate: float = 0.2
    labeled_fraction: float = 0.1
    num_classes: int = 5
    difficulty: Literal["easy", "hard"] = "easy"

    def __post_init__(self) -> None:
        if self.difficulty not in ("easy", "hard"):
            raise ValueError(f"difficulty must be 'easy' or 'hard', got {self.difficulty!r}")
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(f"num_train and num_val must be >= 1, got {self.num_train}, {self.num_val}")
        if not 1 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be within 1..{MAX_CLASSES}, got {self.num_classes}")
        if not 32 <= self.image_size <= MAX_SIDE:
            raise ValueError(f"image_size must be in [32, {MAX_SIDE}], got {self.image_size}")
        for name in ("missing_class_rate", "missing_part_rate", "false_coverage_rate", "labeled_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")


@dataclass
class Sample:
    """One rendered image with its ground truth, saliency, context region and saliency errors."""

    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) uint8 class ids
    saliency: np.ndarray  # (S, S) uint8
    context: np.ndarray  # (S, S) bool: the context pixels (rails, water, ...; background in ``mask``)
    errors: dict
    context_owner: np.ndarray  # (S, S) uint8: at each context pixel the id of its class, else 0
    error_bits: np.ndarray  # (S, S) uint8: the saliency errors' bits (epspp.data.truth)


class _Grid(NamedTuple):
    yy: np.ndarray  # (S, S) pixel-centre row coordinates
    xx: np.ndarray  # (S, S) pixel-centre column coordinates
    size: int
    upsample: np.ndarray  # (S, 5) bilinear weights from a 5-point grid to S points


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> _Grid:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    yy.flags.writeable = xx.flags.writeable = False
    points = np.linspace(0, 4, size)
    upsample = np.maximum(0.0, 1.0 - np.abs(points[:, None] - np.arange(5)[None, :]))
    return _Grid(yy, xx, size, upsample.astype(np.float32))


# ---------------------------------------------------------------- shapes and textures
def _rotated(g: _Grid, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = g.yy - cy, g.xx - cx
    return dx * c + dy * s, -dx * s + dy * c


def _ellipse(g: _Grid, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    u, v = _rotated(g, cy, cx, angle)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _rectangle(g: _Grid, cy: float, cx: float, h: float, w: float, angle: float = 0.0) -> np.ndarray:
    u, v = _rotated(g, cy, cx, angle)
    return (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)


def _polygon(g: _Grid, points: list[tuple[float, float]]) -> np.ndarray:
    """Convex polygon from (y, x) vertices in either orientation."""
    pos, neg = np.ones(g.yy.shape, bool), np.ones(g.yy.shape, bool)
    for (y0, x0), (y1, x1) in zip(points, points[1:] + points[:1], strict=True):
        cross = (x1 - x0) * (g.yy - y0) - (y1 - y0) * (g.xx - x0)
        pos &= cross >= 0
        neg &= cross <= 0
    return pos | neg


def _stripes(g: _Grid, period: float, angle: float) -> np.ndarray:
    phase = 2 * np.pi * (g.xx * np.cos(angle) + g.yy * np.sin(angle)) / period
    return np.where(np.sin(phase) >= 0, 1.0, -1.0)


def _checker(g: _Grid, period: float, angle: float) -> np.ndarray:
    u, v = _rotated(g, 0.0, 0.0, angle)
    return ((np.floor(u / period) + np.floor(v / period)) % 2) * 2.0 - 1.0


def _dots(g: _Grid, period: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    u = np.mod(g.xx + rng.uniform(0, period), period) - period / 2
    v = np.mod(g.yy + rng.uniform(0, period), period) - period / 2
    return np.where(u**2 + v**2 <= radius**2, 1.0, -0.5)


def _noise(rng: np.random.Generator, g: _Grid, sigma: float = 0.8) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal((g.size, g.size)), sigma)
    return np.clip(field / (field.std() + 1e-6), -2.0, 2.0) / 2.0


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: float = 30.0) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _textured(colour: np.ndarray, texture: np.ndarray, amplitude: float) -> np.ndarray:
    return np.clip(np.asarray(colour)[None, None, :] * (1.0 + amplitude * texture[..., None]), 0, 255)


def _neutral(rng: np.random.Generator, low: float = 60.0, high: float = 200.0) -> np.ndarray:
    return np.clip(rng.uniform(low, high) + rng.uniform(-18, 18, 3), 0, 255)


# ---------------------------------------------------------------- shapes and textures of FAMILIES
# each shape: (g, cy, cx, d, angle) -> mask of an object about d pixels across, rotated by angle
def _local(cy: float, cx: float, angle: float, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(y, x) image points of (u, v) points in the object's frame (u along ``angle``; see ``_rotated``)."""
    c, s = np.cos(angle), np.sin(angle)
    return [(cy + u * s + v * c, cx + u * c - v * s) for u, v in points]


def _regular(g: _Grid, cy: float, cx: float, radius: float, sides: int, angle: float) -> np.ndarray:
    step = 2 * np.pi / sides
    return _polygon(
        g, [(cy + radius * np.sin(angle + k * step), cx + radius * np.cos(angle + k * step)) for k in range(sides)]
    )


def _offset_rectangle(
    g: _Grid, cy: float, cx: float, angle: float, u: float, v: float, length: float, width: float
) -> np.ndarray:
    """A rectangle ``length`` along u by ``width`` along v, centred at (u, v) of the object's frame."""
    ((y, x),) = _local(cy, cx, angle, [(u, v)])
    return _rectangle(g, y, x, width, length, angle)


def _local_polygon(g: _Grid, cy: float, cx: float, angle: float, points: list[tuple[float, float]]) -> np.ndarray:
    return _polygon(g, _local(cy, cx, angle, points))


SHAPES = {
    "ellipse": lambda g, cy, cx, d, a: _ellipse(g, cy, cx, d / 2, 0.4 * d, a),
    "rectangle": lambda g, cy, cx, d, a: _rectangle(g, cy, cx, 0.8 * d, 0.9 * d, a),
    "triangle": lambda g, cy, cx, d, a: _regular(g, cy, cx, 0.58 * d, 3, a),
    "ring": lambda g, cy, cx, d, a: _ellipse(g, cy, cx, d / 2, d / 2) & ~_ellipse(g, cy, cx, 0.26 * d, 0.26 * d),
    "cross": lambda g, cy, cx, d, a: _rectangle(g, cy, cx, 0.32 * d, d, a) | _rectangle(g, cy, cx, d, 0.32 * d, a),
    "star": lambda g, cy, cx, d, a: (
        _regular(g, cy, cx, 0.58 * d, 3, a) | _regular(g, cy, cx, 0.58 * d, 3, a + np.pi / 3)
    ),
    "hexagon": lambda g, cy, cx, d, a: _regular(g, cy, cx, 0.5 * d, 6, a),
    "pentagon": lambda g, cy, cx, d, a: _regular(g, cy, cx, 0.52 * d, 5, a),
    "octagon": lambda g, cy, cx, d, a: _regular(g, cy, cx, 0.5 * d, 8, a),
    "diamond": lambda g, cy, cx, d, a: _local_polygon(
        g, cy, cx, a, [(0.6 * d, 0), (0, 0.32 * d), (-0.6 * d, 0), (0, -0.32 * d)]
    ),
    "kite": lambda g, cy, cx, d, a: _local_polygon(
        g, cy, cx, a, [(0.62 * d, 0), (0, 0.34 * d), (-0.36 * d, 0), (0, -0.34 * d)]
    ),
    "crescent": lambda g, cy, cx, d, a: (
        _ellipse(g, cy, cx, d / 2, d / 2)
        & ~_ellipse(g, cy + 0.3 * d * np.sin(a), cx + 0.3 * d * np.cos(a), 0.42 * d, 0.42 * d)
    ),
    "half_disc": lambda g, cy, cx, d, a: _ellipse(g, cy, cx, 0.55 * d, 0.55 * d) & (_rotated(g, cy, cx, a)[1] >= 0),
    "bar": lambda g, cy, cx, d, a: _rectangle(g, cy, cx, 0.24 * d, 1.15 * d, a),
    "chevron": lambda g, cy, cx, d, a: (
        _local_polygon(g, cy, cx, a, [(0.5 * d, 0), (-0.5 * d, 0.5 * d), (-0.5 * d, -0.5 * d)])
        & ~_local_polygon(g, cy, cx, a, [(0.1 * d, 0), (-0.9 * d, 0.5 * d), (-0.9 * d, -0.5 * d)])
    ),
    "arrow": lambda g, cy, cx, d, a: (
        _offset_rectangle(g, cy, cx, a, -0.2 * d, 0, 0.65 * d, 0.22 * d)
        | _local_polygon(g, cy, cx, a, [(0.55 * d, 0), (0.1 * d, 0.36 * d), (0.1 * d, -0.36 * d)])
    ),
    "hourglass": lambda g, cy, cx, d, a: (
        _local_polygon(g, cy, cx, a, [(0, 0), (0.5 * d, -0.42 * d), (0.5 * d, 0.42 * d)])
        | _local_polygon(g, cy, cx, a, [(0, 0), (-0.5 * d, -0.42 * d), (-0.5 * d, 0.42 * d)])
    ),
    "frame": lambda g, cy, cx, d, a: (
        _rectangle(g, cy, cx, 0.9 * d, 0.9 * d, a) & ~_rectangle(g, cy, cx, 0.46 * d, 0.46 * d, a)
    ),
    "tee": lambda g, cy, cx, d, a: (
        _offset_rectangle(g, cy, cx, a, 0, -0.34 * d, 0.95 * d, 0.26 * d)
        | _offset_rectangle(g, cy, cx, a, 0, 0.12 * d, 0.26 * d, 0.7 * d)
    ),
}


def _grid_lines(g: _Grid, period: float, angle: float) -> np.ndarray:
    u, v = _rotated(g, 0.0, 0.0, angle)
    on_line = (np.mod(u, period) < 0.3 * period) | (np.mod(v, period) < 0.3 * period)
    return np.where(on_line, 1.0, -0.4)


def _rings(g: _Grid, cy: float, cx: float, period: float) -> np.ndarray:
    return np.where(np.sin(2 * np.pi * np.hypot(g.yy - cy, g.xx - cx) / period) >= 0, 1.0, -1.0)


# each texture: (rng, g, cy, cx, d, angle) -> (texture in [-1, 1], amplitude)
TEXTURES = {
    "plain": lambda r, g, cy, cx, d, a: (_noise(r, g), 0.06),
    "stripes": lambda r, g, cy, cx, d, a: (_stripes(g, r.uniform(0.08, 0.11) * g.size, a), 0.25),
    "checker": lambda r, g, cy, cx, d, a: (_checker(g, d / 4, a), 0.25),
    "dots": lambda r, g, cy, cx, d, a: (_dots(g, p := r.uniform(0.09, 0.12) * g.size, 0.28 * p, r), 0.35),
    "noise": lambda r, g, cy, cx, d, a: (_noise(r, g), 0.3),
    "grid": lambda r, g, cy, cx, d, a: (_grid_lines(g, r.uniform(0.1, 0.13) * g.size, a), 0.25),
    "rings": lambda r, g, cy, cx, d, a: (_rings(g, cy, cx, r.uniform(0.08, 0.1) * g.size), 0.3),
}


# ---------------------------------------------------------------- objects (each -> mask, colour layer)
def _free_box(rng: np.random.Generator, g: _Grid) -> tuple[float, float, float]:
    d = rng.uniform(0.22, 0.38) * g.size
    return rng.uniform(d / 2, g.size - d / 2), rng.uniform(d / 2, g.size - d / 2), d


def _disc(rng: np.random.Generator, g: _Grid) -> tuple[np.ndarray, np.ndarray]:
    cy, cx, d = _free_box(rng, g)
    mask = _ellipse(g, cy, cx, d / 2, d / 2 * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi))
    period = rng.uniform(0.09, 0.12) * g.size
    return mask, _textured(_jitter(rng, COLOURS[DISC]), _dots(g, period, period * 0.28, rng), 0.35)


def _square(rng: np.random.Generator, g: _Grid) -> tuple[np.ndarray, np.ndarray]:
    cy, cx, d = _free_box(rng, g)
    angle = 0.0 if rng.random() < 0.5 else rng.uniform(0, np.pi / 2)
    mask = _rectangle(g, cy, cx, 0.85 * d, 0.85 * d * rng.uniform(0.8, 1.25), angle)
    return mask, _textured(_jitter(rng, COLOURS[SQUARE]), _checker(g, d / 4, angle), 0.25)


def _triangle(rng: np.random.Generator, g: _Grid) -> tuple[np.ndarray, np.ndarray]:
    cy, cx, d = _free_box(rng, g)
    start = rng.uniform(0, 2 * np.pi)
    angles = start + 2 * np.pi * np.arange(3) / 3 + rng.uniform(-0.25, 0.25, 3)
    points = [(cy + 0.6 * d * np.sin(a), cx + 0.6 * d * np.cos(a)) for a in angles]
    stripes = _stripes(g, rng.uniform(0.08, 0.11) * g.size, rng.uniform(0, np.pi))
    return _polygon(g, points), _textured(_jitter(rng, COLOURS[TRIANGLE]), stripes, 0.25)


def _free_object(rng: np.random.Generator, g: _Grid, family: Family) -> tuple[np.ndarray, np.ndarray]:
    """An object of one of :data:`FAMILIES` at a random place, size and rotation."""
    cy, cx, d = _free_box(rng, g)
    mask = SHAPES[family.shape](g, cy, cx, d, rng.uniform(0, 2 * np.pi))
    texture, amplitude = TEXTURES[family.texture](rng, g, cy, cx, d, rng.uniform(0, np.pi))
    return mask, _textured(_jitter(rng, family.colour), texture, amplitude)


def _train(rng: np.random.Generator, g: _Grid, rail_y: float) -> tuple[np.ndarray, np.ndarray]:
    s = g.size
    length, height, wheel_r = rng.uniform(0.5, 0.72) * s, rng.uniform(0.15, 0.2) * s, max(1.5, 0.035 * s)
    x0 = rng.uniform(1, s - length - 1)
    bottom = rail_y - wheel_r
    top = bottom - height
    in_x = (g.xx >= x0) & (g.xx < x0 + length)
    body = in_x & (g.yy >= top) & (g.yy < bottom)
    cab_x = x0 if rng.random() < 0.5 else x0 + 0.75 * length
    cab = (g.xx >= cab_x) & (g.xx < cab_x + 0.25 * length) & (g.yy >= top - 0.35 * height) & (g.yy < bottom)
    phase = np.mod(g.xx - x0, 0.12 * s) / (0.12 * s)
    windows = (
        body
        & (g.yy >= top + 0.2 * height)
        & (g.yy < top + 0.55 * height)
        & (phase >= 0.35)
        & (phase < 0.8)
        & (g.xx > x0 + 0.04 * s)
        & (g.xx < x0 + length - 0.04 * s)
    )
    count = max(3, round(length / (0.13 * s)))
    wheels = np.zeros_like(body)
    for k in range(count):
        wheels |= _ellipse(g, rail_y - wheel_r, x0 + (k + 0.5) * length / count, wheel_r, wheel_r)
    layer = _textured(_jitter(rng, COLOURS[TRAIN]), _stripes(g, 0.08 * s, np.pi / 2), 0.12)
    layer = np.where(windows[..., None], _jitter(rng, (235, 225, 140), 15), layer)
    layer = np.where(wheels[..., None], np.array([35, 35, 40], np.float32), layer)
    return body | cab | wheels, layer


def _boat(rng: np.random.Generator, g: _Grid, water_y: float) -> tuple[np.ndarray, np.ndarray]:
    s = g.size
    width, hull_h = rng.uniform(0.34, 0.5) * s, rng.uniform(0.1, 0.14) * s
    cx = rng.uniform(width / 2 + 1, s - width / 2 - 1)
    deck, keel = water_y - 0.5 * hull_h, water_y + 0.5 * hull_h
    hull = _polygon(
        g, [(deck, cx - width / 2), (deck, cx + width / 2), (keel, cx + 0.32 * width), (keel, cx - 0.32 * width)]
    )
    mast_h, mast_x = rng.uniform(0.22, 0.32) * s, cx + rng.uniform(-0.1, 0.1) * width
    mast = _rectangle(g, deck - mast_h / 2, mast_x, mast_h, max(1.2, 0.03 * s))
    sail_x = mast_x + rng.choice([-1.0, 1.0]) * 0.4 * width
    sail = _polygon(g, [(deck - 0.95 * mast_h, mast_x), (deck - 1, mast_x), (deck - 1, sail_x)]) & ~mast
    layer = _textured(_jitter(rng, COLOURS[BOAT]), _noise(rng, g), 0.3)
    layer = np.where(sail[..., None], _jitter(rng, (235, 230, 215), 12), layer)
    layer = np.where(mast[..., None], np.array([80, 55, 35], np.float32), layer)
    return hull | mast | sail, layer


# ---------------------------------------------------------------- background and context
def _background(rng: np.random.Generator, g: _Grid) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    t = ((g.xx * np.cos(angle) + g.yy * np.sin(angle)) / g.size * 0.7 + 0.5)[..., None]
    image = _neutral(rng, 70, 190) * (1 - t) + _neutral(rng, 70, 190) * t
    low = (g.upsample @ rng.normal(0, 18, (3, 5, 5)) @ g.upsample.T).transpose(1, 2, 0)
    return np.clip(image + low, 0, 255).astype(np.float32)


def _distractor(rng: np.random.Generator, g: _Grid) -> tuple[np.ndarray, np.ndarray]:
    d = rng.uniform(0.12, 0.26) * g.size
    cy, cx = rng.uniform(0, g.size, 2)
    if rng.random() < 0.5:
        mask = _ellipse(g, cy, cx, d / 2, d / 2 * rng.uniform(0.5, 1.0), rng.uniform(0, np.pi))
    else:
        mask = _rectangle(g, cy, cx, d, d * rng.uniform(0.4, 1.0), rng.uniform(0, np.pi))
    return mask, _textured(_neutral(rng, 50, 210), _noise(rng, g), 0.2)


def _rails(rng: np.random.Generator, g: _Grid, rail_y: float) -> tuple[np.ndarray, np.ndarray]:
    s = g.size
    band = (g.yy >= rail_y - 0.03 * s) & (g.yy < rail_y + 0.1 * s)
    layer = _textured(_jitter(rng, (125, 110, 95), 15), _noise(rng, g), 0.3)
    period = 0.09 * s
    sleepers = (
        (np.mod(g.xx + rng.uniform(0, period), period) < 0.45 * period) & (g.yy >= rail_y) & (g.yy < rail_y + 0.085 * s)
    )
    rails = (np.abs(g.yy - rail_y - 0.5) < 0.6) | (np.abs(g.yy - rail_y - 0.065 * s) < 0.6)
    layer = np.where(sleepers[..., None], np.array([95, 65, 40], np.float32), layer)
    return band, np.where(rails[..., None], _jitter(rng, (180, 180, 190), 10), layer)


def _water(rng: np.random.Generator, g: _Grid, water_y: float) -> tuple[np.ndarray, np.ndarray]:
    s = g.size
    period, wobble = rng.uniform(0.08, 0.12) * s, rng.uniform(0.25, 0.4) * s
    wave = np.sin(2 * np.pi * (g.yy / period + 0.3 * np.sin(2 * np.pi * g.xx / wobble)) + rng.uniform(0, 7))
    depth = np.clip((g.yy - water_y) / max(s - water_y, 1.0), 0, 1)[..., None]
    layer = _textured(_jitter(rng, (40, 90, 170), 15), wave, 0.18) * (1 - 0.35 * depth)
    return g.yy >= water_y, np.where((wave > 0.9)[..., None], np.array([165, 195, 235], np.float32), layer)


# ---------------------------------------------------------------- composition and saliency
def _fits(mask: np.ndarray, instances: np.ndarray, count: int) -> bool:
    """A new object must be large enough and hide at most MAX_COVER of any earlier object."""
    if mask.sum() < 0.01 * mask.size:
        return False
    placed = instances >= 0
    visible = np.bincount(instances[placed], minlength=count)
    covered = np.bincount(instances[mask & placed], minlength=count)
    return bool(np.all(covered <= MAX_COVER * visible))


def _context_region(
    rng: np.random.Generator,
    g: _Grid,
    instances: np.ndarray,
    classes: list[int],
    context: dict[int, np.ndarray],
    owner: int,
) -> np.ndarray:
    """The background part of ``owner``'s context within a random margin of its object's columns."""
    cols = g.xx[instances == classes.index(owner)]
    margin = rng.uniform(0.1, 0.3) * g.size
    near = (g.xx >= cols.min() - margin) & (g.xx <= cols.max() + margin)
    return context[owner] & (instances < 0) & near


def _cut(rng: np.random.Generator, g: _Grid, visible: np.ndarray, fractions: tuple[float, float]) -> np.ndarray:
    """The pixels of ``visible`` on one side of a random line, a random fraction in ``fractions`` of them."""
    angle, fraction = rng.uniform(0, 2 * np.pi), rng.uniform(*fractions)
    projection = g.yy * np.sin(angle) + g.xx * np.cos(angle)
    return visible & (projection <= np.quantile(projection[visible], fraction))


def _systematic(
    rng: np.random.Generator,
    g: _Grid,
    salient: np.ndarray,
    bits: np.ndarray,
    instances: np.ndarray,
    classes: list[int],
    context: dict[int, np.ndarray],
) -> dict:
    """The hard difficulty's errors by class (``HARD_*``), applied to ``salient`` and marked in ``bits``."""
    record: dict = {}
    if HARD_MISSING_CLASS in classes and rng.random() < HARD_MISSING_RATE:
        gone = np.isin(instances, [i for i, c in enumerate(classes) if c == HARD_MISSING_CLASS])
        salient[gone] = 0
        bits[gone] |= MISSING_CLASS
        record["missing_class"] = CLASS_NAMES[HARD_MISSING_CLASS - 1]
    for index in (i for i, c in enumerate(classes) if c == HARD_PART_CLASS):
        visible = instances == index  # never empty: a new object hides at most MAX_COVER of an earlier one
        cut = _cut(rng, g, visible, HARD_PART_FRACTION)
        salient[cut] = 0
        bits[cut] |= MISSING_PART
        part = {"class": CLASS_NAMES[HARD_PART_CLASS - 1], "fraction": round(float(cut.sum() / visible.sum()), 3)}
        record.setdefault("missing_part", []).append(part)
    for owner in sorted(c for c in context if c in classes):
        if rng.random() < HARD_CONTEXT_SALIENT[owner]:
            region = _context_region(rng, g, instances, classes, context, owner)
            salient[region] = np.maximum(salient[region], rng.uniform(0.6, 0.9))
            bits[region] |= FALSE_COVERAGE
            record.setdefault("false_coverage", []).append(CONTEXT_NAMES[owner])
    return record


def _halo(rng: np.random.Generator, g: _Grid, salient: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """The hard difficulty's halo around the still salient objects: peak x exp(-distance / width), 0 inside them."""
    core = (instances >= 0) & (salient > 0)
    if not core.any():
        return np.zeros(salient.shape, np.float32)
    distance = ndimage.distance_transform_edt(~core)
    peak = rng.uniform(*HARD_HALO_PEAK)
    return np.where(core, 0.0, peak * np.exp(-distance / (HARD_HALO_WIDTH * g.size))).astype(np.float32)


def _saliency(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    g: _Grid,
    instances: np.ndarray,
    classes: list[int],
    context: dict[int, np.ndarray],
    distractors: list[np.ndarray],
) -> tuple[np.ndarray, dict, np.ndarray]:
    """Blurred union of the objects, with missing class, missing part and false coverage errors; the hard
    difficulty's maps are graded, carry its systematic errors first and a halo last. Returns the map, the record
    of its errors and their bits (:mod:`epspp.data.truth`)."""
    hard = cfg.difficulty == "hard"
    salient = np.zeros(instances.shape, np.float32)
    bits = np.zeros(instances.shape, np.uint8)
    errors: dict = {}
    if hard:  # one smooth field of levels over the image: each object's saliency varies within it
        levels = g.upsample @ rng.uniform(*HARD_LEVELS, (5, 5)) @ g.upsample.T
        salient[instances >= 0] = levels[instances >= 0]
        if systematic := _systematic(rng, g, salient, bits, instances, classes, context):
            errors["systematic"] = systematic
    else:
        for index in range(len(classes)):
            salient[instances == index] = rng.uniform(0.85, 1.0)
    present = sorted(set(classes))
    missing = None
    if rng.random() < cfg.missing_class_rate and present:
        missing = int(rng.choice(present))
        gone = np.isin(instances, [i for i, c in enumerate(classes) if c == missing])
        salient[gone] = 0
        bits[gone] |= MISSING_CLASS
        errors["missing_class"] = CLASS_NAMES[missing - 1]
    if rng.random() < cfg.missing_part_rate:
        candidates = [i for i, c in enumerate(classes) if c != missing]
        if candidates:
            index = int(rng.choice(candidates))
            visible = instances == index
            cut = _cut(rng, g, visible, (0.3, 0.6))
            salient[cut] = 0
            bits[cut] |= MISSING_PART
            errors["missing_part"] = {
                "class": CLASS_NAMES[classes[index] - 1],
                "fraction": round(float(cut.sum() / visible.sum()), 3),
            }
    if rng.random() < cfg.false_coverage_rate:
        background = instances < 0
        owners = sorted(c for c in context if c in classes)  # (easy: every context is with its class)
        if owners:
            owner = int(rng.choice(owners))
            region = _context_region(rng, g, instances, classes, context, owner)
            kind = CONTEXT_NAMES[owner]
        else:  # a visible distractor blob, else a salient patch of plain background
            regions = [d & background for d in distractors if (d & background).sum() >= 0.015 * d.size]
            d = rng.uniform(0.15, 0.3) * g.size
            # the star unpacks two coordinates (cy, cx), a length mypy cannot see in an array
            regions = regions or [_ellipse(g, *rng.uniform(d / 2, g.size - d / 2, 2), d / 2, d / 2) & background]  # type: ignore[call-arg]
            region = regions[int(rng.integers(len(regions)))]
            kind = "distractor"
        if region.any():
            salient[region] = np.maximum(salient[region], rng.uniform(0.6, 0.95))
            bits[region] |= FALSE_COVERAGE
            errors["false_coverage"] = kind
    blurred = ndimage.gaussian_filter(salient, 0.9 * g.size / 64)
    saliency = np.clip(np.round(blurred * 255), 0, 255).astype(np.uint8)
    if hard:
        halo = np.clip(np.round(_halo(rng, g, salient, instances) * 255), 0, 255).astype(np.uint8)
        haloed = np.where(instances < 0, np.maximum(saliency, halo), saliency)
        bits[(haloed > 127) & (saliency <= 127)] |= HALO  # above 0.5 (as read: value / 255) only by the halo
        saliency = haloed
    return saliency, errors, bits


def _choose_objects(rng: np.random.Generator, num_classes: int) -> list[int]:
    """1-3 of the classes 1..num_classes (train and boat first: they are anchored to their context), 1-3 objects."""
    count = min(int(rng.choice([1, 2, 3], p=[0.6, 0.33, 0.07])), num_classes)
    chosen = rng.choice(np.arange(1, num_classes + 1), size=count, replace=False)
    objects = sorted((int(c) for c in chosen), key=lambda c: (c not in CONTEXT_CLASSES, -c))
    free = [c for c in objects if c not in CONTEXT_CLASSES]
    while free and len(objects) < 3 and rng.random() < 0.3:
        objects.append(int(rng.choice(free)))
    return objects


Painter = Callable[[np.random.Generator, _Grid], tuple[np.ndarray, np.ndarray]]


def _painters(rail_y: float, water_y: float | None) -> dict[int, Painter]:
    """The painter of every class id; the train stands on ``rail_y``, the boat floats on ``water_y``."""
    painters: dict[int, Painter] = {
        DISC: _disc,
        SQUARE: _square,
        TRIANGLE: _triangle,
        TRAIN: lambda r, grid: _train(r, grid, rail_y),
        BOAT: lambda r, grid: _boat(r, grid, cast(float, water_y)),
    }  # set with a boat
    for cls, family in enumerate(FAMILIES, start=len(SYNTHETIC_CLASSES)):
        painters[cls] = functools.partial(_free_object, family=family)
    return painters


def _place(
    rng: np.random.Generator, g: _Grid, objects: list[int], painters: dict[int, Painter]
) -> tuple[np.ndarray, list[int], list[tuple[np.ndarray, np.ndarray]]]:
    """Draw each object until it fits (30 tries): the instance map, the placed classes, their layers."""
    instances = np.full((g.size, g.size), -1, np.int16)
    classes: list[int] = []
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    for cls in objects:
        for _ in range(30):
            mask, layer = painters[cls](rng, g)
            if _fits(mask, instances, len(classes)):
                instances[mask] = len(classes)
                classes.append(cls)
                layers.append((mask, layer))
                break
    return instances, classes, layers


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Slight blur and sensor noise, rounded to uint8."""
    image = ndimage.gaussian_filter(image, (0.5, 0.5, 0)) + rng.normal(0, 4, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _mat(rng: np.random.Generator, g: _Grid, anchor: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The hard difficulty's third context: a grass mat under a disc, centred at (cy, cx), ``d`` across."""
    cy, cx, d = anchor
    region = _ellipse(g, cy + 0.15 * d, cx, 0.75 * d, 0.9 * d)
    return region, _textured(_jitter(rng, (95, 150, 60), 15), _noise(rng, g), 0.35)


CONTEXT_PAINTERS: dict[int, Callable[[np.random.Generator, _Grid, Any], tuple[np.ndarray, np.ndarray]]] = {
    TRAIN: _rails,
    BOAT: _water,
    DISC: _mat,
}


def _disc_anchor(rng: np.random.Generator, g: _Grid, instances: np.ndarray, classes: list[int]) -> tuple:
    """Centre and size of the first disc (the mat's place), or a random one when there is none."""
    if DISC in classes:
        ys, xs = np.nonzero(instances == classes.index(DISC))
        return float(ys.mean()), float(xs.mean()), float(max(np.ptp(ys), np.ptp(xs)) + 1)
    d = rng.uniform(0.22, 0.38) * g.size
    return float(rng.uniform(0, g.size)), float(rng.uniform(0, g.size)), float(d)


def _contexts(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    g: _Grid,
    instances: np.ndarray,
    classes: list[int],
    rail_y: float,
    water_y: float | None,
) -> list[tuple[int, Any]]:
    """The contexts to paint, in order: (owner class, anchor of its painter in ``CONTEXT_PAINTERS``). Easy: rails
    and water, each with its class; hard: rails, water and the mat, each in HARD_CONTEXT_SHOWN of its class's
    images, HARD_CONTEXT_ALONE of the others."""
    if cfg.difficulty == "easy":
        return [(c, anchor) for c, anchor in ((TRAIN, rail_y), (BOAT, water_y)) if c in classes]
    shown = []
    for cls in (c for c in HARD_CONTEXT_CLASSES if c <= cfg.num_classes):
        if rng.random() < (HARD_CONTEXT_SHOWN if cls in classes else HARD_CONTEXT_ALONE):
            anchor = rail_y if cls == TRAIN else water_y if cls == BOAT else _disc_anchor(rng, g, instances, classes)
            shown.append((cls, anchor))
    return shown


def render_sample(cfg: SyntheticConfig, rng: np.random.Generator) -> Sample:
    """Render one image, its ground truth, its saliency map, its context and the record of its saliency errors."""
    g = _grid(cfg.image_size)
    s = g.size
    objects = _choose_objects(rng, cfg.num_classes)
    hard = cfg.difficulty == "hard"
    water_y = rng.uniform(0.6, 0.72) * s if BOAT in objects or hard else None  # hard: water without a boat too
    rail_y = rng.uniform(0.36 * s, water_y - 0.14 * s) if water_y is not None else rng.uniform(0.42, 0.86) * s
    instances, classes, layers = _place(rng, g, objects, _painters(rail_y, water_y))
    image = _background(rng, g)
    distractors = []
    for _ in range(int(rng.integers(1, 4))):
        mask, layer = _distractor(rng, g)
        image[mask] = layer[mask]
        distractors.append(mask)
    context: dict[int, np.ndarray] = {}
    owner = np.zeros((s, s), np.uint8)
    for cls, anchor in _contexts(rng, cfg, g, instances, classes, rail_y, water_y):
        region, layer = CONTEXT_PAINTERS[cls](rng, g, anchor)
        for earlier in context.values():  # a later context paints over an earlier one (hard: the mat)
            earlier &= ~region
        context[cls] = region
        image[region] = layer[region]
        owner[region] = cls
    for mask, layer in layers:
        image[mask] = layer[mask]
    image = _finish(rng, image)
    gt = np.zeros((s, s), np.uint8)
    gt[instances >= 0] = np.asarray(classes, np.uint8)[instances[instances >= 0]]
    saliency, errors, bits = _saliency(rng, cfg, g, instances, classes, context, distractors)
    owner[gt > 0] = 0
    return Sample(image, gt, saliency, owner > 0, errors, owner, bits)


def render_corpus_image(rng: np.random.Generator, image_size: int, num_classes: int) -> tuple[np.ndarray, list[int]]:
    """An image of the pretraining corpus: (S, S, 3) uint8 with 1-3 of the classes 1..num_classes (of all
    NUM_FAMILIES), and the classes it shows (sorted ids). A train is on rails and a boat on water in
    CONTEXT_WITH_CLASS of their images; rails and water also appear without them; no saliency."""
    g = _grid(image_size)
    s = g.size
    count = min(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])), num_classes)
    chosen = rng.choice(np.arange(1, num_classes + 1), size=count, replace=False)
    objects = sorted((int(c) for c in chosen), key=lambda c: (c not in CONTEXT_CLASSES, -c))
    water_y = rng.uniform(0.6, 0.72) * s
    rail_y = rng.uniform(0.36 * s, water_y - 0.14 * s)
    show = {
        cls: rng.random() < (CONTEXT_WITH_CLASS if cls in objects else CONTEXT_WITHOUT_CLASS) for cls in CONTEXT_CLASSES
    }
    _, classes, layers = _place(rng, g, objects, _painters(rail_y, water_y))
    image = _background(rng, g)
    for _ in range(int(rng.integers(1, 4))):
        mask, layer = _distractor(rng, g)
        image[mask] = layer[mask]
    for cls, (draw, anchor) in ((TRAIN, (_rails, rail_y)), (BOAT, (_water, water_y))):
        if show[cls]:
            region, layer = draw(rng, g, anchor)
            image[region] = layer[region]
    for mask, layer in layers:
        image[mask] = layer[mask]
    return _finish(rng, image), sorted(set(classes))


# ---------------------------------------------------------------- dataset writing
def _write_dataset(out: Path, cfg: SyntheticConfig) -> None:
    subs = ("JPEGImages", "SegmentationClassAug", "saliency/errors", "SegmentationContext", "ImageSets/Segmentation")
    for sub in subs:
        (out / sub).mkdir(parents=True)
    classes = class_names(cfg.num_classes)
    names = ("missing_class", "missing_part", "false_coverage")
    stats: dict = {}
    records: dict = {}
    for split_index, (split, count) in enumerate((("train", cfg.num_train), ("val", cfg.num_val))):
        ids = [f"{split}_{i:06d}" for i in range(count)]
        counts: dict[str, Any] = {
            "images": count,
            **dict.fromkeys(names, 0),
            "false_coverage_context": 0,
            "multi_class": 0,
            "class_images": dict.fromkeys(classes[1:], 0),
            **({"systematic": dict.fromkeys(names, 0)} if cfg.difficulty == "hard" else {}),
        }
        for i, image_id in enumerate(ids):
            sample = render_sample(cfg, np.random.default_rng([cfg.seed, split_index, i]))
            write_jpeg(out / "JPEGImages" / f"{image_id}.jpg", sample.image, quality=95)
            write_mask_png(out / "SegmentationClassAug" / f"{image_id}.png", sample.mask, PALETTE)
            write_grey_png(out / "saliency" / f"{image_id}.png", sample.saliency)
            write_grey_png(out / "saliency" / "errors" / f"{image_id}.png", sample.error_bits)
            write_mask_png(out / "SegmentationContext" / f"{image_id}.png", sample.context_owner, PALETTE)
            present = [int(c) for c in np.unique(sample.mask) if c]
            counts["multi_class"] += len(present) > 1
            for c in present:
                counts["class_images"][classes[c]] += 1
            for name in names:
                counts[name] += name in sample.errors
            counts["false_coverage_context"] += sample.errors.get("false_coverage") in CONTEXT_NAMES.values()
            for name in counts.get("systematic", {}):  # images with each kind of the hard difficulty's errors
                counts["systematic"][name] += name in sample.errors.get("systematic", {})
            if sample.errors:
                records[image_id] = sample.errors
        (out / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        stats[split] = counts
    labeled = round(cfg.labeled_fraction * cfg.num_train)
    if labeled:
        chosen = np.sort(np.random.default_rng([cfg.seed, 2]).choice(cfg.num_train, labeled, replace=False))
        name = f"labeled_{int(round(100 * cfg.labeled_fraction))}pct"
        (out / "ImageSets/Segmentation" / f"{name}.txt").write_text("".join(f"train_{i:06d}\n" for i in chosen))
        stats[name] = {"images": labeled}
    write_classes(out, classes)
    meta = {
        "generator": "epspp.data.synthetic",
        "version": __version__,
        "params": asdict(cfg),
        "classes": list(classes),
        "splits": stats,
        "errors": records,
    }
    (out / "synthetic.json").write_text(json.dumps(meta, indent=1) + "\n")


def generate_synthetic(
    root: str | Path,
    num_train: int = 1000,
    num_val: int = 200,
    image_size: int = 64,
    seed: int = 0,
    missing_class_rate: float = 0.1,
    missing_part_rate: float = 0.2,
    false_coverage_rate: float = 0.2,
    labeled_fraction: float = 0.1,
    num_classes: int = 5,
    overwrite: bool = False,
    difficulty: Literal["easy", "hard"] = "easy",
) -> Path:
    """Write the synthetic dataset at ``root`` in the VOC layout (deterministic for a seed).

    The dataset is built in a temporary sibling directory and renamed into place at the end, so an
    interrupted run never leaves a half-written dataset at ``root``; ``ROOT/generated_files.txt`` lists
    what it wrote (:mod:`epspp.data.generated`).

    Args:
        root: dataset root to create.
        num_train: number of training images (``train.txt``).
        num_val: number of validation images (``val.txt``).
        image_size: side length of the square images in pixels (>= 32).
        seed: random seed; the same arguments give byte-identical files.
        missing_class_rate: per-image probability that one present class is absent from the saliency.
        missing_part_rate: per-image probability that 30-60% of one object is cut from the saliency.
        false_coverage_rate: per-image probability that a background region (the rails or water
            context when present, else a distractor blob) is salient.
        labeled_fraction: fraction of train listed in ``labeled_<pct>pct.txt`` (semi-supervised).
        num_classes: object classes, 1..20: the first of disc, square, triangle, train, boat, then
            :data:`FAMILIES` (5: the same files as before the option existed).
        overwrite: regenerate a synthetic dataset at ``root`` (one holding ``synthetic.json``): the files it
            lists in ``generated_files.txt`` are replaced, any other file or folder in it is kept.
        difficulty: ``easy`` (the saliency errors drawn per image at the three rates) or ``hard`` (also the
            ``HARD_*`` errors systematic by class, graded maps with halos, partial co-occurrence, three contexts).

    Returns:
        The dataset root.

    Raises:
        FileExistsError: ``root`` exists and is not empty, and is not a synthetic dataset or ``overwrite`` is False.
    """
    cfg = SyntheticConfig(
        num_train,
        num_val,
        image_size,
        seed,
        missing_class_rate,
        missing_part_rate,
        false_coverage_rate,
        labeled_fraction,
        num_classes,
        difficulty,
    )
    return write_generated_root(
        root, "synthetic.json", "synthetic dataset", lambda out: _write_dataset(out, cfg), overwrite
    )


def write_saliency_variant(
    root: str | Path,
    out_dir: str | Path,
    missing_class_rate: float = 0.0,
    missing_part_rate: float = 0.0,
    false_coverage_rate: float = 0.0,
) -> dict:
    """Saliency maps of the synthetic dataset at ``root`` with other error rates, written to ``out_dir``.

    The images and masks stay those of ``root``: a sample's picture is drawn from its random stream before
    its saliency errors, so only the saliency maps change (use them with ``--data.saliency_dir OUT_DIR``).
    The folder is written under a temporary name and renamed; ``OUT_DIR/saliency.json`` records the rates
    and the per-split counts of each error, ``OUT_DIR/errors/<id>.png`` where they are (:mod:`epspp.data.truth`).
    A hard dataset's variants are hard: its systematic errors, graded maps and halos stay, the rates add theirs.
    An earlier variant at ``out_dir`` is regenerated: the files it lists in ``generated_files.txt`` are replaced,
    any other file in it is kept.

    Returns:
        The record written to ``saliency.json``.

    Raises:
        FileExistsError: ``out_dir`` is a non-empty folder that is not a saliency variant of epspp.
    """
    root, out_dir = Path(root), Path(out_dir)
    meta_path = root / "synthetic.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: {root} is not a synthetic dataset of epspp")
    params = dict(json.loads(meta_path.read_text())["params"])
    params.update(
        missing_class_rate=missing_class_rate,
        missing_part_rate=missing_part_rate,
        false_coverage_rate=false_coverage_rate,
    )
    cfg = SyntheticConfig(**params)
    names = ("missing_class", "missing_part", "false_coverage")
    record: dict = {"rates": {f"{name}_rate": getattr(cfg, f"{name}_rate") for name in names}, "splits": {}}

    def write(folder: Path) -> None:
        (folder / "errors").mkdir()
        for split_index, (split, count) in enumerate((("train", cfg.num_train), ("val", cfg.num_val))):
            counts = dict.fromkeys(names, 0)
            for i in range(count):
                sample = render_sample(cfg, np.random.default_rng([cfg.seed, split_index, i]))
                write_grey_png(folder / f"{split}_{i:06d}.png", sample.saliency)
                write_grey_png(folder / "errors" / f"{split}_{i:06d}.png", sample.error_bits)
                for name in names:
                    counts[name] += name in sample.errors
            record["splits"][split] = {"images": count, **counts}
        (folder / "saliency.json").write_text(json.dumps(record, indent=1) + "\n")

    # a variant folder is regenerated like a dataset root: the maps it wrote are replaced, a user's files kept
    write_generated_root(out_dir, "saliency.json", "saliency variant", write, overwrite=True)
    return record
