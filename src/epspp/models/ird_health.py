"""Watching IRD while it trains: the collapse warning of EPS++'s Inconsistent Region Drop.

IRD drops from the saliency loss every pixel where the PAMR-refined foreground and the saliency map
disagree.  When the localization maps are not confidently above 0.5 on the objects (a backbone that is
not pretrained, a short warm-up, maps too coarse for PAMR, poor saliency maps), every salient pixel
ends up in the dropped region: the loss then only pushes the foreground down on the background, and
the background channel takes the objects.  ``CollapseMonitor`` detects this from the per-step
``train/inconsistent_salient`` (``epspp.losses.ird_telemetry``) and says so once.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from pathlib import Path

#: the run folder's file where the warning is recorded (read by the demo report)
WARNINGS_FILE = "warnings.txt"


class CollapseMonitor:
    """Fires once when the share of salient pixels in IRD's dropped region averages >= ``threshold``
    over ``window`` consecutive steps after the warm-up.

    Args:
        window: number of consecutive steps averaged.
        threshold: the collapse threshold of the mean share.
    """

    def __init__(self, window: int = 50, threshold: float = 0.95) -> None:
        self.window, self.threshold = int(window), float(threshold)
        self.values: deque[float] = deque(maxlen=self.window)
        self.fired_at: int | None = None

    def update(self, step: int, inconsistent_salient: float) -> str | None:
        """Record one step's share; return the warning the first time the window's mean reaches the threshold."""
        self.values.append(float(inconsistent_salient))
        if self.fired_at is not None or len(self.values) < self.window:
            return None
        mean = sum(self.values) / len(self.values)
        if mean < self.threshold:
            return None
        self.fired_at = int(step)
        return (f"IRD collapse at step {step}: on average {mean:.1%} of the salient pixels (saliency > 0.5) were in "
                f"the dropped inconsistent region over the last {self.window} steps, so the saliency loss no longer "
                "sees the objects and the background channel takes them. Check: a backbone that is not pretrained "
                "(pretrained / pretrained_path), the warm-up length (ird_warmup_steps), the map resolution (crop "
                "size, output_stride, PAMR dilations) and the saliency maps.")

    def state_dict(self) -> dict:
        return {"values": list(self.values), "fired_at": self.fired_at}

    def load_state_dict(self, state: dict) -> None:
        self.values = deque(state.get("values", []), maxlen=self.window)
        self.fired_at = state.get("fired_at")


def record_warning(run_dir: str | Path, message: str) -> Path:
    """Print ``message`` as one line to stderr and append it to ``run_dir/warnings.txt`` (temp file + rename)."""
    print(f"[epspp] warning: {message}", file=sys.stderr, flush=True)
    path = Path(run_dir) / WARNINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = path.read_text(encoding="utf-8") if path.is_file() else ""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(earlier + message + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
