"""The study's statistics: the 95 % t interval and the verdict rules, by hand."""

from __future__ import annotations

import pytest

from epspp.study.stats import Estimate, verdict


def test_the_95_percent_t_interval_and_the_verdict_rules_by_hand() -> None:
    # 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    three = Estimate((1.0, 2.0, 3.0))
    assert three.mean == 2.0 and three.half == pytest.approx(2.484138, abs=1e-6)
    assert verdict(three, +1) == "not significant"  # [-0.48, 4.48] holds 0
    shifted = Estimate((3.0, 4.0, 5.0))  # [1.52, 6.48]
    assert verdict(shifted, +1) == "holds" and verdict(shifted, -1) == "contradicted"
    assert verdict(shifted, None) == "differs" and verdict(shifted, +1, testable=False) == "not testable"
    # -1, 2, 5: mean 2, sd 3 -> half 7.45: the interval [-5.45, 9.45] holds 0
    assert verdict(Estimate((-1.0, 2.0, 5.0)), +1) == "not significant"
    assert verdict(Estimate((4.0,)), +1) == "not significant"  # one seed: no interval
    # two seeds: t(0.975, 1) = 12.706, the "12.7 times" of issue 26: 1, 3 -> sd sqrt(2), half 12.706
    assert Estimate((1.0, 3.0)).half == pytest.approx(12.7062, abs=1e-3)
