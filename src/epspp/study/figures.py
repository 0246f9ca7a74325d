"""The studies' figures (PNG, written to a temporary name and renamed) and their W&B logging."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from epspp.files import write_atomic

#: line style of each regime in the figures
REGIME_STYLE = {"pretrained": "-", "scratch": "--"}
COLLAPSE_NOTE = "X: IRD collapsed (its warning fired) on a seed"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path, description: str) -> None:
    try:
        write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=110, metadata={"Description": description}))
    finally:
        _pyplot().close(figure)


def plot_lines(
    path: Path,
    panels: Sequence[str],
    xs: Sequence[float],
    lines_of: Callable[[str], dict],
    xlabel: str,
    title_of: Callable[[str], str],
) -> None:
    """One panel per entry of ``panels``: a line per series (mean) with its 95% interval shaded; PNG at ``path``.

    ``lines_of(panel)`` maps ``(name, regime)`` to ``(means, half-widths, collapsed)``: a colour per name, a line
    style per regime (``REGIME_STYLE``); a point whose ``collapsed`` is true gets an X marker. The panel titles
    are stored in the PNG's ``Description``.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.8, 3.6), squeeze=False, sharey=True)
    colours: dict[str, str] = {}
    any_collapsed = False
    for axis, panel in zip(axes[0], panels, strict=True):
        for (name, regime), (means, halves, collapsed) in lines_of(panel).items():
            means = np.asarray(means, dtype=float)
            halves = np.nan_to_num(np.asarray(halves, dtype=float))
            colour = colours.setdefault(name, f"C{len(colours)}")
            axis.plot(xs, means, marker="o", color=colour, linestyle=REGIME_STYLE[regime], label=f"{name} ({regime})")
            axis.fill_between(xs, means - halves, means + halves, alpha=0.12, color=colour)
            if len(xs) == 1:  # a band of one point has no width: the interval as an error bar
                axis.errorbar(xs, means, yerr=halves, color=colour, capsize=4)
            marked = [i for i, flag in enumerate(collapsed) if flag]
            if marked:
                any_collapsed = True
                axis.scatter(
                    [xs[i] for i in marked], means[marked], marker="X", s=90, color=colour, edgecolors="black", zorder=3
                )
        axis.set_title(title_of(panel))
        axis.set_xticks(list(xs))
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("mIoU (%), mean and 95% interval")
    axes[0][-1].legend(fontsize=7, handlelength=4, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # off the data;
    # handles long enough to tell dashed (scratch) from solid
    if any_collapsed:
        figure.text(0.01, 0.01, COLLAPSE_NOTE, fontsize=7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    _save(figure, path, "panels: " + "; ".join(title_of(p) for p in panels))


def plot_points(
    path: Path,
    panels: Sequence[str],
    categories: Sequence[str],
    points_of: Callable[[str, str], list[tuple[float, bool]]],
    ylabel: str,
    title_of: Callable[[str], str],
) -> None:
    """One panel per entry of ``panels``, a column per category: every seed's value as a dot (an X where
    ``points_of(panel, category)`` flags it collapsed) and the mean as a bar."""
    plt = _pyplot()
    figure, axes = plt.subplots(
        1, len(panels), figsize=(0.9 * len(categories) * len(panels) + 1.5, 3.8), squeeze=False, sharey=True
    )
    any_collapsed = False
    for axis, panel in zip(axes[0], panels, strict=True):
        for i, category in enumerate(categories):
            points = points_of(panel, category)
            if not points:
                continue
            values = [v for v, _ in points]
            axis.bar(i, math.fsum(values) / len(values), width=0.6, color=f"C{i}", alpha=0.35)
            offsets = np.linspace(-0.15, 0.15, len(points)) if len(points) > 1 else [0.0]
            for offset, (value, collapsed) in zip(offsets, points, strict=True):
                any_collapsed |= collapsed
                axis.scatter(
                    i + offset,
                    value,
                    marker="X" if collapsed else "o",
                    s=60 if collapsed else 22,
                    color=f"C{i}",
                    edgecolors="black",
                    zorder=3,
                )
        axis.set_xticks(range(len(categories)), categories, rotation=30, ha="right", fontsize=8)
        axis.set_title(title_of(panel))
        axis.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel(ylabel)
    if any_collapsed:
        figure.text(0.01, 0.01, COLLAPSE_NOTE + "; bar: the mean over seeds", fontsize=7)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    _save(figure, path, "panels: " + "; ".join(title_of(p) for p in panels))


def log_to_wandb(out: Path, name: str, columns: Sequence[str], rows: Sequence[dict], figure: Path) -> None:
    """The table and the figure as one W&B run (offline unless WANDB_MODE says otherwise)."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    run = wandb.init(project="epspp", name=name, dir=str(out), job_type="study", reinit=True)
    data = [[None if r[c] in ("", None) else r[c] for c in columns] for r in rows]  # a W&B column holds one type
    run.log(
        {f"{name}/table": wandb.Table(columns=list(columns), data=data), f"{name}/figure": wandb.Image(str(figure))}
    )
    run.finish()
