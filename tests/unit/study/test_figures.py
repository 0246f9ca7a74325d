"""The study's figure (a colour per series, a line style per regime) and its tables as a W&B run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from epspp.study.figures import plot_lines
from epspp.study.grid import (
    Training,
    saliency_grid,
)
from epspp.study.studies import saliency_rows


def test_the_figure_has_a_colour_per_series_and_a_line_style_per_regime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.plot

    def plot(self, *args, **kwargs):
        drawn.append((kwargs["label"], kwargs["color"], kwargs["linestyle"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    lines = {
        (name, regime): ([1.0, 2.0], [0.1, 0.1], [False, name == "b"])
        for regime in ("scratch", "pretrained")
        for name in ("a", "b")
    }
    plot_lines(tmp_path / "f.png", ["p"], [0.0, 1.0], lambda _: lines, "x", lambda p: f"panel {p}")
    assert drawn == [
        ("a (scratch)", "C0", "--"),
        ("b (scratch)", "C1", "--"),
        ("a (pretrained)", "C0", "-"),
        ("b (pretrained)", "C1", "-"),
    ]
    from PIL import Image

    assert Image.open(tmp_path / "f.png").info["Description"] == "panels: panel p"


def test_the_tables_go_to_wandb_with_the_empty_telemetry_of_cam_and_eps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # W&B's table artifact keeps a folder there
    from PIL import Image

    from epspp.study.figures import log_to_wandb
    from epspp.study.studies import STUDY_COLUMNS

    cells = saliency_grid(["scratch"], ["missing_class"], [0.0], ["eps", "eps++"], [0])
    scores = {
        Training("scratch", "eps", "clean", 0): {
            "configured": 40.0,
            "bg_threshold": 0.2,
            "val_chosen": 50.0,
            "val_chosen_threshold": 0.3,
        },
        Training("scratch", "eps++", "clean", 0): {
            "configured": 41.0,
            "bg_threshold": 0.2,
            "val_chosen": 51.0,
            "val_chosen_threshold": 0.3,
            "inconsistent_salient": 0.5,
        },
    }
    rows = saliency_rows(cells, scores)  # None for EPS, a number for EPS++: one column of two types in the CSV
    Image.new("RGB", (8, 8)).save(tmp_path / "f.png")
    log_to_wandb(tmp_path, "study/test", STUDY_COLUMNS, rows, tmp_path / "f.png")
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_one_seed_is_drawn_on_its_column_and_two_spread_about_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each seed's dot in its category's column: one dot at the column itself, several spread over -0.15..0.15
    (boundary sweep: a single point)."""
    import matplotlib.axes

    from epspp.study.figures import plot_points

    xs = []
    original = matplotlib.axes.Axes.scatter

    def scatter(self, x, *args, **kwargs):
        xs.append(round(float(x), 6))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", scatter)
    points = {"one": [(0.5, False)], "two": [(0.4, False), (0.6, True)]}
    plot_points(tmp_path / "f.png", ["p"], ["one", "two"], lambda _, c: points[c], "y", lambda p: p)
    assert xs == [0.0, 1 - 0.15, 1 + 0.15]
