"""The saliency-error study's rows, claims and Markdown tables from scores given by hand (no training)."""

from __future__ import annotations

import pytest

from epspp.study.grid import (
    Training,
    saliency_grid,
)
from epspp.study.studies import saliency_claims, saliency_markdown, saliency_rows, summarize


def test_rows_claims_and_tables_over_three_seeds() -> None:
    cells = saliency_grid(["scratch"], ["missing_class"], [0.0, 0.5], ["cam", "eps", "eps++"], [0, 1, 2])
    scores = {}
    for s in range(3):
        scores[Training("scratch", "cam", "clean", s)] = {
            "configured": 30.0 + s,
            "bg_threshold": 0.2,
            "val_chosen": 50.0,
            "val_chosen_threshold": 0.5,
        }
        scores[Training("scratch", "eps", "clean", s)] = {
            "configured": 40.0 + 2 * s,
            "bg_threshold": 0.2,
            "val_chosen": 51.0 + s,
            "val_chosen_threshold": 0.3,
        }
        scores[Training("scratch", "eps", "missing_class_0.5", s)] = {
            "configured": 38.0 + 2 * s,
            "bg_threshold": 0.2,
            "val_chosen": 50.0 + s,
            "val_chosen_threshold": 0.3,
        }
        for saliency, base in (("clean", 45.0), ("missing_class_0.5", 44.0 - s)):
            scores[Training("scratch", "eps++", saliency, s)] = {
                "configured": base + s,
                "bg_threshold": 0.2,
                "val_chosen": base + s + 1,
                "val_chosen_threshold": 0.4,
                "inconsistent_salient": 0.5 + 0.1 * s,
                "fg_salient": 0.4,
                "collapse_step": 120 if s == 2 and saliency != "clean" else None,
            }
    rows = saliency_rows(cells, scores)
    assert len(rows) == 3 * 2 * 3 * 2 and list(rows[0])[:8] == [
        "regime",
        "error_type",
        "rate",
        "method",
        "seed",
        "threshold",
        "miou",
        "inconsistent_salient",
    ]
    assert {r["threshold"] for r in rows} == {"configured", "val_chosen"}
    assert {r["inconsistent_salient"] for r in rows if r["method"] == "eps"} == {None}  # no IRD, no telemetry
    chosen = [r for r in rows if r["method"] == "eps" and r["threshold"] == "val_chosen"]
    assert {r["bg_threshold"] for r in chosen} == {0.3}  # the chosen threshold is in the CSV
    stats = summarize(rows, ("error_type", "rate", "method", "threshold"))
    assert stats[("missing_class", 0.0, "eps", "configured")].mean == pytest.approx(42.0)
    assert stats[("missing_class", 0.0, "eps", "configured")].half == pytest.approx(2 * 2.484138, abs=1e-5)

    claims = {
        (c.name, c.threshold): c
        for c in saliency_claims(scores, ["scratch"], ["missing_class"], [0.0, 0.5], ["cam", "eps", "eps++"], [0, 1, 2])
    }
    # EPS - CAM at bg 0.2: 10, 11, 12 -> mean 11, sd 1; all 3 positive: p = 1/8, the least 3 seeds allow, and
    # Holm over the table's 8 claims (each p >= 1/8) makes it 1: not significant
    co = claims[("saliency fixes co-occurrence: EPS > CAM", "bg 0.2")]
    assert co.difference.values == (10.0, 11.0, 12.0) and co.verdict == "not significant"
    assert co.row()["p"] == 0.125 and co.row()["p_holm"] == 1.0 and co.row()["family"] == "saliency-errors"
    assert co.row()["per_seed"] == "0:+10.000;1:+11.000;2:+12.000" and co.row()["low"] == pytest.approx(8.516, abs=1e-3)
    # EPS++ - EPS at bg 0.2: 5, 4, 3 -> p 1/8; its degradation under missing class: EPS++ 44-s-45 = -1-s,
    # EPS -2 -> (-1+2, -2+2, -3+2) = (1, 0, -1): not significant
    assert claims[("EPS++ > EPS", "bg 0.2")].p == 0.125
    lost = claims[("EPS++ loses less than EPS under missing class 0.5", "bg 0.2")]
    assert lost.difference.values == (1.0, 0.0, -1.0) and lost.verdict == "not significant"
    # the val-chosen claims are there too
    assert claims[("EPS++ > EPS", "threshold chosen on val")].difference.values == (-5.0, -5.0, -5.0)
    assert claims[("EPS++ > EPS", "threshold chosen on val")].p_opposite == 0.125
    text = saliency_markdown(
        rows, list(claims.values()), ["scratch"], ["missing_class"], [0.0, 0.5], ["cam", "eps", "eps++"], [0, 1, 2]
    )
    assert (
        "| rate | cam (bg 0.2) | cam (val) | eps (bg 0.2) | eps (val) | eps++ (bg 0.2) | eps++ (val) | eps++ N∩S |"
        in text
    )
    assert "| 0 | 31.0 ± 2.5 | 50.0 ± 0.0 (0.5/0.5/0.5) | 42.0 ± 5.0 | 52.0 ± 2.5 (0.3/0.3/0.3) |" in text
    assert "0.60 ± 0.25 [1/3]" in text  # the rate-0.5 EPS++ point: seed 2's warning fired
    assert (
        "| saliency fixes co-occurrence: EPS > CAM | scratch | bg 0.2 | 3 | +11.0 [+8.5, +13.5] | +10.0, +11.0, "
        "+12.0 | 0.125 | 1 | **not significant** |" in text
    )


def test_a_collapse_at_clean_saliency_is_a_note_beside_the_eps_plus_plus_claims_verdict() -> None:
    scores = {}
    for s in range(6):
        scores[Training("pretrained", "eps", "clean", s)] = {
            "configured": 50.0 + s,
            "bg_threshold": 0.2,
            "val_chosen": 55.0,
            "val_chosen_threshold": 0.3,
        }
        scores[Training("pretrained", "eps++", "clean", s)] = {
            "configured": 20.0,
            "bg_threshold": 0.2,
            "val_chosen": 21.0,
            "val_chosen_threshold": 0.2,
            "collapse_step": 80 if s in (1, 4) else None,
        }
    claims = saliency_claims(scores, ["pretrained"], ["missing_class"], [0.0], ["eps", "eps++"], list(range(6)))
    # EPS++ below EPS on all 6 seeds: the opposite p is 1/64, x 2 claims (Holm) = 1/32 <= 0.05: the collapse is
    # the reading's result, contradicted, with the collapse in the note
    assert [c.verdict for c in claims] == ["contradicted", "contradicted"]
    assert claims[0].note == "eps++ collapsed on 2/6 seeds at clean"
    assert claims[0].row()["note"] == "eps++ collapsed on 2/6 seeds at clean; opposite direction: p_holm 0.03125"
