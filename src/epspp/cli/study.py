"""``epspp study saliency-errors|labeled-fraction|readings [options] [-- fit overrides]`` and ``epspp study confirm
--plan PLAN.yaml --out DIR``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from epspp.cli.argtypes import class_count, count, image_side, processes, seed, unit_interval
from epspp.demo import REGIMES, demo_configs
from epspp.errors import EPSError
from epspp.runs.ownership import claim_folder, holds_stage_marker
from epspp.study.grid import DEFAULT_GRID, DEFAULT_METHODS, ERROR_TYPES, FULL_GRID, READING_METHODS, STUDY_METHODS
from epspp.study.runner import Context, StudyError, prepare
from epspp.study.studies import study_labeled_fraction, study_readings, study_saliency_errors

DESCRIPTION = (
    "Controlled studies on the synthetic dataset: saliency-errors (CAM / EPS / EPS++ against saliency "
    "errors), labeled-fraction (labelled-only vs SSSS vs WSSS) and readings (EPS++'s two readings of IRD's "
    "B() and the no-PAMR ablation against CAM and EPS, on the demo's saliency); confirm runs a committed plan "
    "file (a confirmatory study: n >= 6 seeds, sign-flip p, Holm's correction)."
)
OUTPUTS = {
    "saliency-errors": ("study.csv", "study_claims.csv", "study.md", "study.png"),
    "labeled-fraction": (
        "labeled_fraction.csv",
        "labeled_fraction_claims.csv",
        "labeled_fraction.md",
        "labeled_fraction.png",
    ),
    "readings": ("readings.csv", "readings_claims.csv", "readings.md", "readings.png"),
}
#: what every study fit and predict gets: the fits skip validation (the study scores the pseudo-masks, or the last
#: checkpoint with `epspp validate`); the overrides of the command line (or the plan) go between
QUIET_FIRST = ["--trainer.limit_val_batches", "0"]
QUIET_LAST = ["--trainer.enable_progress_bar", "false", "--data.num_workers", "0"]


def parser() -> argparse.ArgumentParser:
    """The parser of ``epspp study`` and its three studies (saliency-errors, labeled-fraction, readings)."""
    parser = argparse.ArgumentParser(prog="epspp study", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="study", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("runs/study"), help="study folder (default runs/study)")
    common.add_argument(
        "--root", type=Path, default=None, help="synthetic dataset (default OUT/data_<K>classes, generated)"
    )
    common.add_argument(
        "--regimes",
        nargs="+",
        choices=REGIMES,
        default=None,
        help="scratch: stages 1 and 3 from random weights; pretrained (the papers'): from the "
        "seed's stage-0 backbone (default: both; labeled-fraction: pretrained, both with "
        "--full-grid)",
    )
    common.add_argument(
        "--configs",
        type=Path,
        default=None,
        help="the demo's stage configs (default configs/demo of the repository; the scratch regime "
        "reads its scratch/ subfolder)",
    )
    common.add_argument(
        "--seeds",
        type=seed,
        nargs="+",
        default=None,
        help=f"default {' '.join(map(str, DEFAULT_GRID['seeds']))} (--full-grid: "
        f"{' '.join(map(str, FULL_GRID['seeds']))}); each seed has its own stage 0",
    )
    common.add_argument(
        "--full-grid",
        action="store_true",
        help="the full grid (more rates, fractions and seeds; many hours on 2 cores) instead of the "
        "default one that make study runs within 120 minutes",
    )
    common.add_argument("--jobs", type=processes, default=2, help="runs in parallel, one CPU thread each (default 2)")
    common.add_argument("--num-train", type=count, default=None, help="train images of a generated dataset (1000)")
    common.add_argument("--num-val", type=count, default=None, help="val images of a generated dataset (200)")
    common.add_argument("--image-size", type=image_side, default=None, help="image side of a generated dataset (64)")
    common.add_argument("--no-wandb", action="store_true", help="do not log the tables and figures to W&B")
    common.add_argument(
        "overrides",
        nargs="*",
        help="extra `epspp fit` overrides of every fit, stage 0 included (after --), e.g. --trainer.max_steps=300",
    )
    errors = sub.add_parser("saliency-errors", parents=[common], help="CAM / EPS / EPS++ against saliency errors")
    errors.add_argument("--num-classes", type=class_count, default=5, help="object classes of the dataset (default 5)")
    errors.add_argument("--error-types", nargs="+", default=list(ERROR_TYPES), choices=list(ERROR_TYPES))
    errors.add_argument(
        "--rates",
        type=unit_interval,
        nargs="+",
        default=None,
        help=f"in [0, 1], 0 included; default {' '.join(f'{r:g}' for r in DEFAULT_GRID['rates'])} "
        f"(--full-grid: {' '.join(f'{r:g}' for r in FULL_GRID['rates'])})",
    )
    errors.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        choices=list(STUDY_METHODS),
        help="default cam eps eps++; eps++/no-pamr is an ablation, not the paper (IRD with M_r = M, "
        "no PAMR); eps++/softmax and eps++/floored are EPS++ under the other readings of B(); eps/4x-steps is EPS "
        "at four times its steps",
    )
    fraction = sub.add_parser("labeled-fraction", parents=[common], help="labelled-only vs SSSS vs WSSS")
    fraction.add_argument(
        "--num-classes",
        type=class_count,
        default=20,
        help="object classes of the dataset (default 20, VOC's count: with 5 classes 2%% of the "
        "images already saturate labelled-only)",
    )
    fraction.add_argument(
        "--fractions",
        type=unit_interval,
        nargs="+",
        default=None,
        help=f"in (0, 1]; default {' '.join(f'{f:g}' for f in DEFAULT_GRID['fractions'])} "
        f"(--full-grid: {' '.join(f'{f:g}' for f in FULL_GRID['fractions'])})",
    )
    readings = sub.add_parser(
        "readings",
        parents=[common],
        help="EPS++ under both readings of B() and without PAMR, against CAM and EPS, on the demo's saliency",
    )
    readings.add_argument(
        "--num-classes", type=class_count, default=5, help="object classes of the dataset (default 5)"
    )
    readings.add_argument(
        "--methods",
        nargs="+",
        default=list(READING_METHODS),
        choices=list(STUDY_METHODS),
        help="default: " + " ".join(READING_METHODS),
    )
    confirm = sub.add_parser(
        "confirm", help="a confirmatory study: run exactly what a committed plan file lists (docs/study.md)"
    )
    confirm.add_argument("--plan", type=Path, required=True, help="the plan file (YAML; commit it before the run)")
    confirm.add_argument("--out", type=Path, required=True, help="study folder")
    confirm.add_argument("--jobs", type=processes, default=2, help="runs in parallel, one CPU thread each (default 2)")
    confirm.add_argument(
        "--configs", type=Path, default=None, help="the demo's stage configs (default configs/demo of the repository)"
    )
    confirm.add_argument(
        "--dry-run", action="store_true", help="print the runs the plan makes, their count and time, and exit"
    )
    return parser


def study_env() -> dict[str, str]:
    """The environment of every study subprocess: one CPU thread, W&B offline unless set, quiet."""
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        WANDB_MODE=os.environ.get("WANDB_MODE", "offline"),
        WANDB_SILENT="true",
        PYTHONWARNINGS="ignore",
    )


def confirm_main(args: argparse.Namespace) -> int:
    """``epspp study confirm``: load the plan, print its runs (``--dry-run``) or run them and write the tables."""
    from epspp.study.confirm import confirm, dry_run, load_plan

    start = time.perf_counter()
    try:
        plan = load_plan(args.plan)
        if args.dry_run:
            print(dry_run(plan, args.jobs))
            return 0
        configs = args.configs or demo_configs(None)
        check_configs(configs, [plan.regime])
        overrides = [*QUIET_FIRST, *plan.overrides, *QUIET_LAST]
        ctx = Context(args.out, args.out / "data", configs, overrides, study_env(), plan.saliency_errors)
        claim_folder(args.out, "epspp study", "--out", {}, legacy=holds_stage_marker)
        import torch

        torch.set_num_threads(1)  # the scoring here runs beside the subprocesses, which take the cores
        written = confirm(ctx, plan, args.jobs)
    except (EPSError, FileExistsError, FileNotFoundError) as error:
        print(f"epspp study: error: {error}", file=sys.stderr)
        return 2
    print(f"[study] wrote {', '.join(map(str, written))} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def study_main(argv: list[str] | None = None) -> int:
    """``epspp study saliency-errors|labeled-fraction|readings [options] [-- fit overrides]`` and ``epspp study confirm
    --plan PLAN.yaml --out DIR``."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.jobs < 1:
        cli.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.study == "confirm":
        return confirm_main(args)
    grid = FULL_GRID if args.full_grid else DEFAULT_GRID
    seeds = list(dict.fromkeys(args.seeds if args.seeds is not None else grid["seeds"]))
    regimes = list(dict.fromkeys(args.regimes if args.regimes is not None else grid["regimes"][args.study]))
    if args.study == "saliency-errors":
        rates = sorted(set(args.rates if args.rates is not None else grid["rates"]))
        if 0.0 not in rates:
            cli.error("--rates must include 0 (the shared clean-saliency point)")
    if args.study == "labeled-fraction":
        fractions = sorted(set(args.fractions if args.fractions is not None else grid["fractions"]))
        if 0.0 in fractions:
            cli.error("--fractions must be above 0: labelled-only and SSSS need at least one labelled image")
    out = args.out
    root = args.root or out / f"data_{args.num_classes}classes"
    overrides = [*QUIET_FIRST, *args.overrides, *QUIET_LAST]
    import torch

    torch.set_num_threads(1)  # the scoring here runs beside the subprocesses, which take the cores
    start = time.perf_counter()
    try:
        configs = args.configs or demo_configs(None)
        ctx = Context(out, root, configs, overrides, study_env())
        check_configs(configs, regimes)
        claim_folder(out, "epspp study", "--out", {args.root: "the dataset root"}, legacy=holds_stage_marker)
        prepare(
            ctx, args.num_classes, {"num_train": args.num_train, "num_val": args.num_val, "image_size": args.image_size}
        )
        if args.study == "saliency-errors":
            study_saliency_errors(
                ctx, regimes, args.error_types, rates, args.methods, seeds, args.jobs, not args.no_wandb
            )
        elif args.study == "readings":
            study_readings(ctx, regimes, list(dict.fromkeys(args.methods)), seeds, args.jobs, not args.no_wandb)
        else:
            study_labeled_fraction(ctx, regimes, fractions, seeds, args.jobs, not args.no_wandb, args.num_classes)
    except (EPSError, FileExistsError, FileNotFoundError) as error:
        print(f"epspp study: error: {error}", file=sys.stderr)
        return 2
    written = ", ".join(str(out / name) for name in OUTPUTS[args.study])
    print(f"[study] wrote {written} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def check_configs(configs: Path, regimes: list[str]) -> None:
    """The config folder holds every regime's stage configs (and stage 0's for the pretrained regime)."""
    if not configs.is_dir():
        raise StudyError(f"config folder {configs} does not exist (run from the repository root, or pass --configs)")
    for regime in regimes:
        needed = (configs if regime == "pretrained" else configs / "scratch") / "pseudo_masks.yaml"
        if not needed.is_file():
            raise StudyError(
                f"config folder {configs} has no {needed.relative_to(configs)} (the {regime} regime's "
                "configs): pass the demo's configs/demo with --configs"
            )
    if "pretrained" in regimes and not (configs / "pretrain.yaml").is_file():
        raise StudyError(
            f"config folder {configs} has no pretrain.yaml (stage 0 of the pretrained regime): pass "
            "configs/demo with --configs, or --regimes scratch"
        )
