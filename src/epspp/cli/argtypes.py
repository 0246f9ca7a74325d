"""argparse types of the tools' numbers: rates and fractions in [0, 1], thresholds in (0, 1), always finite;
integers in a range (seeds, counts of processes, images, classes, pixels). The limits that configs share are
those of ``epspp.config_checks``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from epspp.config_checks import MAX_OBJECT_CLASSES, MAX_PROCESSES, MAX_SEED, MAX_SIDE


def range_type(low: float, high: float, closed: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (``closed``) or (low, high)."""
    bounds = f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g})"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        inside = low <= value <= high if closed else low < value < high
        if not math.isfinite(value) or not inside:
            raise argparse.ArgumentTypeError(f"{text} is not in {bounds}")
        return value

    return parse


#: a rate or a fraction
unit_interval = range_type(0.0, 1.0)
#: a threshold or a share that must leave both sides non-empty
open_unit_interval = range_type(0.0, 1.0, closed=False)


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (argparse names the flag: ``argument --seeds: -1 is not in
    [0, 4294967295]``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not in [{low}, {high}]")
        return value

    return parse


#: a random seed
seed = int_range(0, MAX_SEED)
#: processes or threads: --jobs, --devices, --num-nodes, --workers
processes = int_range(1, MAX_PROCESSES)
#: object classes of a dataset (8-bit masks)
class_count = int_range(1, MAX_OBJECT_CLASSES)
#: a side of an image, in pixels
image_side = int_range(1, MAX_SIDE)
#: a count of images, steps or rows
count = int_range(1, 10**9)
