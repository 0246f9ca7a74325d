"""Statistics of the studies: means over seeds with a 95% t interval, paired per-seed differences, the exact
sign-flip permutation test, Holm's correction over a family of claims, and the verdict rules of docs/study.md.

A claim compares two settings trained with the same seeds on the same images, so its evidence is the per-seed
difference ``d_s = a_s - b_s``: its mean with the two-sided 95% Student-t interval ``mean +- t(0.975, n - 1) *
sd / sqrt(n)`` over the n seeds (sd with n - 1), reported beside the test and never adjusted. The test is the exact
sign-flip permutation test of the mean difference (all 2^n sign assignments, n <= 16): one-sided in the claim's
direction, two-sided for a comparison without one. The p-values of a family of claims (a confirmatory plan's
primary or secondary claims; each exploratory study's claims table) are adjusted by Holm's step-down procedure.
Verdicts, at ``alpha`` (0.05):

- ``holds``: the Holm-adjusted one-sided p in the claimed direction is <= alpha;
- ``contradicted``: the Holm-adjusted one-sided p in the opposite direction is <= alpha;
- ``not significant``: neither;
- ``differs``: a comparison without direction whose Holm-adjusted two-sided p is <= alpha (else not significant).

A collapse of IRD under a reading is that reading's result: the claim keeps its verdict, and its note says
"collapsed on k/n seeds".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
#: the level of every verdict
ALPHA = 0.05
VERDICTS = ("holds", "contradicted", "not significant", "differs")
#: the most differences whose 2^n sign assignments :func:`sign_flip_p` enumerates (65,536)
MAX_SIGN_FLIP = 16


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


def sign_flip_p(differences: Sequence[float], direction: int | None) -> float:
    """The exact sign-flip permutation p of the mean paired difference: the share of the 2^n sign assignments
    whose sum is >= the observed sum (``direction`` +1), <= it (-1), or >= it in absolute value (None,
    two-sided); ties count, within 1e-12 of the sum of the absolute differences. At most 16 differences."""
    n = len(differences)
    if n > MAX_SIGN_FLIP:
        raise ValueError(f"sign_flip_p enumerates 2^n sign assignments: {n} differences, at most {MAX_SIGN_FLIP}")
    values = np.asarray(differences, dtype=np.float64)
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    sums = signs @ values
    observed = math.fsum(values)
    tolerance = 1e-12 * math.fsum(abs(v) for v in values)
    if direction is None:
        hits = np.abs(sums) >= abs(observed) - tolerance
    elif direction > 0:
        hits = sums >= observed - tolerance
    else:
        hits = sums <= observed + tolerance
    return int(hits.sum()) / 2**n


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest p times (m - i + 1), the running
    maximum of those in ascending order, capped at 1."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def verdict(p_holm: float, p_holm_opposite: float, direction: int | None, alpha: float = ALPHA) -> str:
    """The verdict of a claim from its Holm-adjusted p in the claimed direction and in the opposite one
    (``direction`` +1 / -1; None: a comparison without direction, ``p_holm`` two-sided)."""
    if direction is None:
        return "differs" if p_holm <= alpha else "not significant"
    if p_holm <= alpha:
        return "holds"
    return "contradicted" if p_holm_opposite <= alpha else "not significant"


@dataclass(frozen=True)
class Claim:
    """One claim tested in one regime at one threshold: the paired difference ``a - b`` per seed, its sign-flip p
    and the Holm-adjusted p in its ``family`` (None until :func:`correct` adjusts it: a family of one)."""

    name: str
    regime: str
    threshold: str
    difference: Estimate
    seeds: tuple[int, ...]
    direction: int | None
    note: str = ""
    family: str = ""
    p_holm: float | None = None
    p_holm_opposite: float | None = None
    digits: int = 1  # decimals of the difference in tables: 1 for mIoU points, 3 for shares in [0, 1]

    @property
    def p(self) -> float:
        """The sign-flip p, one-sided in the claimed direction (two-sided without direction)."""
        return sign_flip_p(self.difference.values, self.direction)

    @property
    def p_opposite(self) -> float:
        """The sign-flip p one-sided in the opposite direction (two-sided without direction)."""
        return sign_flip_p(self.difference.values, None if self.direction is None else -self.direction)

    @property
    def adjusted(self) -> tuple[float, float]:
        """The Holm-adjusted p in the claimed direction and in the opposite one (unadjusted: a family of one)."""
        return (
            self.p if self.p_holm is None else self.p_holm,
            self.p_opposite if self.p_holm_opposite is None else self.p_holm_opposite,
        )

    @property
    def verdict(self) -> str:
        """The claim's verdict on its Holm-adjusted p-values."""
        return verdict(*self.adjusted, self.direction)

    @property
    def full_note(self) -> str:
        """The note, with the opposite direction's adjusted p of a contradicted claim."""
        if self.verdict != "contradicted":
            return self.note
        return "; ".join(filter(None, [self.note, f"opposite direction: p_holm {self.adjusted[1]:.4g}"]))

    def row(self) -> dict:
        """The claim as a row of the claims table."""
        d = self.difference
        return {
            "claim": self.name,
            "family": self.family,
            "regime": self.regime,
            "threshold": self.threshold,
            "n": d.n,
            "mean": round(d.mean, 3),
            "low": None if d.n < 2 else round(d.low, 3),
            "high": None if d.n < 2 else round(d.high, 3),
            "per_seed": ";".join(f"{s}:{v:+.3f}" for s, v in zip(self.seeds, d.values, strict=True)),
            "direction": {1: "+", -1: "-", None: ""}[self.direction],
            "p": round(self.p, 6),
            "p_holm": round(self.adjusted[0], 6),
            "verdict": self.verdict,
            "note": self.full_note,
        }


CLAIM_COLUMNS = (
    "claim",
    "family",
    "regime",
    "threshold",
    "n",
    "mean",
    "low",
    "high",
    "per_seed",
    "direction",
    "p",
    "p_holm",
    "verdict",
    "note",
)


def correct(claims: Sequence[Claim], family: str | None = None) -> list[Claim]:
    """The claims with Holm-adjusted p-values, each family (``Claim.family``; ``family`` names every claim's
    family first, when given) corrected on its own, in both directions."""
    named = [c if family is None else replace(c, family=family) for c in claims]
    out = list(named)
    for name in dict.fromkeys(c.family for c in named):
        members = [i for i, c in enumerate(named) if c.family == name]
        adjusted = holm([named[i].p for i in members])
        opposite = holm([named[i].p_opposite for i in members])
        for i, p, q in zip(members, adjusted, opposite, strict=True):
            out[i] = replace(named[i], p_holm=p, p_holm_opposite=q)
    return out


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


def p_text(p: float) -> str:
    """A p-value in a table: 3 significant digits."""
    return f"{p:.3g}"


def claims_markdown(claims: Sequence[Claim]) -> list[str]:
    """The claims as a Markdown table: the paired difference, its interval, n, the per-seed values, the sign-flip p,
    the Holm-adjusted p and the verdict."""
    lines = [
        "| claim | regime | threshold | n | paired difference, mean [95% t interval] | per seed | p | p (Holm) | "
        "verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for claim in claims:
        row = claim.row()
        per_seed = ", ".join(signed(v, claim.digits) for v in claim.difference.values)
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(
            f"| {claim.name} | {claim.regime} | {claim.threshold} | {claim.difference.n} | "
            f"{interval_text(claim.difference, claim.digits)} | {per_seed} | {p_text(claim.p)} | "
            f"{p_text(claim.adjusted[0])} | "
            f"**{claim.verdict}**{note} |"
        )
    return lines
