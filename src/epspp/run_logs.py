"""What a run folder logged: values of its CSV metrics, IRD's per-step telemetry and the warnings it recorded
(demo report, studies)."""

from __future__ import annotations

import csv
from pathlib import Path

from epspp.models.ird_health import TELEMETRY_FILE, WARNINGS_FILE


def logged_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of the newest ``csv/version_*/metrics.csv`` under ``folder`` (empty without one)."""
    files = sorted(Path(folder).glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
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
    (written by an ``ird`` fit, one row per step); empty without the file or the column."""
    path = Path(folder) / TELEMETRY_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def mean_over_last_steps(folder: Path, key: str, steps: int = 50) -> float | None:
    """Mean of IRD's ``key`` over the last ``steps`` training steps of the run (every step, from
    ``ird_telemetry.csv``); None when nothing was recorded."""
    values = telemetry_values(folder, key)[-steps:]
    return sum(values) / len(values) if values else None


def window_means(folder: Path, key: str, steps: int = 50) -> list[float]:
    """Means of IRD's ``key`` over consecutive windows of ``steps`` training steps (0-49, 50-99, ...; a last
    partial window included)."""
    values = telemetry_values(folder, key)
    return [sum(part) / len(part) for part in (values[i:i + steps] for i in range(0, len(values), steps))]


def recorded_warnings(folder: Path) -> list[str]:
    """The lines of ``folder/warnings.txt`` (e.g. IRD's collapse warning), empty when the run recorded none."""
    path = Path(folder) / WARNINGS_FILE
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
