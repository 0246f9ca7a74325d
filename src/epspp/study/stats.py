"""Statistics of the studies: means over seeds with a 95% t interval, paired per-seed differences, and the verdict
rules of docs/study.md applied to each claim.

A claim compares two settings trained with the same seeds on the same images, so its evidence is the per-seed
difference ``d_s = a_s - b_s``: its mean with the two-sided 95% Student-t interval ``mean +- t(0.975, n - 1) *
sd / sqrt(n)`` over the n seeds (sd with n - 1). Verdicts:

- ``holds``: the interval excludes 0 in the paper's direction;
- ``contradicted``: it excludes 0 the other way;
- ``not significant``: otherwise (also with one seed, where no interval exists);
- ``not testable``: the claim involves EPS++ and IRD collapsed (its warning fired) at the reference point (rate 0,
  or the readings study's saliency) on any seed: the comparison then measures the collapse, not the claim.

A comparison that is not a claim of the papers (no direction) is ``differs`` or ``not significant``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

CONFIDENCE = 0.95
VERDICTS = ("holds", "contradicted", "not significant", "not testable", "differs")


@dataclass(frozen=True)
class Estimate:
    """Mean of ``values`` with its 95% t interval (``half`` = its half-width; NaN with one value)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        """The number of values."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """The mean of the values."""
        return math.fsum(self.values) / self.n

    @property
    def half(self) -> float:
        """Half the width of the confidence interval (NaN with fewer than two values)."""
        if self.n < 2:
            return math.nan
        return (
            float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, self.n - 1))
            * statistics.stdev(self.values)
            / math.sqrt(self.n)
        )

    @property
    def low(self) -> float:
        """The low end of the confidence interval."""
        return self.mean - self.half

    @property
    def high(self) -> float:
        """The high end of the confidence interval."""
        return self.mean + self.half


def summarize(rows: Sequence[dict], keys: Sequence[str], value: str = "miou") -> dict[tuple, Estimate]:
    """The estimate of ``value`` over the seeds per combination of ``keys`` (rows whose ``value`` is empty or None
    left out)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if row[value] not in ("", None):
            groups.setdefault(tuple(row[k] for k in keys), []).append(float(row[value]))
    return {key: Estimate(tuple(v)) for key, v in groups.items()}


def verdict(estimate: Estimate, direction: int | None, testable: bool = True) -> str:
    """The verdict of a paired difference: ``direction`` +1 / -1 is the paper's sign, None for a comparison the
    papers do not make."""
    if not testable:
        return "not testable"
    if estimate.n < 2 or math.isnan(estimate.half) or estimate.low <= 0 <= estimate.high:
        return "not significant"
    if direction is None:
        return "differs"
    return "holds" if (estimate.low > 0) == (direction > 0) else "contradicted"


@dataclass(frozen=True)
class Claim:
    """One claim tested in one regime at one threshold: the paired difference ``a - b`` per seed."""

    name: str
    regime: str
    threshold: str
    difference: Estimate
    seeds: tuple[int, ...]
    direction: int | None
    testable: bool
    note: str = ""

    @property
    def verdict(self) -> str:
        """The claim's verdict on its paired difference."""
        return verdict(self.difference, self.direction, self.testable)

    def row(self) -> dict:
        """The claim as a row of the claims table."""
        d = self.difference
        return {
            "claim": self.name,
            "regime": self.regime,
            "threshold": self.threshold,
            "n": d.n,
            "mean": round(d.mean, 3),
            "low": None if d.n < 2 else round(d.low, 3),
            "high": None if d.n < 2 else round(d.high, 3),
            "per_seed": ";".join(f"{s}:{v:+.3f}" for s, v in zip(self.seeds, d.values, strict=True)),
            "direction": {1: "+", -1: "-", None: ""}[self.direction],
            "verdict": self.verdict,
            "note": self.note,
        }


CLAIM_COLUMNS = ("claim", "regime", "threshold", "n", "mean", "low", "high", "per_seed", "direction", "verdict", "note")


def paired(values_a: dict[int, float], values_b: dict[int, float]) -> tuple[tuple[int, ...], Estimate]:
    """Per-seed differences ``a - b`` over the seeds both have, in seed order."""
    seeds = tuple(sorted(set(values_a) & set(values_b)))
    return seeds, Estimate(tuple(values_a[s] - values_b[s] for s in seeds))


def signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign (a typographic minus), ``digits`` decimals."""
    return f"{value:+.{digits}f}".replace("-", "−")


def interval_text(estimate: Estimate, digits: int = 1) -> str:
    """``+2.7 [−1.3, +6.7]`` (the mean and its 95% interval), or the value alone with one seed."""
    if estimate.n < 2:
        return f"{signed(estimate.mean, digits)} (n = 1)"
    return f"{signed(estimate.mean, digits)} [{signed(estimate.low, digits)}, {signed(estimate.high, digits)}]"


def mean_text(estimate: Estimate, digits: int = 1) -> str:
    """``62.4 ± 3.1`` (the mean ± the half-width of its 95% interval), or the value alone with one seed."""
    if estimate.n < 2:
        return f"{estimate.mean:.{digits}f}"
    return f"{estimate.mean:.{digits}f} ± {estimate.half:.{digits}f}"


def claims_markdown(claims: Sequence[Claim]) -> list[str]:
    """The claims as a Markdown table: the paired difference, its interval, n, the per-seed values, the verdict."""
    lines = [
        "| claim | regime | threshold | n | paired difference, mean [95% t interval] | per seed | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for claim in claims:
        per_seed = ", ".join(signed(v) for v in claim.difference.values)
        note = f" ({claim.note})" if claim.note else ""
        lines.append(
            f"| {claim.name} | {claim.regime} | {claim.threshold} | {claim.difference.n} | "
            f"{interval_text(claim.difference)} | {per_seed} | **{claim.verdict}**{note} |"
        )
    return lines
