"""A stage's progress in numbers: rate, ETA, the plain progress line and ``progress.json``.

The progress callback (``epspp.callbacks.StepProgressBar``) measures with a ``StageClock`` and writes
``<trainer.default_root_dir>/progress.json`` during a fit (rank zero, atomically)::

    {"stage": "fit", "step": 120, "max_steps": 500, "elapsed_s": 64.2, "steps_per_s": 1.9, "eta_s": 200.0,
     "done": false}

``steps_per_s`` is 0.0 and ``eta_s`` null until a rate is measured; ``max_steps`` is -1 when the fit has no step
limit. ``read_progress`` gives it back to a reader (``epspp run`` / ``epspp demo``: the whole run's ETA).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from epspp.files import write_text

#: the file a fit writes in its run folder (the write rule counts it as a fit's output)
PROGRESS_FILE = "progress.json"


@dataclass
class StageClock:
    """Rate and ETA of a stage of ``total`` units (steps or batches; -1: unknown) from the times units finish.

    The rate is measured from the first unit's end on (the start-up of data loaders and kernels before it is not
    a unit's time): after units ``s0`` at time ``t0`` and ``s`` at ``t``, ``rate = (s - s0) / (t - t0)`` and
    ``eta = (total - s) / rate``. ``elapsed`` counts from ``started``; ``offset``: the units done before the
    stage started (a resumed fit's step).
    """

    total: int
    started: float
    offset: int = 0
    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None

    def update(self, done: int, now: float) -> None:
        """``done`` units finished at time ``now`` (seconds of any monotonic clock)."""
        if self.first is None:
            self.first = (done, now)
        self.last = (done, now)

    @property
    def done(self) -> int:
        """Units finished at the last update (the first unit's count before it, e.g. a resumed fit's step)."""
        return self.last[0] if self.last else self.offset

    @property
    def rate(self) -> float | None:
        """Units per second since the first unit's end, None until two updates a moment apart."""
        if self.first is None or self.last is None:
            return None
        units, seconds = self.last[0] - self.first[0], self.last[1] - self.first[1]
        return units / seconds if units > 0 and seconds > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the measured rate (0.0 when every unit is done, None when unknown)."""
        if self.total < 0:
            return None
        if self.done >= self.total:
            return 0.0
        rate = self.rate
        return (self.total - self.done) / rate if rate else None

    def elapsed(self, now: float) -> float:
        """Seconds since the stage started."""
        return max(0.0, now - self.started)


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``, ``2 h 05 min`` (rounded to whole seconds)."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_rate(rate: float) -> str:
    """``1.9 it/s``; below 1 it/s the seconds per unit, ``12.5 s/it`` (as tqdm does)."""
    return f"{rate:.1f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it"


def progress_line(stage: str, unit: str, clock: StageClock, loss: float | None = None) -> str:
    """``[fit] step 120/500 (24%)  loss 0.512  1.9 it/s  ETA 3 min 20 s``: what a log file shows of a stage.

    ``unit`` is ``step`` or ``batch``; the total, the percentage, the loss, the rate and the ETA are left out
    where unknown.
    """
    done, total = clock.done, clock.total
    parts = [f"[{stage}] {unit} {done}/{total} ({100 * done // total}%)" if total > 0 else f"[{stage}] {unit} {done}"]
    if loss is not None and math.isfinite(loss):
        parts.append(f"loss {loss:.3f}")
    rate, eta = clock.rate, clock.eta
    if rate:
        parts.append(format_rate(rate))
    if eta is not None and done < total:
        parts.append(f"ETA {format_duration(eta)}")
    return "  ".join(parts)


def progress_record(clock: StageClock, now: float, done: bool, stage: str = "fit") -> dict:
    """The fields of ``progress.json`` (the format ``epspp run`` and ``epspp demo`` read: keep it)."""
    eta = 0.0 if done else clock.eta
    return {
        "stage": stage,
        "step": int(clock.done),
        "max_steps": int(clock.total),
        "elapsed_s": round(clock.elapsed(now), 3),
        "steps_per_s": round(clock.rate or 0.0, 4),
        "eta_s": None if eta is None else round(eta, 3),
        "done": bool(done),
    }


def write_progress(folder: str | Path, record: dict) -> Path:
    """Write ``folder/progress.json`` atomically (a temporary name, then a rename); the folder is created."""
    return write_text(Path(folder) / PROGRESS_FILE, json.dumps(record) + "\n")


def read_progress(folder: str | Path) -> dict | None:
    """``folder/progress.json`` as a dict, None when it is absent or unreadable (being replaced, say)."""
    try:
        record = json.loads((Path(folder) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
