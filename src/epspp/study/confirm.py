"""``epspp study confirm``: a confirmatory study that runs exactly what a committed plan file lists.

The plan (YAML; docs/study.md, "epspp study confirm") names the data (a fresh synthetic draw), the regime, n >= 6
seeds, the arms (``STUDY_METHODS`` keys), the stage-3 fractions and the claims, in two families (primary,
secondary), each Holm-corrected on its own (``epspp.study.stats``). This module loads and checks the plan, lists
its runs (``--dry-run``), runs them through ``epspp.study.runner`` (resumable) and writes ``confirm.csv``,
``confirm_claims.csv``, ``confirm_segmentation.csv`` (with fractions) and ``confirm.md``.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from epspp.files import write_text
from epspp.study.grid import STUDY_METHODS, Training, has_ird
from epspp.study.runner import (
    DATASET_SALIENCY,
    Context,
    StudyError,
    pretrain_all,
    run_all,
    segmentation,
    segmentation_folder,
    train_all,
)
from epspp.study.stats import ALPHA, CLAIM_COLUMNS, Claim, claims_markdown, correct, mean_text, paired, summarize
from epspp.study.studies import collapsed, write_csv

#: the fewest seeds a plan may have (an exact sign-flip p of 6 seeds reaches 1/64)
MIN_SEEDS = 6
#: the most seeds (the sign-flip test enumerates 2^n assignments)
MAX_SEEDS = 16
FAMILIES = ("primary", "secondary")
#: measures of a claim on stage-1 runs that are read at a threshold (``configured`` or ``val_chosen``)
THRESHOLD_MEASURES = ("miou", "context_confusion")
#: measures of IRD's telemetry (the mean over the last steps; IRD arms only); the error ones need saliency_errors
IRD_MEASURES = ("error_precision", "error_recall", "correct_dropped", "inconsistent_salient")
ERROR_MEASURES = IRD_MEASURES[:3]
MEASURES = (*THRESHOLD_MEASURES, *IRD_MEASURES, "val_miou")
MIOU_MEASURES = ("miou", "val_miou")  # in % (the others are shares in [0, 1])
THRESHOLD_KINDS = ("configured", "val_chosen")
PLAN_KEYS = ("alpha", "data", "regime", "seeds", "overrides", "arms", "fractions", "fraction_arm", "saliency_errors")
REQUIRED = ("data", "regime", "seeds", "arms", "claims")
DATA_KEYS = ("seed", "difficulty", "num_classes", "num_train", "num_val", "image_size")
CLAIM_KEYS = ("name", "a", "b", "measure", "threshold", "direction")
#: seconds one run takes with two running at once on 2 cores (BENCHMARKS.md section 8: stage 0 60-64 s, stage 1 +
#: pseudo-masks 187-205 s in the papers' regime and 100-112 s from scratch, stage 3 fit + validate 87-95 s)
RUN_SECONDS = {"stage 0": 62.0, "pretrained": 195.0, "scratch": 106.0, "stage 3": 90.0}
#: arms that train longer than their config: the factor on their stage-1 time
TRAINING_FACTOR = {"eps/4x-steps": 4.0}
CONFIRM_COLUMNS = (
    "arm",
    "seed",
    "threshold",
    "miou",
    "bg_threshold",
    "context_confusion",
    *IRD_MEASURES,
    "collapse_step",
)
SEGMENTATION_COLUMNS = ("setting", "seed", "miou")


class PlanError(StudyError):
    """The plan file is unreadable or breaks its schema; the message names the file and the key."""


@dataclass(frozen=True)
class PlannedClaim:
    """One claim of the plan: ``a - b`` of ``measure`` (at ``threshold``), in ``direction`` (None: two-sided)."""

    family: str
    name: str
    a: str
    b: str
    measure: str
    threshold: str | None
    direction: int | None


@dataclass(frozen=True)
class Plan:
    """A loaded, checked plan file."""

    path: Path
    alpha: float
    data: dict[str, Any]
    regime: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    arms: tuple[str, ...]
    fractions: tuple[float, ...]
    fraction_arm: str | None
    saliency_errors: bool
    claims: tuple[PlannedClaim, ...]

    @property
    def settings(self) -> tuple[str, ...]:
        """The stage-3 settings: ``wsss`` once, ``labeled_only@F`` and ``ssss@F`` per fraction (none without
        fractions)."""
        if not self.fractions:
            return ()
        return ("wsss", *(f"{s}@{f:g}" for f in self.fractions for s in ("labeled_only", "ssss")))

    def trainings(self) -> list[Training]:
        """The stage-1 trainings, on the dataset's own saliency, per seed and arm."""
        return [Training(self.regime, arm, DATASET_SALIENCY, seed) for seed in self.seeds for arm in self.arms]


def _fail(path: Path, key: str, message: str) -> PlanError:
    return PlanError(f"plan {path}: `{key}`: {message}")


def _integer(path: Path, key: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise _fail(path, key, f"{value!r} is not an integer >= {least}")
    return value


def _number(path: Path, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise _fail(path, key, f"{value!r} is not a number in (0, 1)")
    return float(value)


def _mapping(path: Path, key: str, value: object, allowed: Sequence[str]) -> dict:
    if not isinstance(value, dict):
        raise _fail(path, key, f"expected a mapping, got {type(value).__name__}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise _fail(
            path, f"{key}.{unknown[0]}" if key else str(unknown[0]), f"unknown key (known: {', '.join(allowed)})"
        )
    return value


def _list(path: Path, key: str, value: object) -> list:
    if not isinstance(value, list):
        raise _fail(path, key, f"expected a list, got {type(value).__name__}")
    return value


def load_plan(path: Path) -> Plan:
    """Read and check the plan file ``path``; a :class:`PlanError` naming the file and the key otherwise."""
    try:
        tree = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise PlanError(f"plan {path}: cannot be read as YAML: {str(error).splitlines()[0]}") from error
    tree = _mapping(path, "", tree, (*PLAN_KEYS, "claims"))
    missing = [k for k in REQUIRED if k not in tree]
    if missing:
        raise _fail(path, missing[0], "missing (required: " + ", ".join(REQUIRED) + ")")
    data = _mapping(path, "data", tree["data"], DATA_KEYS)
    if "seed" not in data:
        raise _fail(path, "data.seed", "missing: the synthetic draw's seed (one never used for tuning)")
    least = {"seed": 0, "num_classes": 1, "num_train": 1, "num_val": 1, "image_size": 32}
    for key in least:
        if key in data:
            _integer(path, f"data.{key}", data[key], least[key])
    if "difficulty" in data and data["difficulty"] not in ("easy", "hard"):
        raise _fail(path, "data.difficulty", f"{data['difficulty']!r} is not easy or hard")
    if tree["regime"] not in ("pretrained", "scratch"):
        raise _fail(path, "regime", f"{tree['regime']!r} is not pretrained or scratch")
    seeds = [_integer(path, "seeds", s, 0) for s in _list(path, "seeds", tree["seeds"])]
    if len(set(seeds)) != len(seeds):
        raise _fail(path, "seeds", f"{seeds} repeats a seed")
    if not MIN_SEEDS <= len(seeds) <= MAX_SEEDS:
        raise _fail(path, "seeds", f"{len(seeds)} seeds: a confirmatory plan needs {MIN_SEEDS} to {MAX_SEEDS}")
    arms = _list(path, "arms", tree["arms"])
    for arm in arms:
        if arm not in STUDY_METHODS:
            raise _fail(path, "arms", f"{arm!r} is not an arm of the studies ({', '.join(STUDY_METHODS)})")
    if len(set(arms)) != len(arms) or not arms:
        raise _fail(path, "arms", f"{arms}: name each arm once, at least one")
    overrides = _list(path, "overrides", tree.get("overrides", []))
    if not all(isinstance(o, str) for o in overrides):
        raise _fail(path, "overrides", "expected a list of strings (epspp fit/predict overrides)")
    fractions = [_number(path, "fractions", f) for f in _list(path, "fractions", tree.get("fractions", []))]
    fraction_arm = tree.get("fraction_arm")
    if fractions and fraction_arm not in arms:
        raise _fail(path, "fraction_arm", f"{fraction_arm!r} is not one of the plan's arms (stage 3 needs its masks)")
    if not isinstance(tree.get("saliency_errors", False), bool):
        raise _fail(path, "saliency_errors", f"{tree['saliency_errors']!r} is not true or false")
    plan = Plan(
        path=path,
        alpha=_number(path, "alpha", tree.get("alpha", ALPHA)),
        data=dict(data),
        regime=tree["regime"],
        seeds=tuple(seeds),
        overrides=tuple(overrides),
        arms=tuple(arms),
        fractions=tuple(dict.fromkeys(fractions)),
        fraction_arm=fraction_arm if fractions else None,
        saliency_errors=tree.get("saliency_errors", False),
        claims=(),
    )
    families = _mapping(path, "claims", tree["claims"], FAMILIES)
    claims = [
        _claim(path, plan, family, i, entry)
        for family in FAMILIES
        for i, entry in enumerate(_list(path, f"claims.{family}", families.get(family, [])))
    ]
    if not claims:
        raise _fail(path, "claims", "no claim: a plan tests at least one")
    return replace(plan, claims=tuple(claims))


def _claim(path: Path, plan: Plan, family: str, index: int, entry: object) -> PlannedClaim:
    key = f"claims.{family}[{index}]"
    entry = _mapping(path, key, entry, CLAIM_KEYS)
    for needed in ("name", "a", "b", "measure"):
        if needed not in entry:
            raise _fail(path, f"{key}.{needed}", "missing")
    measure, threshold = entry["measure"], entry.get("threshold")
    if measure not in MEASURES:
        raise _fail(path, f"{key}.measure", f"{measure!r} is not one of {', '.join(MEASURES)}")
    if measure in THRESHOLD_MEASURES and threshold not in THRESHOLD_KINDS:
        raise _fail(path, f"{key}.threshold", f"{threshold!r}: {measure} needs configured or val_chosen")
    if measure not in THRESHOLD_MEASURES and threshold is not None:
        raise _fail(path, f"{key}.threshold", f"{threshold!r}: {measure} has no threshold (leave it out)")
    names = plan.settings if measure == "val_miou" else plan.arms
    for side in ("a", "b"):
        if entry[side] not in names:
            what = "stage-3 settings" if measure == "val_miou" else "arms"
            raise _fail(path, f"{key}.{side}", f"{entry[side]!r} is not one of the plan's {what} ({', '.join(names)})")
        if measure in IRD_MEASURES and not has_ird(entry[side]):
            raise _fail(path, f"{key}.{side}", f"{entry[side]!r} has no IRD: {measure} is IRD's telemetry")
    if measure in ERROR_MEASURES and not plan.saliency_errors:
        raise _fail(path, f"{key}.measure", f"{measure} needs `saliency_errors: true` (the injected-error flags)")
    direction = entry.get("direction")
    if direction not in (1, -1, None) or isinstance(direction, bool):
        raise _fail(path, f"{key}.direction", f"{direction!r} is not 1, -1 or absent (two-sided)")
    return PlannedClaim(family, str(entry["name"]), entry["a"], entry["b"], measure, threshold, direction)


# ------------------------------------------------------------------------------------------- the runs
def stage3_job(setting: str) -> tuple[str, float | None]:
    """(the segmentation setting, its fraction) of a plan's stage-3 setting ``labeled_only@F``, ``ssss@F``,
    ``wsss``."""
    kind, _, fraction = setting.partition("@")
    return kind, float(fraction) if fraction else None


def planned_runs(plan: Plan) -> list[tuple[str, float]]:
    """Every run of the plan, in order, with its estimated seconds (two at once on 2 cores)."""
    runs = [(f"stage 0 seed {s}", RUN_SECONDS["stage 0"]) for s in plan.seeds if plan.regime == "pretrained"]
    runs += [
        (f"stage 1 {t.method} seed {t.seed}", RUN_SECONDS[plan.regime] * TRAINING_FACTOR.get(t.method, 1.0))
        for t in plan.trainings()
    ]
    runs += [(f"stage 3 {setting} seed {s}", RUN_SECONDS["stage 3"]) for s in plan.seeds for setting in plan.settings]
    return runs


def dry_run(plan: Plan, parallel: int) -> str:
    """The runs the plan makes, their count per stage and the estimated wall time."""
    runs = planned_runs(plan)
    counts = {stage: sum(name.startswith(stage) for name, _ in runs) for stage in ("stage 0", "stage 1", "stage 3")}
    minutes = round(sum(seconds for _, seconds in runs) / min(parallel, 2) / 60)
    lines = [f"  {name} (~{seconds:.0f} s)" for name, seconds in runs]
    lines.append(
        f"[confirm] plan {plan.path}: {len(runs)} runs ("
        + ", ".join(f"{stage}: {n}" for stage, n in counts.items())
        + f"), about {minutes // 60} h {minutes % 60} min at --jobs {parallel} on 2 cores (BENCHMARKS.md's "
        "per-run times, two runs at once)"
    )
    return "\n".join(lines)


def generate(ctx: Context, plan: Plan) -> None:
    """The plan's dataset in ``ctx.root`` (generated once; an existing one must have the plan's parameters)."""
    from epspp.data.synthetic import generate_synthetic

    meta = ctx.root / "synthetic.json"
    if not meta.is_file():
        print(f"[study] generating the plan's synthetic dataset in {ctx.root}", flush=True)
        generate_synthetic(ctx.root, **plan.data)
        return
    params = json.loads(meta.read_text())["params"]
    differ = [k for k, v in plan.data.items() if params.get(k) != v]
    if differ:
        raise PlanError(
            f"{ctx.root} holds a synthetic dataset with {differ[0]} {params.get(differ[0])!r}, not the plan's "
            f"{plan.data[differ[0]]!r}: pass another --out"
        )


def segmentation_job(ctx: Context, plan: Plan, setting: str, seed: int) -> tuple[str, Path, functools.partial]:
    """The ``run_all`` job of one stage-3 setting of one seed (on the fraction arm's train pseudo-masks)."""
    kind, fraction = stage3_job(setting)
    pseudo = None
    if kind != "labeled_only":
        pseudo = Training(plan.regime, str(plan.fraction_arm), DATASET_SALIENCY, seed).folder(ctx.runs) / "pseudo_masks"
    folder = segmentation_folder(ctx, plan.regime, kind, seed, fraction)
    return (
        f"stage 3 {setting} seed {seed}",
        folder / "score.json",
        functools.partial(segmentation, ctx, plan.regime, kind, seed, fraction, pseudo),
    )


def run_plan(ctx: Context, plan: Plan, parallel: int) -> tuple[dict[Training, dict], dict[tuple[str, int], dict]]:
    """Every run of the plan (finished ones skipped): the stage-1 scores per training and the stage-3 scores per
    (setting, seed)."""
    generate(ctx, plan)
    pretrain_all(ctx, [plan.regime], plan.seeds, parallel)
    scores = train_all(ctx, plan.trainings(), parallel)
    jobs = [segmentation_job(ctx, plan, setting, seed) for seed in plan.seeds for setting in plan.settings]
    done = run_all(jobs, parallel)
    stage3 = {
        (setting, seed): done[f"stage 3 {setting} seed {seed}"] for seed in plan.seeds for setting in plan.settings
    }
    return scores, stage3


# ------------------------------------------------------------------------------------------- the tables
def measure_value(scores: dict, measure: str, threshold: str | None) -> float | None:
    """One stage-1 run's number of ``measure`` (at ``threshold``); None when the run has none (NaN included)."""
    if measure == "miou":
        value = scores[str(threshold)]
    elif measure == "context_confusion":
        value = scores.get("context_confusion" if threshold == "configured" else "context_confusion_val_chosen")
    else:
        value = ((scores.get("ird") or {}).get("last_steps") or {}).get(measure)
    return None if value is None or math.isnan(float(value)) else float(value)


def plan_claims(plan: Plan, scores: dict[Training, dict], stage3: dict[tuple[str, int], dict]) -> list[Claim]:
    """The plan's claims from the runs' scores, each family Holm-corrected on its own; a note names the seeds
    without a value and the arms that collapsed."""
    claims = []
    for planned in plan.claims:
        values: dict[str, dict[int, float]] = {}
        notes = []
        for side in (planned.a, planned.b):
            if planned.measure == "val_miou":
                found = {s: stage3.get((side, s), {}).get("miou") for s in plan.seeds}
                arm = None if side.startswith("labeled_only") else plan.fraction_arm
            else:
                runs = {s: scores[Training(plan.regime, side, DATASET_SALIENCY, s)] for s in plan.seeds}
                found = {s: measure_value(r, planned.measure, planned.threshold) for s, r in runs.items()}
                arm = side
            values[side] = {s: float(v) for s, v in found.items() if v is not None}
            if len(values[side]) < len(plan.seeds):
                notes.append(f"{side}: no value on {len(plan.seeds) - len(values[side])}/{len(plan.seeds)} seeds")
            if arm is not None:
                broken = sum(collapsed(scores[Training(plan.regime, arm, DATASET_SALIENCY, s)]) for s in plan.seeds)
                if broken:
                    notes.append(f"{arm} collapsed on {broken}/{len(plan.seeds)} seeds")
        seeds, difference = paired(values[planned.a], values[planned.b])
        if not seeds:
            raise StudyError(f"plan {plan.path}: claim {planned.name!r} has no seed with both values")
        measure = planned.measure + (f" ({planned.threshold})" if planned.threshold else "")
        note = "; ".join(dict.fromkeys(notes))
        claims.append(
            Claim(
                planned.name,
                plan.regime,
                measure,
                difference,
                seeds,
                planned.direction,
                note,
                planned.family,
                digits=1 if planned.measure in MIOU_MEASURES else 3,
            )
        )
    return correct(claims)


def confirm_rows(plan: Plan, scores: dict[Training, dict]) -> list[dict]:
    """The rows of ``confirm.csv``: per arm, seed and threshold kind."""
    rows = []
    for training in plan.trainings():
        result = scores[training]
        for threshold in THRESHOLD_KINDS:
            bg = result["bg_threshold"] if threshold == "configured" else result["val_chosen_threshold"]
            rows.append(
                {
                    "arm": training.method,
                    "seed": training.seed,
                    "threshold": threshold,
                    "miou": round(float(result[threshold]), 3),
                    "bg_threshold": bg,
                    "context_confusion": measure_value(result, "context_confusion", threshold),
                    **{key: measure_value(result, key, None) for key in IRD_MEASURES},
                    "collapse_step": result.get("collapse_step"),
                }
            )
    return rows


def plan_commit(path: Path) -> str:
    """The last commit of the plan file (``git log -1 --format=%H -- PLAN``), "not in git" outside a checkout,
    "not committed" for a file git does not hold."""
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", path.name],
            cwd=path.resolve().parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "not in git"
    if done.returncode != 0:
        return "not in git"
    return done.stdout.strip() or "not committed"


def confirm_markdown(
    plan: Plan, rows: Sequence[dict], claims: Sequence[Claim], stage3: dict[tuple[str, int], dict]
) -> str:
    """``confirm.md``: the primary claims first, the secondary ones, the per-arm table and stage 3."""
    n = len(plan.seeds)
    data = ", ".join(f"{k} {v}" for k, v in plan.data.items())
    lines = [
        "# Confirmatory study",
        "",
        f"Plan `{plan.path}`, commit {plan_commit(plan.path)}. Data: a synthetic draw ({data}), its own saliency "
        f"maps; the {plan.regime} regime; seeds {', '.join(map(str, plan.seeds))} (n = {n}). Each claim: the paired "
        "per-seed difference a - b, its mean with the 95% t interval (unadjusted), the exact sign-flip p (one-sided "
        "in the claimed direction, two-sided without one) and the p Holm-adjusted within its family (primary, "
        f"secondary); verdicts at alpha {plan.alpha:g} by the rules of docs/study.md.",
        "",
    ]
    for family in FAMILIES:
        members = [c for c in claims if c.family == family]
        if members:
            lines += [f"## {family.capitalize()} endpoints", "", *claims_markdown(members), ""]
    stats = {
        key: summarize([{**r, "value": r[key]} for r in rows], ("arm", "threshold"), "value")
        for key in ("miou", "context_confusion", *IRD_MEASURES)
    }

    def cell(key: str, arm: str, threshold: str = "configured", digits: int = 1) -> str:
        estimate = stats[key].get((arm, threshold))
        return "" if estimate is None else mean_text(estimate, digits)

    lines += [
        "## Arms",
        "",
        f"Mean ± the half-width of the 95% t interval over the {n} seeds: train pseudo-mask mIoU (%) at the "
        "configured threshold and at the one chosen on val; context confusion (the share of context pixels labelled "
        "as their object) at both; IRD's N against the injected errors over the last steps (precision, recall, the "
        "share of correct salient pixels dropped) and the salient share in N; collapses: the seeds whose IRD "
        "warning fired.",
        "",
        "| arm | mIoU (configured) | mIoU (val) | context confusion (configured) | context confusion (val) | "
        "N precision | N recall | correct dropped | salient in N | collapses |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in plan.arms:
        broken = sum(
            r["arm"] == arm and r["threshold"] == "configured" and r["collapse_step"] is not None for r in rows
        )
        cells = [
            cell("miou", arm),
            cell("miou", arm, "val_chosen"),
            cell("context_confusion", arm, digits=3),
            cell("context_confusion", arm, "val_chosen", 3),
            *(cell(key, arm, digits=3) for key in IRD_MEASURES),
            f"{broken}/{n}" if has_ird(arm) else "",
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines.append("")
    if plan.settings:
        seg = summarize([{"setting": k[0], "miou": v["miou"]} for k, v in stage3.items()], ("setting",))
        lines += [
            "## Stage 3",
            "",
            f"Segmentation val mIoU (%) at the last checkpoint, on {plan.fraction_arm}'s train pseudo-masks (ssss, "
            "wsss) and on the labelled images alone (labeled_only), per fraction of labelled images.",
            "",
            "| setting | val mIoU |",
            "|---|---|",
            *(f"| {s} | {mean_text(seg[(s,)])} |" for s in plan.settings),
            "",
        ]
    return "\n".join(lines)


def write_outputs(
    ctx: Context, plan: Plan, scores: dict[Training, dict], stage3: dict[tuple[str, int], dict]
) -> list[Path]:
    """Write the study's tables into ``ctx.out``; the paths written."""
    rows = confirm_rows(plan, scores)
    claims = plan_claims(plan, scores, stage3)
    written = [ctx.out / "confirm.csv", ctx.out / "confirm_claims.csv", ctx.out / "confirm.md"]
    write_csv(written[0], CONFIRM_COLUMNS, rows)
    write_csv(written[1], CLAIM_COLUMNS, [c.row() for c in claims])
    if plan.settings:
        written.append(ctx.out / "confirm_segmentation.csv")
        write_csv(written[-1], SEGMENTATION_COLUMNS, [{"setting": k[0], "seed": k[1], **v} for k, v in stage3.items()])
    write_text(written[2], confirm_markdown(plan, rows, claims, stage3) + "\n")
    return written


def confirm(ctx: Context, plan: Plan, parallel: int) -> list[Path]:
    """Run the plan and write its tables; the paths written."""
    scores, stage3 = run_plan(ctx, plan, parallel)
    return write_outputs(ctx, plan, scores, stage3)
