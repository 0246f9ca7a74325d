"""argparse types of the tools' numbers: rates and fractions in [0, 1], thresholds in (0, 1), always finite."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
