"""What a run folder logged: values of its CSV metrics, IRD's per-step telemetry and the warnings it recorded
(demo report, studies)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

#: the run folder's file where IRDMonitor records the collapse warning (read by the demo report)
WARNINGS_FILE = "warnings.txt"
#: the run folder's file with IRD's telemetry of every training step (read by the demo report and the studies)
TELEMETRY_FILE = "ird_telemetry.csv"


def metrics_files(folder: Path) -> list[Path]:
    """``folder``'s CSV logs ``csv/version_*/metrics.csv``, oldest first: in the order of Lightning's version
    numbers (``version_10`` after ``version_9``), each resumed fit a new version."""
    return sorted(Path(folder).glob("csv/version_*/metrics.csv"), key=lambda p: (len(p.parent.name), p.parent.name))


def logged_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of the newest ``csv/version_*/metrics.csv`` under ``folder`` (empty without one)."""
    files = metrics_files(folder)
    if not files:
        return []
    with files[-1].open(newline="") as handle:
        return list(csv.DictReader(handle))


def last_logged(folder: Path, key: str) -> float | None:
    """The last value of ``key`` in the CSV logs under ``folder`` (newest version)."""
    values = [row[key] for row in logged_rows(folder) if row.get(key)]
    return float(values[-1]) if values else None


def telemetry_values(folder: Path, key: str) -> list[float]:
    """IRD's ``key`` (e.g. ``inconsistent_salient``) at every training step, from ``folder/ird_telemetry.csv``
    (written by an ``ird`` fit, one row per step; the steps without a value left out); empty without the file or
    the column."""
    return [value for value in telemetry_column(folder, key) or [] if not math.isnan(value)]


def telemetry_column(folder: Path, key: str) -> list[float] | None:
    """IRD's ``key`` at every recorded step, NaN where the cell is empty (a ratio over no pixel, such as
    ``error_precision`` at a step that dropped nothing); None without the file or the column."""
    path = Path(folder) / TELEMETRY_FILE
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if key not in (reader.fieldnames or []):
            return None
        return [float(row[key]) if row[key] else math.nan for row in reader]


def mean_over_last_steps(folder: Path, key: str, steps: int = 50) -> float | None:
    """Mean of IRD's ``key`` over the last ``steps`` training steps of the run (every step, from
    ``ird_telemetry.csv``), ignoring the steps without a value (NaN); None when none of them has one."""
    values = [value for value in (telemetry_column(folder, key) or [])[-steps:] if not math.isnan(value)]
    return sum(values) / len(values) if values else None


def window_means(folder: Path, key: str, steps: int = 50) -> list[float]:
    """Means of IRD's ``key`` over consecutive windows of ``steps`` training steps (0-49, 50-99, ...; a last
    partial window included)."""
    values = telemetry_values(folder, key)
    return [sum(part) / len(part) for part in (values[i : i + steps] for i in range(0, len(values), steps))]


def recorded_warnings(folder: Path) -> list[str]:
    """The lines of ``folder/warnings.txt`` (e.g. IRD's collapse warning), empty when the run recorded none."""
    path = Path(folder) / WARNINGS_FILE
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def collapse_step(folder: Path) -> int | None:
    """The step at which the run's IRD collapse warning fired (``warnings.txt``), None when it did not."""
    for line in recorded_warnings(folder):
        found = re.match(r"IRD collapse at step (\d+):", line)
        if found:
            return int(found.group(1))
    return None


def ird_summary(folder: Path, steps: int = 50) -> dict | None:
    """IRD's telemetry of a fit (None without a per-step record): ``recorded_steps`` (the steps in the record),
    ``window`` (= ``steps``), the mean of every key over the last ``steps`` steps (``ERROR_KEYS``, N against the
    injected saliency errors, only when the record has them), the means of consecutive windows of
    ``steps`` steps of the salient share and of M_fg on salient pixels (0-49, 50-99, ...), and the step at which the
    collapse warning fired (None if it did not)."""
    from epspp.callbacks.ird_monitor import ERROR_KEYS, TELEMETRY_KEYS

    if mean_over_last_steps(folder, "inconsistent_salient") is None:
        return None

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "recorded_steps": len(telemetry_values(folder, "inconsistent_salient")),
        "window": steps,
        "last_steps": {
            key: rounded(mean_over_last_steps(folder, key, steps))
            for key in TELEMETRY_KEYS
            if key not in ERROR_KEYS or telemetry_column(folder, key) is not None
        },
        "windows": {
            key: [rounded(v) for v in window_means(folder, key, steps)]
            for key in ("inconsistent_salient", "fg_salient")
        },
        "collapse_step": collapse_step(folder),
        "warnings": recorded_warnings(folder),
    }
