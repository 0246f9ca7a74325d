"""The study's statistics by hand: the 95 % t interval, the exact sign-flip p, Holm's adjustment and the verdict
rules."""

from __future__ import annotations

import pytest

from epspp.study.stats import Claim, Estimate, correct, holm, sign_flip_p, verdict


def test_the_95_percent_t_interval_by_hand() -> None:
    # 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    three = Estimate((1.0, 2.0, 3.0))
    assert three.mean == 2.0 and three.half == pytest.approx(2.484138, abs=1e-6)
    # two seeds: t(0.975, 1) = 12.706, the "12.7 times" of issue 26: 1, 3 -> sd sqrt(2), half 12.706
    assert Estimate((1.0, 3.0)).half == pytest.approx(12.7062, abs=1e-3)


def test_the_sign_flip_p_by_hand() -> None:
    # n = 3, all positive: only the observed assignment reaches its sum: 1/8, the best 3 seeds allow
    assert sign_flip_p([1.0, 2.0, 3.0], 1) == 1 / 8
    # the 8 sums of +-1 +-2 +-3: 6, 4, 2, 0, 0, -2, -4, -6; two-sided |sum| >= 6: 2/8; the other way: all 8
    assert sign_flip_p([1.0, 2.0, 3.0], None) == 2 / 8 and sign_flip_p([1.0, 2.0, 3.0], -1) == 1.0
    assert sign_flip_p([0.5] * 6, 1) == 1 / 64  # n = 6 all positive
    # a tie: 1, 2, -3 sums to 0; sums >= 0 are 6, 4, 2, 0, 0 (the observed and -1 -2 +3): 5/8
    assert sign_flip_p([1.0, 2.0, -3.0], 1) == 5 / 8
    # the tie within float rounding: 0.1 + 0.2 - 0.3 is not 0.0 in floats, the flipped -0.1 - 0.2 + 0.3 not either
    assert sign_flip_p([0.1, 0.2, -0.3], 1) == 5 / 8 and sign_flip_p([0.1, 0.2, -0.3], -1) == 5 / 8
    # zeros: a zero's sign changes no sum, each assignment counted twice: 1, 2, 0 -> sums 3 (x2) of 8: 2/8
    assert sign_flip_p([1.0, 2.0, 0.0], 1) == 2 / 8
    assert sign_flip_p([0.0, 0.0, 0.0], 1) == 1.0 == sign_flip_p([0.0, 0.0, 0.0], None)
    assert sign_flip_p([0.0, 0.0, 0.0], -1) == 1.0  # every sum ties the observed 0 (a tolerance of 0): all count
    # direction -1: the mirror of +1
    assert sign_flip_p([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0], -1) == 1 / 64
    # 6 values, one negative: -1, 2, 3, 4, 5, 6 (sum 19): assignments with sum >= 19 flip at most the 1 (sum 21,
    # 19 observed): 2 of 64; two-sided: 4 of 64
    values = [-1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert sign_flip_p(values, 1) == 2 / 64 and sign_flip_p(values, None) == 4 / 64
    assert sign_flip_p([1.0] * 16, 1) == 1 / 2**16  # 16 differences: the most enumerated
    with pytest.raises(ValueError, match="17 differences, at most 16"):
        sign_flip_p([1.0] * 17, 1)


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08 -> 0.09 (running maximum), 0.5
    assert holm([0.04, 0.01, 0.5, 0.03]) == pytest.approx([0.09, 0.04, 0.5, 0.09])
    # ties: 0.02 x 3 = 0.06, then max(0.06, 0.02 x 2) = 0.06: tied p, tied adjusted p
    assert holm([0.02, 0.02, 0.6]) == pytest.approx([0.06, 0.06, 0.6])
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # 0.6 x 2 = 1.2, capped at 1; then max(1, 0.7)
    assert holm([0.03]) == [0.03]  # m = 1 unchanged


def test_the_verdict_rules() -> None:
    assert verdict(0.05, 1.0, 1) == "holds" and verdict(0.0501, 1.0, 1) == "not significant"
    assert verdict(1.0, 0.05, 1) == "contradicted" and verdict(1.0, 0.05, -1) == "contradicted"
    assert verdict(1.0, 0.0501, 1) == "not significant"  # contradicted only on the opposite direction's p
    assert verdict(0.04, 0.04, None) == "differs" and verdict(0.06, 0.0, None) == "not significant"
    assert verdict(0.05, 1.0, None) == "differs" and verdict(0.0501, 0.0, None) == "not significant"  # p <= alpha


def test_two_seeds_have_an_interval_and_one_has_none() -> None:
    """The 95% t interval from n = 2 on: 2 +- t(0.975, 1) * stdev / sqrt(2) = 2 +- 12.706 * 1.4142 / 1.4142
    (boundary sweep: n exactly 2)."""
    from epspp.study.stats import interval_text, mean_text

    two, one = Estimate((1.0, 3.0)), Estimate((2.0,))
    row = Claim("c", "pretrained", "val", two, (0, 1), 1).row()
    assert (row["low"], row["high"]) == (pytest.approx(-10.706, abs=1e-3), pytest.approx(14.706, abs=1e-3))
    row = Claim("c", "pretrained", "val", one, (0,), 1).row()
    assert (row["low"], row["high"]) == (None, None)
    assert interval_text(two) == "+2.0 [\u221210.7, +14.7]" and interval_text(one) == "+2.0 (n = 1)"
    assert mean_text(two) == "2.0 \u00b1 12.7" and mean_text(one) == "2.0"


def claim(values: tuple[float, ...], direction: int | None, name: str = "c") -> Claim:
    return Claim(name, "pretrained", "val", Estimate(values), tuple(range(len(values))), direction)


def test_claims_are_corrected_per_family_and_holm_can_change_a_verdict() -> None:
    positive = claim((1.0, 2.0, 3.0, 4.0, 5.0, 6.0), 1, "all six positive")  # p = 1/64
    negative = claim((-1.0, -2.0, -3.0, -4.0, -5.0, -6.0), 1, "the other way")  # opposite p = 1/64
    one_off = claim((-1.0, 2.0, 3.0, 4.0, 5.0, 6.0), 1, "one seed negative")  # p = 2/64
    assert [c.verdict for c in (positive, negative, one_off)] == ["holds", "contradicted", "holds"]
    primary = correct([positive, negative, one_off], "primary")
    # ascending: 1/64 (positive, x3), 2/64 (one_off, x2 = 4/64), 64/64 (negative): 3/64, 4/64, 1
    assert [c.p_holm for c in primary] == [3 / 64, 1.0, 4 / 64]
    assert [c.verdict for c in primary] == ["holds", "contradicted", "not significant"]  # Holm changed the third
    # the opposite direction: 63/64 x 3 -> 1, 1/64 x 3, 62/64 x 2 -> 1
    assert [c.p_holm_opposite for c in primary] == [1.0, 3 / 64, 1.0]
    row = primary[1].row()
    assert row["family"] == "primary" and row["p"] == 1.0 and row["verdict"] == "contradicted"
    assert row["note"] == "opposite direction: p_holm 0.04688"
    # two families are corrected on their own: alone, the third holds again
    both = correct([*primary[:2], Claim(**{**one_off.__dict__, "family": "secondary"})])
    assert [c.verdict for c in both] == ["holds", "contradicted", "holds"] and both[2].p_holm == 2 / 64
    # no direction: two-sided, 2/64 for all six positive
    assert correct([claim((1.0, 2.0, 3.0, 4.0, 5.0, 6.0), None)])[0].verdict == "differs"
    assert claim((1.0, 2.0, 3.0), 1).verdict == "not significant"  # 3 seeds: p >= 1/8


def test_summarize_leaves_out_empty_values_and_keys_by_the_given_columns() -> None:
    from epspp.study.stats import summarize

    rows = [
        {"arm": "eps++", "t": "a", "share": 0.5},
        {"arm": "eps++", "t": "a", "share": ""},  # a CSV's empty cell
        {"arm": "eps++", "t": "b", "share": 0.25},
        {"arm": "eps", "t": "a", "share": None},  # no telemetry: no estimate at all
        {"arm": "eps++", "t": "a", "share": "0.75"},
    ]
    stats = summarize(rows, ("arm", "t"), "share")
    assert {key: e.values for key, e in stats.items()} == {("eps++", "a"): (0.5, 0.75), ("eps++", "b"): (0.25,)}


def test_a_claims_row_and_table_line_for_each_direction() -> None:
    from epspp.study.stats import claims_markdown

    lower = Claim("less context", "scratch", "cc", Estimate((-0.012, -0.0206)), (3, 5), -1, "eps++ collapsed", digits=3)
    two_sided = Claim("differs?", "scratch", "miou", Estimate((1.0, -3.0)), (0, 1), None)
    assert [lower.row()["direction"], two_sided.row()["direction"]] == ["-", ""]
    assert lower.row()["per_seed"] == "3:-0.012;5:-0.021" and lower.p == 1 / 4  # both negative, 2 seeds
    assert two_sided.p == 1.0  # |1 - 3| = 2: every one of the 4 sums' |sum| >= 2
    lines = claims_markdown([lower, two_sided])
    assert (
        lines[2].startswith("| less context | scratch | cc | 2 | −0.016 [")
        and " | −0.012, −0.021 | 0.25 | 0.25 | " in lines[2]
    )
    assert lines[2].endswith("| **not significant** (eps++ collapsed) |")
    assert lines[3].endswith("| +1.0, −3.0 | 1 | 1 | **not significant** |")
