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


def _record(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, calls: list) -> None:
    original = getattr(cls, method)

    def record(self, *args, **kwargs):
        calls.append((method, args, kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, record)


@pytest.fixture
def not_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    """The figures are drawn, not written (savefig is most of a plot's time)."""
    import epspp.study.figures as figures

    monkeypatch.setattr(figures, "_save", lambda figure, path, description: figures._pyplot().close(figure))


def test_one_rate_gets_error_bars_a_collapse_its_x_and_the_figure_its_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_saved: None
) -> None:
    """One x: the interval as an error bar (a NaN half-width of one seed drawn as 0); an X on the collapsed point
    only; the collapse note under the figure."""
    import math

    import matplotlib.axes
    import matplotlib.figure

    from epspp.study.figures import COLLAPSE_NOTE

    calls: list = []
    for cls, method in ((matplotlib.axes.Axes, "scatter"), (matplotlib.axes.Axes, "errorbar")):
        _record(monkeypatch, cls, method, calls)
    _record(monkeypatch, matplotlib.figure.Figure, "text", calls)
    lines = {("a", "scratch"): ([1.0], [math.nan], [True]), ("b", "pretrained"): ([2.0], [0.5], [False])}
    plot_lines(tmp_path / "f.png", ["p"], [0.5], lambda _: lines, "x", str)
    assert [(m, list(a[0]), list(a[1])) for m, a, _ in calls if m != "text"] == [
        ("errorbar", [0.5], [1.0]),
        ("scatter", [0.5], [1.0]),  # a's collapsed point
        ("errorbar", [0.5], [2.0]),
    ]
    assert calls[1][2]["marker"] == "X"
    assert list(calls[0][2]["yerr"]) == [0.0] and list(calls[2][2]["yerr"]) == [0.5]
    assert [a for m, a, _ in calls if m == "text"] == [(0.01, 0.01, COLLAPSE_NOTE)]


def test_a_categorys_bar_is_the_mean_and_a_collapsed_seed_an_x(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_saved: None
) -> None:
    import matplotlib.axes
    import matplotlib.figure

    from epspp.study.figures import COLLAPSE_NOTE, plot_points

    calls: list = []
    for cls, method in (
        (matplotlib.axes.Axes, "bar"),
        (matplotlib.axes.Axes, "scatter"),
        (matplotlib.figure.Figure, "text"),
    ):
        _record(monkeypatch, cls, method, calls)
    points = {"c": [(3.0, True), (1.0, False), (2.0, False)]}
    plot_points(tmp_path / "f.png", ["p"], ["c"], lambda _, c: points[c], "y", str)
    assert [a[:2] for m, a, _ in calls if m == "bar"] == [(0, 2.0)]
    assert [(k["marker"], k["s"]) for m, _, k in calls if m == "scatter"] == [("X", 60), ("o", 22), ("o", 22)]
    assert [a[2] for m, a, _ in calls if m == "text"] == [COLLAPSE_NOTE + "; bar: the mean over seeds"]
