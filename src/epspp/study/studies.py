"""The three studies: what each trains, the rows of its CSV, its tables, claims and figure."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Sequence
from pathlib import Path

from epspp.files import write_atomic, write_text
from epspp.study.figures import log_to_wandb, plot_lines, plot_points
from epspp.study.grid import (
    EPS_STEPS,
    ERROR_TYPES,
    SETTINGS,
    Cell,
    Training,
    saliency_grid,
    saliency_name,
    unique_trainings,
)
from epspp.study.runner import (
    TELEMETRY_STEPS,
    Context,
    pretrain_all,
    saliency_variants,
    segmentation,
    segmentation_folder,
    train_all,
)
from epspp.study.stats import CLAIM_COLUMNS, Claim, claims_markdown, correct, mean_text, paired, summarize

#: the two thresholds of every pseudo-mask score: the config's (0.2, EPS's) and the one chosen on val
THRESHOLD_KINDS = ("configured", "val_chosen")
THRESHOLD_TITLES = {"configured": "bg 0.2", "val_chosen": "threshold chosen on val"}
STUDY_COLUMNS = (
    "regime",
    "error_type",
    "rate",
    "method",
    "seed",
    "threshold",
    "miou",
    "inconsistent_salient",
    "bg_threshold",
    "fg_salient",
    "collapse_step",
)
READING_COLUMNS = (
    "regime",
    "saliency",
    "method",
    "seed",
    "threshold",
    "miou",
    "bg_threshold",
    "inconsistent_salient",
    "inconsistent_background",
    "fg_salient",
    "threshold_map_salient",
    "threshold_map_background",
    "collapse_step",
)
FRACTION_COLUMNS = ("regime", "num_classes", "fraction", "setting", "seed", "miou")
REGIME_TITLES = {
    "pretrained": "the papers' regime, stages 1 and 3 fine-tune the seed's stage-0 backbone (configs/demo)",
    "scratch": "stages 1 and 3 from random weights (configs/demo/scratch)",
}
REGIME_FACTORS = (
    "The two regimes differ in more than the start: optimizer (SGD + poly vs Adam), map size (16x16 vs "
    "8x8), input scale (2x vs 1x), stage-1 batch (8 vs 16), warm-ups (none vs 150 steps) and PAMR "
    "dilations; a difference between them is the regime's, not pretraining's alone."
)
ARMS = {
    "eps++/no-pamr": "ablation, not the paper: IRD with M_r = M, no PAMR",
    "eps++/softmax": "EPS++ under the other reading of B(): the summed softmax maps",
    "eps++/floored": "EPS++ under 1-stage-wseg's reading of B(): above a fraction of its class's maximum and a floor",
    "eps/4x-steps": f"EPS at four times its steps (--trainer.max_steps {4 * EPS_STEPS})",
}


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    """Write ``rows`` as CSV with ``columns`` (through a temporary file)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows({k: ("" if row.get(k) is None else row[k]) for k in columns} for row in rows)
    write_atomic(path, lambda tmp: tmp.write_text(text.getvalue(), newline=""))


def score_of(result: dict, threshold: str) -> tuple[float, float]:
    """(train mIoU, the background threshold it was scored at) of ``configured`` or ``val_chosen``."""
    if threshold == "configured":
        return float(result["configured"]), float(result["bg_threshold"])
    return float(result["val_chosen"]), float(result["val_chosen_threshold"])


def collapsed(result: dict) -> bool:
    """Whether the training's IRD collapsed (its scores record a collapse step)."""
    return result.get("collapse_step") is not None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


# ------------------------------------------------------------------------------------------- the claims
class ClaimBuilder:
    """Claims of one study from its trainings' scores: ``value(training, threshold)`` per seed, paired."""

    def __init__(self, scores: dict[Training, dict], seeds: Sequence[int]) -> None:
        self.scores, self.seeds = scores, list(seeds)
        self.claims: list[Claim] = []

    def values(self, regime: str, method: str, saliency: str, threshold: str) -> dict[int, float]:
        """The score of each seed's training at ``threshold`` (CAM: its clean-saliency training)."""
        return {
            s: score_of(self.scores[t], threshold)[0]
            for s in self.seeds
            if (t := Training(regime, method, "clean" if method == "cam" else saliency, s)) in self.scores
        }

    def collapses(self, regime: str, method: str, saliency: str) -> tuple[int, int]:
        """(the seeds whose training of this point collapsed, the seeds trained there)."""
        results = [self.scores[t] for s in self.seeds if (t := Training(regime, method, saliency, s)) in self.scores]
        return sum(collapsed(r) for r in results), len(results)

    def add(
        self,
        name: str,
        regime: str,
        measure: str,
        a: dict[int, float],
        b: dict[int, float],
        direction: int | None,
        collapsing: Sequence[str] = (),
        saliency: str = "clean",
        note: str = "",
    ) -> None:
        """A claim ``a - b`` of the numbers ``measure`` names; its note says on how many seeds each of the methods
        ``collapsing`` collapsed at ``saliency`` (a collapse is that method's result, the verdict stands)."""
        if not a or not b:
            return
        seeds, difference = paired(a, b)
        for method in collapsing:
            broken, trained = self.collapses(regime, method, saliency)
            if broken:
                note = (note + "; " if note else "") + f"{method} collapsed on {broken}/{trained} seeds at {saliency}"
        self.claims.append(Claim(name, regime, measure, difference, seeds, direction, note))


def localization_claims(
    build: ClaimBuilder, regime: str, methods: Sequence[str], reference: str, threshold: str
) -> None:
    """The method-vs-method claims at the reference saliency (``clean``, or the demo's)."""
    v = lambda method: build.values(regime, method, reference, threshold)  # noqa: E731
    measure = THRESHOLD_TITLES[threshold]
    if "cam" in methods:
        if "eps" in methods:
            build.add("saliency fixes co-occurrence: EPS > CAM", regime, measure, v("eps"), v("cam"), 1)
        if "eps++" in methods:
            build.add("EPS++ > CAM", regime, measure, v("eps++"), v("cam"), 1, ["eps++"], reference)
    if "eps" in methods and "eps++" in methods:
        build.add("EPS++ > EPS", regime, measure, v("eps++"), v("eps"), 1, ["eps++"], reference)
    if "eps" in methods and "eps++/softmax" in methods:
        build.add(
            "EPS++ (softmax reading) > EPS",
            regime,
            measure,
            v("eps++/softmax"),
            v("eps"),
            1,
            ["eps++/softmax"],
            reference,
        )
    if "eps++" in methods and "eps++/no-pamr" in methods:
        build.add(
            "PAMR helps IRD: EPS++ > EPS++ without PAMR",
            regime,
            measure,
            v("eps++"),
            v("eps++/no-pamr"),
            1,
            ["eps++"],
            reference,
        )
    if "eps++" in methods and "eps++/softmax" in methods:
        build.add(
            "normalized - softmax reading of B()",
            regime,
            measure,
            v("eps++"),
            v("eps++/softmax"),
            None,
            note="not a claim of the papers",
        )


def degradation(
    build: ClaimBuilder, regime: str, method: str, error_type: str, rate: float, threshold: str
) -> dict[int, float]:
    """Per seed: mIoU with the error minus mIoU with clean saliency (same seed, same images)."""
    erred = build.values(regime, method, saliency_name(error_type, rate), threshold)
    clean = build.values(regime, method, "clean", threshold)
    return {s: erred[s] - clean[s] for s in erred if s in clean}


# ------------------------------------------------------------------------------------- saliency errors
def saliency_rows(cells: Sequence[Cell], scores: dict[Training, dict]) -> list[dict]:
    """The rows of ``study.csv``: per cell and threshold kind, the train mIoU, the threshold, IRD's telemetry over
    the last steps (empty without IRD) and the step its collapse warning fired (empty if it did not)."""
    rows = []
    for cell in cells:
        result = scores[cell.training]
        for threshold in THRESHOLD_KINDS:
            miou, used = score_of(result, threshold)
            rows.append(
                {
                    "regime": cell.regime,
                    "error_type": cell.error_type,
                    "rate": cell.rate,
                    "method": cell.method,
                    "seed": cell.seed,
                    "threshold": threshold,
                    "miou": round(miou, 3),
                    "inconsistent_salient": _round(result.get("inconsistent_salient")),
                    "bg_threshold": used,
                    "fg_salient": _round(result.get("fg_salient")),
                    "collapse_step": result.get("collapse_step"),
                }
            )
    return rows


def saliency_claims(
    scores: dict[Training, dict],
    regimes: Sequence[str],
    error_types: Sequence[str],
    rates: Sequence[float],
    methods: Sequence[str],
    seeds: Sequence[int],
) -> list[Claim]:
    """The claims of the saliency-errors study, per regime, threshold and error type."""
    build = ClaimBuilder(scores, seeds)
    for regime in regimes:
        for threshold in THRESHOLD_KINDS:
            localization_claims(build, regime, methods, "clean", threshold)
            if "eps" not in methods or "eps++" not in methods:
                continue
            for error_type in error_types:
                for rate in (r for r in rates if r):
                    lost = {m: degradation(build, regime, m, error_type, rate, threshold) for m in ("eps++", "eps")}
                    build.add(
                        f"EPS++ loses less than EPS under {error_type.replace('_', ' ')} {rate:g}",
                        regime,
                        THRESHOLD_TITLES[threshold],
                        lost["eps++"],
                        lost["eps"],
                        1,
                        ["eps++"],
                    )
    return correct(build.claims, "saliency-errors")


def saliency_markdown(
    rows: Sequence[dict],
    claims: Sequence[Claim],
    regimes: Sequence[str],
    error_types: Sequence[str],
    rates: Sequence[float],
    methods: Sequence[str],
    seeds: Sequence[int],
) -> str:
    """Tables of pseudo-mask mIoU per regime, error type, rate and method (mean ± half-width of the 95% t interval
    over the seeds) at both thresholds, IRD's telemetry per point, and the claims."""
    stats = summarize(rows, ("regime", "error_type", "rate", "method", "threshold"))
    health = summarize(
        [r for r in rows if r["threshold"] == "configured"],
        ("regime", "error_type", "rate", "method"),
        "inconsistent_salient",
    )
    warned: dict[tuple, int] = {}
    chosen: dict[tuple, list[str]] = {}
    for row in rows:
        key = (row["regime"], row["error_type"], row["rate"], row["method"])
        if row["threshold"] == "configured" and row["collapse_step"] not in ("", None):
            warned[key] = warned.get(key, 0) + 1
        if row["threshold"] == "val_chosen":
            chosen.setdefault(key, []).append(f"{float(row['bg_threshold']):g}")
    ird = [m for m in methods if any(k[3] == m for k in health)]
    lines = [
        "# Saliency-error study",
        "",
        f"Pseudo-mask mIoU (%) on the synthetic train split, mean ± the half-width of its 95% t interval over "
        f"seeds {', '.join(map(str, seeds))} (n = {len(seeds)}). `bg 0.2`: the configured background threshold "
        "(EPS's); `val`: the threshold each run chose on the val split's pseudo-masks (of "
        "0.1-0.8), with train scored at it, the chosen thresholds per seed in brackets. No number here is chosen "
        "on train. IRD telemetry (`N∩S`): the share of salient pixels in IRD's inconsistent region N, mean over the "
        f"last {TELEMETRY_STEPS} training steps (every step; 1 = every salient pixel dropped), and [k/n] the "
        "seeds whose collapse warning fired. " + " ".join(f"`{m}`: {ARMS[m]}." for m in methods if m in ARMS),
        "",
        REGIME_FACTORS,
        "",
    ]
    for regime in regimes:
        lines += [f"## {regime}: {REGIME_TITLES[regime]}", ""]
        for error_type in error_types:
            lines += [
                f"### {regime}: {error_type}",
                "",
                "| rate | "
                + " | ".join(f"{m} (bg 0.2) | {m} (val)" for m in methods)
                + "".join(f" | {m} N∩S" for m in ird)
                + " |",
                "|---|" + "---|" * (2 * len(methods) + len(ird)),
            ]
            for rate in rates:
                values = []
                for method in methods:
                    point = (regime, error_type, float(rate), method)
                    values.append(mean_text(stats[point + ("configured",)]))
                    values.append(mean_text(stats[point + ("val_chosen",)]) + f" ({'/'.join(chosen[point])})")
                values += [
                    mean_text(health[(regime, error_type, float(rate), m)], 2)
                    + f" [{warned.get((regime, error_type, float(rate), m), 0)}/{len(seeds)}]"
                    for m in ird
                ]
                lines.append(f"| {rate:g} | " + " | ".join(values) + " |")
            lines.append("")
    lines += [
        "## Claims",
        "",
        "Paired per-seed differences (same seed, same images): exact sign-flip p, Holm-adjusted over this table's "
        "claims (one family), verdicts by the rules of docs/study.md.",
        "",
        *claims_markdown(claims),
        "",
    ]
    return "\n".join(lines)


def study_saliency_errors(
    ctx: Context,
    regimes: Sequence[str],
    error_types: Sequence[str],
    rates: Sequence[float],
    methods: Sequence[str],
    seeds: Sequence[int],
    parallel: int,
    wandb_log: bool,
) -> list[dict]:
    """The saliency-error grid in each regime; writes ``study.csv``, ``study_claims.csv``, ``study.md``,
    ``study.png``; returns the rows."""
    cells = saliency_grid(regimes, error_types, rates, methods, seeds)
    variants: dict[str, dict[str, float]] = {"clean": {}}
    for error_type in error_types:
        for rate in rates:
            if rate:
                variants[saliency_name(error_type, rate)] = {ERROR_TYPES[error_type]: float(rate)}
    saliency_variants(ctx, variants)
    pretrain_all(ctx, regimes, seeds, parallel)
    scores = train_all(ctx, unique_trainings(cells), parallel)
    rows = saliency_rows(cells, scores)
    claims = saliency_claims(scores, regimes, error_types, rates, methods, seeds)
    write_csv(ctx.out / "study.csv", STUDY_COLUMNS, rows)
    write_csv(ctx.out / "study_claims.csv", CLAIM_COLUMNS, [c.row() for c in claims])
    text = saliency_markdown(rows, claims, regimes, error_types, rates, methods, seeds)
    write_text(ctx.out / "study.md", text + "\n")
    stats = summarize(rows, ("regime", "error_type", "rate", "method", "threshold"))
    broken = {
        (r["regime"], r["error_type"], r["rate"], r["method"]) for r in rows if r["collapse_step"] not in ("", None)
    }

    def lines_of(error_type: str) -> dict:
        return {
            (m, g): (
                [stats[(g, error_type, float(r), m, "val_chosen")].mean for r in rates],
                [stats[(g, error_type, float(r), m, "val_chosen")].half for r in rates],
                [(g, error_type, float(r), m) in broken for r in rates],
            )
            for g in regimes
            for m in methods
        }

    plot_lines(
        ctx.out / "study.png",
        list(error_types),
        [float(r) for r in rates],
        lines_of,
        "error rate",
        lambda e: e.replace("_", " ") + " (threshold chosen on val)",
    )
    if wandb_log:
        log_to_wandb(ctx.out, "study/saliency-errors", STUDY_COLUMNS, rows, ctx.out / "study.png")
    return rows


# ------------------------------------------------------------------------------------------ readings
def reading_rows(trainings: Sequence[Training], scores: dict[Training, dict]) -> list[dict]:
    """The rows of ``readings.csv``: per training and threshold kind, the train mIoU, the threshold and IRD's
    telemetry over the last steps (empty without IRD)."""
    rows = []
    for training in trainings:
        result = scores[training]
        last = (result.get("ird") or {}).get("last_steps", {})
        for threshold in THRESHOLD_KINDS:
            miou, used = score_of(result, threshold)
            rows.append(
                {
                    "regime": training.regime,
                    "saliency": training.saliency,
                    "method": training.method,
                    "seed": training.seed,
                    "threshold": threshold,
                    "miou": round(miou, 3),
                    "bg_threshold": used,
                    **{key: last.get(key) for key in READING_COLUMNS[7:12]},
                    "collapse_step": result.get("collapse_step"),
                }
            )
    return rows


def readings_markdown(
    rows: Sequence[dict], claims: Sequence[Claim], regimes: Sequence[str], methods: Sequence[str], seeds: Sequence[int]
) -> str:
    """Per regime: each arm's pseudo-mask mIoU at both thresholds and IRD's health (mean ± the half-width of the
    95% t interval over the seeds), then the claims."""
    stats = summarize(rows, ("regime", "method", "threshold"))
    health = {
        key: summarize([r for r in rows if r["threshold"] == "configured"], ("regime", "method"), key)
        for key in READING_COLUMNS[7:12]
    }
    warned: dict[tuple, list[str]] = {}
    for row in rows:
        if row["threshold"] == "configured":
            step = row["collapse_step"]
            warned.setdefault((row["regime"], row["method"]), []).append("-" if step in ("", None) else str(step))
    lines = [
        "# EPS++'s readings of B() against CAM and EPS (the demo's saliency)",
        "",
        f"Pseudo-mask mIoU (%) on the synthetic train split, mean ± the half-width of its 95% t interval over "
        f"seeds {', '.join(map(str, seeds))} (n = {len(seeds)}), each seed with its own stage 0; `val` = the "
        "threshold chosen on val. Saliency with the demo's errors (missing class 0.1, missing part 0.2, false "
        "coverage 0.2). IRD telemetry: means over the last "
        f"{TELEMETRY_STEPS} training steps (every step) of the share of salient / other pixels in the dropped "
        "region N, of M_fg on salient pixels, and of the map B() thresholds on salient / other pixels; collapse: "
        "the step each seed's warning fired (- = none). "
        + " ".join(f"`{m}`: {ARMS[m]}." for m in methods if m in ARMS),
        "",
        REGIME_FACTORS,
        "",
    ]
    for regime in regimes:
        lines += [
            f"## {regime}: {REGIME_TITLES[regime]}",
            "",
            "| method | bg 0.2 | val | salient in N | other in N | M_fg on salient | B() map on salient | "
            "B() map on other | collapse (per seed) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for method in methods:
            cells = [mean_text(stats[(regime, method, t)]) for t in THRESHOLD_KINDS]
            ird = [
                mean_text(health[key][(regime, method)], 2) if (regime, method) in health[key] else ""
                for key in READING_COLUMNS[7:12]
            ]
            steps = ", ".join(warned.get((regime, method), [])) if ird[0] else ""
            lines.append(f"| {method} | " + " | ".join(cells + ird + [steps]) + " |")
        lines.append("")
    lines += [
        "## Claims",
        "",
        "Paired per-seed differences (same seed, same images): exact sign-flip p, Holm-adjusted over this table's "
        "claims (one family), verdicts by the rules of docs/study.md.",
        "",
        *claims_markdown(claims),
        "",
    ]
    return "\n".join(lines)


def study_readings(
    ctx: Context, regimes: Sequence[str], methods: Sequence[str], seeds: Sequence[int], parallel: int, wandb_log: bool
) -> list[dict]:
    """CAM, EPS and the EPS++ arms on the demo's saliency in each regime; writes ``readings.csv``,
    ``readings_claims.csv``, ``readings.md``, ``readings.png``."""
    from epspp.data.synthetic import SyntheticConfig

    saliency_variants(
        ctx, {"clean": {}, "demo": {rate: getattr(SyntheticConfig(), rate) for rate in ERROR_TYPES.values()}}
    )
    pretrain_all(ctx, regimes, seeds, parallel)
    trainings = [Training(g, m, "clean" if m == "cam" else "demo", s) for g in regimes for s in seeds for m in methods]
    scores = train_all(ctx, trainings, parallel)
    rows = reading_rows(trainings, scores)
    build = ClaimBuilder(scores, seeds)
    for regime in regimes:
        for threshold in THRESHOLD_KINDS:
            localization_claims(build, regime, methods, "demo", threshold)
    write_csv(ctx.out / "readings.csv", READING_COLUMNS, rows)
    claims = correct(build.claims, "readings")
    write_csv(ctx.out / "readings_claims.csv", CLAIM_COLUMNS, [c.row() for c in claims])
    write_text(ctx.out / "readings.md", readings_markdown(rows, claims, regimes, methods, seeds) + "\n")
    plot_points(
        ctx.out / "readings.png",
        list(regimes),
        list(methods),
        lambda g, m: [
            (float(r["miou"]), r["collapse_step"] not in ("", None))
            for r in rows
            if r["regime"] == g and r["method"] == m and r["threshold"] == "configured"
        ],
        "pseudo-mask mIoU (%), bg 0.2",
        lambda g: f"{g}, demo saliency",
    )
    if wandb_log:
        log_to_wandb(ctx.out, "study/readings", READING_COLUMNS, rows, ctx.out / "readings.png")
    return rows


# ------------------------------------------------------------------------------------ labelled fraction
def fraction_claims(
    rows: Sequence[dict],
    scores: dict[Training, dict],
    regimes: Sequence[str],
    fractions: Sequence[float],
    seeds: Sequence[int],
) -> list[Claim]:
    """SSSS against labelled-only and WSSS per regime and fraction (one Holm family); the claims on EPS++'s
    pseudo-masks note the seeds whose stage 1 collapsed."""
    build = ClaimBuilder(scores, seeds)
    value = {(r["regime"], r["fraction"], r["setting"], r["seed"]): float(r["miou"]) for r in rows}

    def per_seed(regime: str, fraction: float, setting: str) -> dict[int, float]:
        return {s: value[(regime, fraction, setting, s)] for s in seeds if (regime, fraction, setting, s) in value}

    for regime in regimes:
        for fraction in fractions:
            v = lambda setting, g=regime, f=fraction: per_seed(g, f, setting)  # noqa: E731
            for name, a, b, by in (
                ("SSSS (EPS++ masks) > labelled-only", "ssss", "labeled_only", ["eps++"]),
                ("SSSS (EPS masks) > labelled-only", "ssss_eps", "labeled_only", []),
                ("SSSS (EPS++ masks) > WSSS (EPS++ masks)", "ssss", "wsss", ["eps++"]),
                ("SSSS (EPS masks) > WSSS (EPS masks)", "ssss_eps", "wsss_eps", []),
            ):
                build.add(f"{name}, fraction {fraction:g}", regime, "val mIoU, last checkpoint", v(a), v(b), 1, by)
    return correct(build.claims, "labeled-fraction")


def study_labeled_fraction(
    ctx: Context,
    regimes: Sequence[str],
    fractions: Sequence[float],
    seeds: Sequence[int],
    parallel: int,
    wandb_log: bool,
    num_classes: int,
) -> list[dict]:
    """Labelled-only vs SSSS vs WSSS (on EPS++'s and on EPS's pseudo-masks) per fraction in each regime; writes
    ``labeled_fraction.csv``, ``labeled_fraction_claims.csv``, ``.md``, ``.png``."""
    saliency_variants(ctx, {"clean": {}})
    pretrain_all(ctx, regimes, seeds, parallel)
    stage1 = [
        Training(regime, method, "clean", seed) for regime in regimes for seed in seeds for method in ("eps++", "eps")
    ]
    scores = train_all(ctx, stage1, parallel)
    jobs, keys = [], []
    for regime in regimes:
        for seed in seeds:
            masks = {m: Training(regime, m, "clean", seed).folder(ctx.runs) / "pseudo_masks" for m in ("eps++", "eps")}
            plan = [("wsss", None), ("wsss_eps", None)] + [
                (s, f) for f in fractions for s in SETTINGS if not s.startswith("wsss")
            ]
            for setting, fraction in plan:
                folder = segmentation_folder(ctx, regime, setting, seed, fraction)
                pseudo = masks["eps" if setting.endswith("_eps") else "eps++"]
                keys.append((regime, setting, seed, fraction))
                jobs.append(
                    (
                        f"{regime} {folder.parent.name} seed {seed}",
                        folder / "score.json",
                        functools.partial(segmentation, ctx, regime, setting, seed, fraction, pseudo),
                    )
                )
    from epspp.study.runner import run_all

    done = run_all(jobs, parallel)
    by_key = {key: done[name] for key, (name, _, _) in zip(keys, jobs, strict=True)}
    rows = [
        {
            "regime": regime,
            "num_classes": num_classes,
            "fraction": fraction,
            "setting": setting,
            "seed": seed,
            "miou": by_key[(regime, setting, seed, None if setting.startswith("wsss") else fraction)]["miou"],
        }
        for regime in regimes
        for seed in seeds
        for fraction in fractions
        for setting in SETTINGS
    ]
    claims = fraction_claims(rows, scores, regimes, fractions, seeds)
    write_csv(ctx.out / "labeled_fraction.csv", FRACTION_COLUMNS, rows)
    write_csv(ctx.out / "labeled_fraction_claims.csv", CLAIM_COLUMNS, [c.row() for c in claims])
    stats = summarize(rows, ("regime", "fraction", "setting"))
    from epspp.data.io import read_split

    count = len(read_split(ctx.root, "train"))
    lines = [
        "# Labelled-fraction study",
        "",
        f"Segmentation val mIoU (%) of the last checkpoint on the {num_classes}-class synthetic dataset "
        f"`{ctx.root}`, mean ± the half-width of its 95% t interval over seeds {', '.join(map(str, seeds))} "
        f"(n = {len(seeds)}). `ssss` / `wsss`: on the EPS++ pseudo-masks (the paper's pipeline) of an EPS++ fit "
        "at clean saliency; `ssss_eps` / `wsss_eps`: on EPS's. WSSS uses no labelled image (the same run at every "
        "fraction); SSSS mixes the labelled images with the pseudo-masks of the rest; labelled-only trains on the "
        "labelled images alone, for as many steps as SSSS. Labelled images at a fraction f: "
        f"round(f x {count}) of the {count} training images.",
        "",
        REGIME_FACTORS,
        "",
        "Stage 1 (train pseudo-mask mIoU at bg 0.2; collapse: the seeds whose IRD warning fired):",
        "",
    ]
    for regime in regimes:
        for method in ("eps++", "eps"):
            values = [scores[Training(regime, method, "clean", s)] for s in seeds]
            broken = sum(collapsed(v) for v in values)
            stage1_miou = mean_text(summarize([{"miou": v["configured"]} for v in values], ())[()])
            lines.append(
                f"- {regime} {method}: {stage1_miou}"
                + (f"; collapsed {broken}/{len(seeds)}" if method == "eps++" else "")
            )
    lines.append("")
    for regime in regimes:
        lines += [
            f"## {regime}: {REGIME_TITLES[regime]}",
            "",
            "| fraction | " + " | ".join(SETTINGS) + " |",
            "|---|" + "---|" * len(SETTINGS),
        ]
        lines += [
            f"| {fraction:g} | " + " | ".join(mean_text(stats[(regime, fraction, s)]) for s in SETTINGS) + " |"
            for fraction in fractions
        ]
        lines.append("")
    lines += [
        "## Claims",
        "",
        "Exact sign-flip p, Holm-adjusted over this table's claims (one family); verdicts by docs/study.md.",
        "",
        *claims_markdown(claims),
        "",
    ]
    write_text(ctx.out / "labeled_fraction.md", "\n".join(lines) + "\n")
    plot_lines(
        ctx.out / "labeled_fraction.png",
        ["all"],
        [float(f) for f in fractions],
        lambda _: {
            (s, g): (
                [stats[(g, f, s)].mean for f in fractions],
                [stats[(g, f, s)].half for f in fractions],
                [False for _ in fractions],
            )
            for g in regimes
            for s in SETTINGS
        },
        "labelled fraction",
        lambda _: f"segmentation val mIoU, {num_classes} classes",
    )
    if wandb_log:
        log_to_wandb(ctx.out, "study/labeled-fraction", FRACTION_COLUMNS, rows, ctx.out / "labeled_fraction.png")
    return rows
