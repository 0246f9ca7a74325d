"""What a run folder logged: values of its CSV metrics and the warnings it recorded (demo report, studies)."""

from __future__ import annotations

import csv
from pathlib import Path

from epspp.models.ird_health import WARNINGS_FILE


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


def mean_over_last_steps(folder: Path, key: str, steps: int = 50) -> float | None:
    """Mean of the logged values of ``key`` over the last ``steps`` training steps of the run (the rows whose
    step is within ``steps`` of the last logged step of ``key``); None when nothing was logged."""
    points = [(int(row["step"]), float(row[key])) for row in logged_rows(folder) if row.get(key)]
    if not points:
        return None
    last = points[-1][0]
    window = [value for step, value in points if step > last - steps]
    return sum(window) / len(window)


def recorded_warnings(folder: Path) -> list[str]:
    """The lines of ``folder/warnings.txt`` (e.g. IRD's collapse warning), empty when the run recorded none."""
    path = Path(folder) / WARNINGS_FILE
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
