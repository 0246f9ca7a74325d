"""The studies' grids: which trainings a study needs, their folders, and the default and full grids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from epspp.config_files import PACKAGED
from epspp.demo import METHODS

#: error type of the study -> the synthetic generator's rate argument
ERROR_TYPES = {
    "missing_class": "missing_class_rate",
    "missing_object": "missing_part_rate",
    "false_coverage": "false_coverage_rate",
}
#: background thresholds scored from the saved score maps (one is chosen on val, train is reported at it)
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: the stage-1 steps of the demo's EPS config (``eps/4x-steps`` trains four times as long)
EPS_STEPS = int(
    yaml.safe_load((PACKAGED / "demo" / METHODS["eps"]).read_text(encoding="utf-8"))["trainer"]["max_steps"]
)
#: method of the study -> (its stage-1 config, overrides). ``eps++/no-pamr`` is an ablation, not the paper (IRD with
#: M_r = M, no PAMR); ``eps++/softmax`` and ``eps++/floored`` are EPS++ under the other readings of B() (the summed
#: softmax maps; 1-stage-wseg's relative threshold with a floor); ``eps/4x-steps`` is EPS at four times its steps
STUDY_METHODS = {
    **{name: (config, []) for name, config in METHODS.items()},
    "eps++/no-pamr": (METHODS["eps++"], ["--model.init_args.ird_refine", "none"]),
    "eps++/softmax": (METHODS["eps++"], ["--model.init_args.ird_threshold_maps", "softmax"]),
    "eps++/floored": (METHODS["eps++"], ["--model.init_args.ird_threshold_maps", "floored"]),
    "eps/4x-steps": (METHODS["eps"], ["--trainer.max_steps", str(4 * EPS_STEPS)]),
}
DEFAULT_METHODS = tuple(METHODS)
#: the arms of ``epspp study readings``: CAM, EPS, EPS++ under both readings of B(), and the ablation
READING_METHODS = ("cam", "eps", "eps++", "eps++/softmax", "eps++/no-pamr")
#: stage-3 settings of the labelled-fraction study: labelled-only, SSSS and WSSS on the pseudo-masks of EPS++ (the
#: paper's pipeline) and of EPS (so that SSSS is testable whatever IRD does)
SETTINGS = ("labeled_only", "ssss", "ssss_eps", "wsss", "wsss_eps")
BOTH_REGIMES = ["scratch", "pretrained"]
#: the default grids (sized so that ``make study`` runs saliency-errors and labeled-fraction within 120 min on 2 cores,
#: BENCHMARKS.md; the labelled-fraction study in the papers' regime only) and the full grids of ``--full-grid``
DEFAULT_GRID: dict[str, Any] = {
    "rates": [0.0, 0.5],
    "seeds": [0, 1, 2],
    "fractions": [0.02],
    "regimes": {"saliency-errors": BOTH_REGIMES, "labeled-fraction": ["pretrained"], "readings": BOTH_REGIMES},
}
FULL_GRID: dict[str, Any] = {
    "rates": [0.0, 0.25, 0.5, 0.75],
    "seeds": [0, 1, 2, 3, 4],
    "fractions": [0.01, 0.02, 0.05, 0.1, 0.2],
    "regimes": {"saliency-errors": BOTH_REGIMES, "labeled-fraction": BOTH_REGIMES, "readings": BOTH_REGIMES},
}


@dataclass(frozen=True)
class Training:
    """One stage-1 training and its pseudo-masks: ``saliency`` names the saliency folder it learns from."""

    regime: str
    method: str
    saliency: str
    seed: int

    def folder(self, runs: Path) -> Path:
        """``RUNS/<regime>/<method>/<saliency>/seed<S>`` (``/`` of an arm's name as ``_``)."""
        return runs / self.regime / self.method.replace("/", "_") / self.saliency / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.regime} {self.method} {self.saliency} seed {self.seed}"


@dataclass(frozen=True)
class Cell:
    """One point of the saliency-error grid: its rows of ``study.csv`` come from ``training``."""

    regime: str
    error_type: str
    rate: float
    method: str
    seed: int

    @property
    def training(self) -> Training:
        """The training that serves this cell (CAM: one per seed, whatever the saliency)."""
        if self.method == "cam":  # CAM ignores saliency: one training per seed serves every point
            return Training(self.regime, "cam", "clean", self.seed)
        return Training(self.regime, self.method, saliency_name(self.error_type, self.rate), self.seed)


def has_ird(method: str) -> bool:
    """Whether the arm ``method`` trains with IRD (its stage-1 config is EPS++'s)."""
    return STUDY_METHODS[method][0] == METHODS["eps++"]


def saliency_name(error_type: str, rate: float) -> str:
    """Folder name of the saliency maps of one error type at one rate (``clean`` at rate 0, shared)."""
    return "clean" if rate == 0 else f"{error_type}_{rate:g}"


def saliency_grid(
    regimes: Sequence[str],
    error_types: Sequence[str],
    rates: Sequence[float],
    methods: Sequence[str],
    seeds: Sequence[int],
) -> list[Cell]:
    """Every (regime, error type, rate, method, seed) point."""
    return [
        Cell(g, e, float(r), m, s) for g in regimes for s in seeds for m in methods for e in error_types for r in rates
    ]


def unique_trainings(cells: Sequence[Cell]) -> list[Training]:
    """The trainings the cells need, each once, in the order first needed."""
    return list(dict.fromkeys(cell.training for cell in cells))
