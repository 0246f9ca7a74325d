"""The saliency-error study's rows, claims and Markdown tables from scores given by hand (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.study.grid import (
    READING_METHODS,
    Training,
    saliency_grid,
)
from epspp.study.studies import (
    READING_COLUMNS,
    ClaimBuilder,
    fraction_claims,
    localization_claims,
    reading_rows,
    readings_markdown,
    saliency_claims,
    saliency_markdown,
    saliency_rows,
    summarize,
    write_csv,
)


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


def _score(configured: float, factor: float, **extra: object) -> dict:
    """A training's scores: ``configured`` at bg 0.2 and ``factor`` times it at the val-chosen threshold 0.35."""
    return {
        "configured": configured,
        "bg_threshold": 0.2,
        "val_chosen": factor * configured,
        "val_chosen_threshold": 0.35,
        **extra,
    }


@pytest.mark.parametrize(("threshold", "factor"), [("configured", 1.0), ("val_chosen", 2.0)])
def test_every_arms_claim_at_the_demos_saliency_pairs_its_two_arms(threshold: str, factor: float) -> None:
    """The readings study's claims (reference saliency ``demo``): CAM's one training is its clean one, every other
    arm's is the demo's; each claim's a - b, direction and the arm whose collapses its note counts."""
    scores = {}
    for s in range(3):
        scores[Training("scratch", "cam", "clean", s)] = _score(10.0 + s, factor)
        scores[Training("scratch", "eps", "clean", s)] = _score(90.0, factor)  # not the demo's saliency: unused
        scores[Training("scratch", "eps", "demo", s)] = _score(20.0 + s, factor)
        scores[Training("scratch", "eps++", "demo", s)] = _score(40.0 + 2 * s, factor, collapse_step=9 if s else None)
        scores[Training("scratch", "eps++/softmax", "demo", s)] = _score(30.0, factor, collapse_step=None if s else 5)
        scores[Training("scratch", "eps++/no-pamr", "demo", s)] = _score(35.0 - s, factor)
    build = ClaimBuilder(scores, [0, 1, 2])
    localization_claims(build, "scratch", READING_METHODS, "demo", threshold)
    got = {c.name: (c.threshold, c.difference.values, c.direction, c.note) for c in build.claims}
    measure = {"configured": "bg 0.2", "val_chosen": "threshold chosen on val"}[threshold]
    eps_pp, softmax = "eps++ collapsed on 2/3 seeds at demo", "eps++/softmax collapsed on 1/3 seeds at demo"
    expected = {
        "saliency fixes co-occurrence: EPS > CAM": ((10.0, 10.0, 10.0), 1, ""),
        "EPS++ > CAM": ((30.0, 31.0, 32.0), 1, eps_pp),
        "EPS++ > EPS": ((20.0, 21.0, 22.0), 1, eps_pp),
        "EPS++ (softmax reading) > EPS": ((10.0, 9.0, 8.0), 1, softmax),
        "PAMR helps IRD: EPS++ > EPS++ without PAMR": ((5.0, 8.0, 11.0), 1, eps_pp),
        "normalized - softmax reading of B()": ((10.0, 12.0, 14.0), None, "not a claim of the papers"),
    }
    assert got == {
        name: (measure, tuple(factor * v for v in values), direction, note)
        for name, (values, direction, note) in expected.items()
    }
    assert list(got) == list(expected)


def test_an_arm_without_trainings_makes_no_claim() -> None:
    scores = {Training("scratch", "eps", "demo", s): _score(20.0, 1.0) for s in range(2)}
    build = ClaimBuilder(scores, [0, 1])
    localization_claims(build, "scratch", ["cam", "eps"], "demo", "configured")
    assert build.claims == []


def test_saliency_rows_score_each_threshold_kind_at_its_own_threshold() -> None:
    cells = saliency_grid(["pretrained"], ["false_coverage"], [0.0], ["eps"], [4])
    rows = saliency_rows(cells, {Training("pretrained", "eps", "clean", 4): _score(40.0, 1.5)})
    assert [(r["threshold"], r["miou"], r["bg_threshold"]) for r in rows] == [
        ("configured", 40.0, 0.2),
        ("val_chosen", 60.0, 0.35),
    ]


def test_reading_rows_take_each_telemetry_column_from_its_key_of_the_ird_summary(tmp_path: Path) -> None:
    """The last-steps keys runs.logs.ird_summary writes (callbacks.ird_monitor.TELEMETRY_KEYS), each to its column;
    an arm without IRD has them empty, in the CSV too."""
    from epspp.callbacks.ird_monitor import TELEMETRY_KEYS

    telemetry = [
        "inconsistent_salient",
        "inconsistent_background",
        "fg_salient",
        "threshold_map_salient",
        "threshold_map_background",
    ]
    assert set(telemetry) <= set(TELEMETRY_KEYS)
    last = {key: round(0.1 * (i + 1), 1) for i, key in enumerate(TELEMETRY_KEYS)}  # "inconsistent" too: not a column
    ird = Training("scratch", "eps++", "demo", 1)
    eps = Training("scratch", "eps", "demo", 1)
    scores = {
        ird: _score(33.0, 2.0, ird={"last_steps": last}, collapse_step=70),
        eps: _score(44.0, 0.5, ird=None, collapse_step=None),
    }
    rows = reading_rows([ird, eps], scores)
    head = {"regime": "scratch", "saliency": "demo", "seed": 1}
    assert rows == [
        {**head, "method": "eps++", "threshold": "configured", "miou": 33.0, "bg_threshold": 0.2}
        | {key: last[key] for key in telemetry}
        | {"collapse_step": 70},
        {**head, "method": "eps++", "threshold": "val_chosen", "miou": 66.0, "bg_threshold": 0.35}
        | {key: last[key] for key in telemetry}
        | {"collapse_step": 70},
        {**head, "method": "eps", "threshold": "configured", "miou": 44.0, "bg_threshold": 0.2}
        | dict.fromkeys(telemetry)
        | {"collapse_step": None},
        {**head, "method": "eps", "threshold": "val_chosen", "miou": 22.0, "bg_threshold": 0.35}
        | dict.fromkeys(telemetry)
        | {"collapse_step": None},
    ]
    assert [list(r) for r in rows] == [list(READING_COLUMNS)] * 4
    write_csv(tmp_path / "readings.csv", READING_COLUMNS, rows)
    lines = (tmp_path / "readings.csv").read_text().splitlines()
    assert lines[0] == ",".join(READING_COLUMNS)
    assert lines[1] == "scratch,demo,eps++,1,configured,33.0,0.2,0.1,0.2,0.4,0.5,0.6,70"
    assert lines[4] == "scratch,demo,eps,1,val_chosen,22.0,0.35,,,,,,"


def test_readings_markdown_gives_ird_health_and_collapse_steps_to_the_ird_arms_only() -> None:
    last = {
        "inconsistent_salient": 0.1,
        "inconsistent_background": 0.2,
        "fg_salient": 0.3,
        "threshold_map_salient": 0.4,
        "threshold_map_background": 0.5,
    }
    scores = {
        Training("scratch", "eps", "demo", 0): _score(40.0, 1.0, ird=None),
        Training("scratch", "eps", "demo", 1): _score(42.0, 1.0, ird=None),
        Training("scratch", "eps++", "demo", 0): _score(50.0, 1.1, ird={"last_steps": last}, collapse_step=None),
        Training("scratch", "eps++", "demo", 1): _score(
            50.0, 1.1, ird={"last_steps": {k: v + 0.02 for k, v in last.items()}}, collapse_step=120
        ),
    }
    rows = reading_rows(list(scores), scores)
    text = readings_markdown(rows, [], ["scratch"], ["eps", "eps++"], [0, 1])
    # eps: 40, 42 -> 41.0 ± 12.706 (t(0.975, 1) x sd sqrt(2) / sqrt(2)); eps++ 50, 50 and 55, 55
    assert "| eps | 41.0 ± 12.7 | 41.0 ± 12.7 |  |  |  |  |  |  |" in text
    assert (
        "| eps++ | 50.0 ± 0.0 | 55.0 ± 0.0 | 0.11 ± 0.13 | 0.21 ± 0.13 | 0.31 ± 0.13 | 0.41 ± 0.13 | 0.51 ± 0.13 "
        "| -, 120 |" in text
    )
    assert "## scratch: stages 1 and 3 from random weights (configs/demo/scratch)" in text


def test_fraction_claims_pair_each_setting_with_its_baseline_per_fraction() -> None:
    settings = {"labeled_only": 10.0, "ssss": 30.0, "ssss_eps": 25.0, "wsss": 21.0, "wsss_eps": 15.0}
    rows = [  # SSSS on EPS++'s masks: 100 points more at fraction 0.1
        {
            "regime": "pretrained",
            "fraction": f,
            "setting": name,
            "seed": s,
            "miou": base + (s + 100 * (f == 0.1)) * (name == "ssss"),
        }
        for f in (0.02, 0.1)
        for s in (0, 1)
        for name, base in settings.items()
    ]
    scores = {
        Training("pretrained", "eps++", "clean", s): _score(50.0, 1.0, collapse_step=3 if s else None) for s in (0, 1)
    }
    claims = fraction_claims(rows, scores, ["pretrained"], [0.02, 0.1], [0, 1])
    assert [c.name for c in claims[:4]] == [
        "SSSS (EPS++ masks) > labelled-only, fraction 0.02",
        "SSSS (EPS masks) > labelled-only, fraction 0.02",
        "SSSS (EPS++ masks) > WSSS (EPS++ masks), fraction 0.02",
        "SSSS (EPS masks) > WSSS (EPS masks), fraction 0.02",
    ]
    assert claims[4].name == "SSSS (EPS++ masks) > labelled-only, fraction 0.1" and len(claims) == 8
    assert claims[4].difference.values == (120.0, 121.0) and claims[5].difference.values == (15.0, 15.0)
    assert [c.difference.values for c in claims[:4]] == [(20.0, 21.0), (15.0, 15.0), (9.0, 10.0), (10.0, 10.0)]
    collapse = "eps++ collapsed on 1/2 seeds at clean"
    assert [c.note for c in claims[:4]] == [collapse, "", collapse, ""]
    assert {(c.family, c.regime, c.threshold) for c in claims} == {
        ("labeled-fraction", "pretrained", "val mIoU, last checkpoint")
    }
