"""``epspp study confirm``: the plan loader and its refusals, the claims from hand-made scores of 6 seeds (Holm per
family), the tables, and ``--dry-run``'s count (no training)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from fixtures.cli import clean_error, in_process, ok

from epspp.study.confirm import PlanError, load_plan, plan_claims, plan_commit, write_outputs
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
