"""``epspp study confirm``: the plan loader and its refusals, the claims from hand-made scores of 6 seeds (Holm per
family), the tables, and ``--dry-run``'s count (no training)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from fixtures.cli import clean_error, in_process, ok

from epspp.study.confirm import (
    PlanError,
    confirm_rows,
    dry_run,
    generate,
    load_plan,
    measure_value,
    plan_claims,
    plan_commit,
    planned_runs,
    segmentation_job,
    write_outputs,
)
from epspp.study.grid import Training
from epspp.study.runner import Context

EXAMPLE = Path(__file__).parent / "confirm_plan.yaml"
SEEDS = range(6)


def test_a_good_plan_loads() -> None:
    plan = load_plan(EXAMPLE)
    assert plan.seeds == (0, 1, 2, 3, 4, 5) and plan.arms == ("cam", "eps", "eps++", "eps++/softmax")
    assert plan.settings == ("wsss", "labeled_only@0.02", "ssss@0.02", "labeled_only@0.14", "ssss@0.14")
    assert [(c.family, c.measure, c.threshold, c.direction) for c in plan.claims] == [
        ("primary", "miou", "val_chosen", 1),
        ("primary", "context_confusion", "configured", -1),
        ("secondary", "error_precision", None, None),
        ("secondary", "val_miou", None, 1),
    ]
    assert plan.data == {"seed": 7, "num_classes": 5, "num_train": 12, "num_val": 4, "image_size": 32}
    assert plan.saliency_errors and plan.fraction_arm == "eps++" and plan.alpha == 0.05


def edited(tmp_path: Path, change: dict) -> Path:
    tree = yaml.safe_load(EXAMPLE.read_text())
    for key, value in change.items():
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "`colour`: unknown key"),
        ({"data.size": 3}, "`data.size`: unknown key"),
        ({"claims.primary.0.p": 0.1}, "`claims.primary[0].p`: unknown key"),
        ({"seeds": [0, 1, 2, 3, 4]}, "`seeds`: 5 seeds: a confirmatory plan needs 6 to 16"),
        ({"seeds": [0, 1, 2, 3, 4, 4]}, "`seeds`: [0, 1, 2, 3, 4, 4] repeats a seed"),
        ({"arms": ["cam", "eps", "eps++", "eps+++"]}, "`arms`: 'eps+++' is not an arm of the studies"),
        (
            {"claims.primary.1.b": "eps++/no-pamr"},
            "`claims.primary[1].b`: 'eps++/no-pamr' is not one of the plan's arms",
        ),
        ({"claims.primary.0.measure": "accuracy"}, "`claims.primary[0].measure`: 'accuracy' is not one of"),
        ({"claims.primary.0.threshold": "oracle"}, "`claims.primary[0].threshold`: 'oracle': miou needs configured"),
        ({"claims.primary.0.threshold": None}, "`claims.primary[0].threshold`: None: miou needs configured"),
        ({"claims.secondary.0.threshold": "configured"}, "error_precision has no threshold"),
        ({"claims.secondary.0.b": "eps"}, "`claims.secondary[0].b`: 'eps' has no IRD"),
        ({"saliency_errors": False}, "error_precision needs `saliency_errors: true`"),
        ({"claims.secondary.1.a": "ssss@0.5"}, "`claims.secondary[1].a`: 'ssss@0.5' is not one of the plan's stage-3"),
        ({"claims.primary.0.direction": 2}, "`claims.primary[0].direction`: 2 is not 1, -1"),
        ({"fraction_arm": "eps++/no-pamr"}, "`fraction_arm`: 'eps++/no-pamr' is not one of the plan's arms"),
        ({"data.seed": None}, "`data.seed`: missing"),
        ({"alpha": 1.5}, "`alpha`: 1.5 is not a number in (0, 1)"),
    ],
)
def test_each_refusal_names_the_file_and_the_key(tmp_path: Path, change: dict, message: str) -> None:
    path = edited(tmp_path, change)
    with pytest.raises(PlanError) as error:
        load_plan(path)
    assert str(error.value).startswith(f"plan {path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_plan_ranges_at_their_ends(tmp_path: Path) -> None:
    """alpha in the open (0, 1); 6 to 16 seeds, both ends included (boundary sweep)."""
    for alpha in (0, 1):
        with pytest.raises(PlanError, match=rf"`alpha`: {alpha} is not a number in \(0, 1\)"):
            load_plan(edited(tmp_path, {"alpha": alpha}))
    assert load_plan(edited(tmp_path, {"alpha": 0.999})).alpha == 0.999
    assert load_plan(edited(tmp_path, {"seeds": list(range(16))})).seeds == tuple(range(16))
    with pytest.raises(PlanError, match="`seeds`: 17 seeds: a confirmatory plan needs 6 to 16"):
        load_plan(edited(tmp_path, {"seeds": list(range(17))}))


def hand_made() -> tuple[dict[Training, dict], dict[tuple[str, int], dict]]:
    """Scores of the example plan's runs for seeds 0-5, with the keys of the other engineers (context confusion,
    N against the injected errors)."""
    scores = {}
    for s in SEEDS:
        per_arm = {
            # val-chosen mIoU: EPS++ - EPS = 5 + s > 0 on all 6 seeds
            "eps": (40.0 + s, 0.30, 0.5),
            "eps++": (45.0 + 2 * s, 0.25, 0.5),
            # context confusion: EPS - CAM = 0.1 - 0.01 s > 0 on all 6 seeds, against the claimed -1
            "cam": (30.0, 0.20 + 0.01 * s, None),
            # N's precision: EPS++ - softmax = -0.1, 0.1, -0.2, 0.2, 0 (sum 0), none on seed 5
            "eps++/softmax": (20.0, 0.25, 0.5 + (0.1, -0.1, 0.2, -0.2, 0.0, math.nan)[s]),
        }
        for arm, (miou, confusion, precision) in per_arm.items():
            scores[Training("pretrained", arm, "dataset", s)] = {
                "configured": miou - 1,
                "bg_threshold": 0.2,
                "val_chosen": miou,
                "val_chosen_threshold": 0.4,
                "context_confusion": confusion,
                "context_confusion_val_chosen": confusion / 2,
                "collapse_step": 90 if arm == "eps++/softmax" and s < 2 else None,
                "ird": None
                if precision is None
                else {"last_steps": {"error_precision": precision, "error_recall": 0.5, "inconsistent_salient": 0.4}},
            }
    # SSSS - labelled-only at 2%: -1, 2, 3, 4, 5, 6: p = 2/64 alone, 4/64 after Holm over the 2 secondary claims
    stage3 = {}
    for s in SEEDS:
        stage3[("labeled_only@0.02", s)] = {"miou": 50.0}
        stage3[("ssss@0.02", s)] = {"miou": 50.0 + (-1.0, 2.0, 3.0, 4.0, 5.0, 6.0)[s]}
        for setting in ("wsss", "labeled_only@0.14", "ssss@0.14"):
            stage3[(setting, s)] = {"miou": 60.0 + s}
    return scores, stage3


def test_claims_from_hand_made_scores_of_six_seeds() -> None:
    scores, stage3 = hand_made()
    claims = {c.name: c for c in plan_claims(load_plan(EXAMPLE), scores, stage3)}
    holding = claims["EPS++ > EPS"]  # all 6 positive: p 1/64, Holm x 2 (primary) = 1/32
    assert holding.difference.values == (5.0, 6.0, 7.0, 8.0, 9.0, 10.0) and holding.threshold == "miou (val_chosen)"
    assert (holding.p, holding.p_holm, holding.verdict, holding.family) == (1 / 64, 1 / 32, "holds", "primary")
    contradicted = claims["EPS confuses less context than CAM"]  # opposite p 1/64, x 2 = 1/32
    assert contradicted.difference.values == pytest.approx([0.1, 0.09, 0.08, 0.07, 0.06, 0.05])
    assert (contradicted.p, contradicted.p_holm_opposite, contradicted.verdict) == (1.0, 1 / 32, "contradicted")
    flat = claims["N finds the errors better under the normalized reading"]  # two-sided, sum 0: p = 1
    assert flat.seeds == (0, 1, 2, 3, 4) and (flat.p, flat.verdict) == (1.0, "not significant")
    assert flat.note == "eps++/softmax: no value on 1/6 seeds; eps++/softmax collapsed on 2/6 seeds"
    holm_changed = claims["SSSS > labelled-only at 2%"]  # p 2/64 <= 0.05 alone; Holm x 2 = 4/64 > 0.05
    assert holm_changed.p == 2 / 64 and holm_changed.p_holm == 4 / 64 and holm_changed.verdict == "not significant"


def test_the_tables(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(EXAMPLE.read_text())
    scores, stage3 = hand_made()
    ctx = Context(tmp_path / "out", tmp_path / "out" / "data", tmp_path, [], {})
    (tmp_path / "out").mkdir()
    written = write_outputs(ctx, load_plan(plan_file), scores, stage3)
    assert [p.name for p in written] == ["confirm.csv", "confirm_claims.csv", "confirm.md", "confirm_segmentation.csv"]
    rows = (tmp_path / "out" / "confirm.csv").read_text().splitlines()
    assert rows[0] == (
        "arm,seed,threshold,miou,bg_threshold,context_confusion,error_precision,error_recall,correct_dropped,"
        "inconsistent_salient,collapse_step"
    )
    assert len(rows) == 1 + 4 * 6 * 2 and "eps++/softmax,0,val_chosen,20.0,0.4,0.125,0.6,0.5,,0.4,90" in rows
    text = (tmp_path / "out" / "confirm.md").read_text()
    assert text.index("## Primary endpoints") < text.index("## Secondary endpoints") < text.index("## Arms")
    assert f"Plan `{plan_file}`, commit not in git." in text
    assert "| eps++/softmax | 19.0 ± 0.0 | 20.0 ± 0.0 | 0.250 ± 0.000 | 0.125 ± 0.000 |" in text
    assert "| 0.400 ± 0.000 | 2/6 |" in text
    # a difference of mIoU in points with 1 decimal, of a share in [0, 1] with 3: sd 0.01 x sqrt(3.5) = 0.0187,
    # half 2.5706 x 0.0187 / sqrt(6) = 0.0196 (x 100 for the mIoU, 5..10)
    assert "| 6 | +7.5 [+5.5, +9.5] | +5.0, +6.0, +7.0, +8.0, +9.0, +10.0 |" in text
    assert "| 6 | +0.075 [+0.055, +0.095] | +0.100, +0.090, +0.080, +0.070, +0.060, +0.050 |" in text
    # mean 50 + 19/6; sd sqrt(30.83 / 5) = 2.483, t(0.975, 5) = 2.5706 -> half 2.5706 x 2.483 / sqrt(6) = 2.61
    assert "| ssss@0.02 | 53.2 ± 2.6 |" in text
    assert re.fullmatch("[0-9a-f]{40}", plan_commit(EXAMPLE))  # the example plan is committed


def test_dry_run_prints_the_runs_and_their_count(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    result = ok(in_process(capfd, "study", "confirm", "--plan", EXAMPLE, "--out", out, "--dry-run"))
    # 6 seeds: stage 0 each, 4 arms x 6 stage-1 runs, 5 stage-3 settings x 6; 6 x 62 + 24 x 195 + 30 x 90 s over 2
    assert "60 runs (stage 0: 6, stage 1: 24, stage 3: 30), about 1 h 5 min at --jobs 2" in result.stdout
    assert "  stage 1 eps++/softmax seed 5 (~195 s)" in result.stdout and not out.exists()
    bad = clean_error(
        in_process(capfd, "study", "confirm", "--plan", edited(tmp_path, {"seeds": [0]}), "--out", out, "--dry-run"),
        "`seeds`: 1 seeds",
    )
    assert bad.startswith("epspp study: error: plan ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"regime": "both"}, "`regime`: 'both' is not pretrained or scratch"),
        ({"data.difficulty": "medium"}, "`data.difficulty`: 'medium' is not easy or hard"),
        ({"data.image_size": 31}, "`data.image_size`: 31 is not an integer >= 32"),
        ({"data.num_classes": 0}, "`data.num_classes`: 0 is not an integer >= 1"),
        ({"seeds": [True, 1, 2, 3, 4, 5]}, "`seeds`: True is not an integer >= 0"),
        ({"saliency_errors": "yes"}, "`saliency_errors`: 'yes' is not true or false"),
        ({"overrides": ["--trainer.max_steps", 4]}, "`overrides`: expected a list of strings"),
        ({"arms": ["cam", "eps", "eps++", "eps++/softmax", "eps"]}, "'eps']: name each arm once, at least one"),
        ({"claims.primary.0.a": None}, "`claims.primary[0].a`: missing"),
        ({"claims": {"primary": [], "secondary": []}}, "`claims`: no claim"),
    ],
)
def test_each_other_field_is_checked_on_its_own(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(PlanError) as error:
        load_plan(edited(tmp_path, change))
    assert message in str(error.value)


def test_the_data_fields_at_their_least_values_and_a_hard_draw(tmp_path: Path) -> None:
    data = {"seed": 0, "difficulty": "hard", "num_classes": 1, "num_train": 1, "num_val": 1, "image_size": 32}
    assert load_plan(edited(tmp_path, {"data": data})).data == data


def test_a_plan_without_fractions_has_no_stage_3_even_with_a_fraction_arm(tmp_path: Path) -> None:
    plan = load_plan(
        edited(
            tmp_path,
            {"fractions": None, "claims.secondary": yaml.safe_load(EXAMPLE.read_text())["claims"]["secondary"][:1]},
        )
    )
    assert plan.settings == () and plan.fraction_arm is None
    scores, _ = hand_made()
    ctx = Context(tmp_path / "out", tmp_path / "out" / "data", tmp_path, [], {})
    (tmp_path / "out").mkdir()
    written = write_outputs(ctx, plan, scores, {})
    assert [p.name for p in written] == ["confirm.csv", "confirm_claims.csv", "confirm.md"]
    assert "## Stage 3" not in written[2].read_text()
    assert not (tmp_path / "out" / "confirm_segmentation.csv").exists()


@pytest.mark.parametrize(("parallel", "time"), [(1, "2 h 10 min at --jobs 1"), (3, "1 h 5 min at --jobs 3")])
def test_a_scratch_plan_has_no_stage_0_and_the_4x_arm_four_times_the_time(
    tmp_path: Path, parallel: int, time: str
) -> None:
    plan = load_plan(
        edited(tmp_path, {"regime": "scratch", "arms": ["cam", "eps", "eps++", "eps++/softmax", "eps/4x-steps"]})
    )
    runs = dict(planned_runs(plan))
    assert not [name for name in runs if name.startswith("stage 0")]
    assert runs["stage 1 eps seed 5"] == 106.0 and runs["stage 1 eps/4x-steps seed 5"] == 4 * 106.0
    assert runs["stage 3 ssss@0.14 seed 0"] == 90.0
    # 6 x (4 x 106 + 424) + 30 x 90 = 7788 s: 130 min on one run at a time, 65 on two (2 cores: never more)
    assert f"60 runs (stage 0: 0, stage 1: 30, stage 3: 30), about {time}" in dry_run(plan, parallel)


def test_measure_value_reads_each_measure_at_each_threshold() -> None:
    scores = {
        "configured": 10.0,
        "val_chosen": 20.0,
        "context_confusion": 0.1,
        "context_confusion_val_chosen": 0.05,
        "ird": {"last_steps": {"error_recall": 0.7, "inconsistent_salient": math.nan}},
    }
    assert [measure_value(scores, "miou", t) for t in ("configured", "val_chosen")] == [10.0, 20.0]
    assert [measure_value(scores, "context_confusion", t) for t in ("configured", "val_chosen")] == [0.1, 0.05]
    assert measure_value(scores, "error_recall", None) == 0.7
    assert measure_value(scores, "inconsistent_salient", None) is None  # NaN: no value
    assert measure_value(scores, "correct_dropped", None) is None  # not recorded
    assert measure_value({**scores, "ird": None}, "error_recall", None) is None  # an arm without IRD


def test_the_configured_row_is_scored_at_the_configured_threshold() -> None:
    scores, _ = hand_made()
    rows = confirm_rows(load_plan(EXAMPLE), scores)
    assert rows[0] == {  # cam, seed 0 (the first seed's arms in the plan's order: cam, eps, ...): no IRD
        "arm": "cam",
        "seed": 0,
        "threshold": "configured",
        "miou": 29.0,
        "bg_threshold": 0.2,
        "context_confusion": 0.2,
        "error_precision": None,
        "error_recall": None,
        "correct_dropped": None,
        "inconsistent_salient": None,
        "collapse_step": None,
    }


def test_an_existing_dataset_must_be_the_plans_draw(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plan = load_plan(EXAMPLE)
    ctx = Context(tmp_path / "out", tmp_path / "data", tmp_path, [], {})
    ctx.root.mkdir()
    (ctx.root / "synthetic.json").write_text(json.dumps({"params": {**plan.data, "difficulty": "easy"}}))
    generate(ctx, plan)  # the plan's values (and one it does not set): used as it is
    assert capsys.readouterr().out == ""
    (ctx.root / "synthetic.json").write_text(json.dumps({"params": {**plan.data, "num_val": 8}}))
    with pytest.raises(PlanError, match=f"^{re.escape(str(ctx.root))} holds a synthetic dataset with num_val 8, not"):
        generate(ctx, plan)


@pytest.mark.parametrize(
    ("setting", "kind", "fraction", "folder"),
    [
        ("ssss@0.14", "ssss", 0.14, "ssss_0.14"),
        ("labeled_only@0.02", "labeled_only", 0.02, "labeled_only_0.02"),
        ("wsss", "wsss", None, "wsss"),
    ],
)
def test_a_stage_3_job_trains_on_the_fraction_arms_masks_of_its_seed(
    tmp_path: Path, setting: str, kind: str, fraction: float | None, folder: str
) -> None:
    plan = load_plan(EXAMPLE)
    ctx = Context(tmp_path / "out", tmp_path / "data", tmp_path, [], {})
    name, result, job = segmentation_job(ctx, plan, setting, 3)
    runs = tmp_path / "out" / "runs" / "data" / "pretrained"
    masks = None if kind == "labeled_only" else runs / "eps++" / "dataset" / "seed3" / "pseudo_masks"
    assert name == f"stage 3 {setting} seed 3" and result == runs / "segmentation" / folder / "seed3" / "score.json"
    assert job.args == (ctx, "pretrained", kind, 3, fraction, masks)
