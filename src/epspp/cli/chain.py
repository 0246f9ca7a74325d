r"""``epspp chain``: the papers' reproduction chain on VOC or COCO, run (resumable) or printed.

    epspp chain --dataset voc --segmentation wsss --method eps++ --root data/voc --out runs/voc/eps++ \
        [--devices N] [--num-nodes M] [--fit-args '...'] [--predict-args '...'] [--test-args '...'] \
        [--launcher srun] [--print]

stage 1 (localization) -> stage 2 (pseudo-masks of the training split) -> stage 3 (DeepLab-v2, WSSS or SSSS)
-> the test split's masks (``segmentation_test.yaml``; ``--no-test`` leaves it out).  The Makefile's
``voc-wsss|voc-ssss|coco-wsss`` and ``scripts/slurm/*.sbatch`` run this command; the stages and their rules
(skip, rerun, resume) are ``epspp.chain``'s.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from epspp.chain import Processes, RunLayout, Runner, Stage, fit_stage, last_checkpoint, predict_stage
from epspp.cli.argtypes import processes
from epspp.config_files import config_folder
from epspp.errors import EPSError

DATASETS = ("voc", "coco")
SEGMENTATION = ("wsss", "ssss")
METHODS = ("cam", "eps", "eps++")


def reproduction_stages(
    dataset: str,
    segmentation: str,
    method: str,
    root: Path,
    out: Path,
    configs: Path = Path("configs"),
    fit_args: tuple[str, ...] = (),
    predict_args: tuple[str, ...] = (),
    test_args: tuple[str, ...] = (),
    test: bool = True,
) -> list[Stage]:
    """The chain of ``make <dataset>-<segmentation>``: the configs of ``configs/<dataset>/``, the run folders of
    ``RunLayout(out)``; ``fit_args`` go to both fits, ``predict_args`` to the pseudo-masks, ``test_args`` to
    the test split's prediction."""
    folder, run = config_folder(configs / dataset), RunLayout(out)
    stages = [
        fit_stage("localization", run.localization, [folder / f"localization_{method}.yaml"], root, overrides=fit_args),
        predict_stage(
            "pseudo-masks",
            run.pseudo_masks,
            [folder / "pseudo_masks.yaml"],
            root,
            last_checkpoint(run.localization),
            overrides=predict_args,
            inputs=[run.localization],
        ),
        fit_stage(
            f"segmentation {segmentation}",
            run.segmentation(segmentation),
            [folder / f"segmentation_{segmentation}.yaml"],
            root,
            extra=["--data.pseudo_mask_dir", str(run.pseudo_masks)],
            overrides=fit_args,
            inputs=[run.pseudo_masks],
        ),
    ]
    if test:
        stages.append(
            predict_stage(
                f"test split {segmentation}",
                run.test(segmentation),
                [folder / f"segmentation_{segmentation}.yaml", folder / "segmentation_test.yaml"],
                root,
                last_checkpoint(run.segmentation(segmentation)),
                overrides=test_args,
                root_dir=True,
                inputs=[run.segmentation(segmentation)],
            )
        )
    return stages


def parser() -> argparse.ArgumentParser:
    """The options of ``epspp chain``."""
    parse = argparse.ArgumentParser(
        prog="epspp chain",
        description=(
            "The papers' chain: localization -> pseudo-masks -> DeepLab-v2 -> the test split's masks, each stage an "
            "`epspp fit|predict` command. A rerun skips finished stages; a stage whose command changed, or whose "
            "input stage ran again, runs again (its old folder kept as <folder>.previous)."
        ),
    )
    parse.add_argument("--dataset", choices=DATASETS, required=True, help="configs/<dataset>/ holds the configs")
    parse.add_argument(
        "--segmentation",
        choices=SEGMENTATION,
        default="wsss",
        help="stage 3: wsss (pseudo-masks only) or ssss (labelled images + pseudo-masks)",
    )
    parse.add_argument("--method", choices=METHODS, default="eps++", help="stage 1's method (default eps++)")
    parse.add_argument("--root", type=Path, required=True, help="the dataset root (VOC layout)")
    parse.add_argument("--out", type=Path, required=True, help="the run folder (one per method)")
    parse.add_argument(
        "--configs",
        type=Path,
        default=Path("configs"),
        help="the config folder (default: configs here, else the packaged ones)",
    )
    parse.add_argument(
        "--devices",
        type=processes,
        default=None,
        help="processes (GPUs) per node; with it, every Trainer stage gets --trainer.devices/num_nodes/"
        "strategy and each fit its batch recipe split over the processes (epspp batch-args)",
    )
    parse.add_argument("--num-nodes", type=processes, default=1, help="nodes (default 1)")
    parse.add_argument("--strategy", default=None, help="Lightning's strategy (default: auto on 1 process, else ddp)")
    parse.add_argument(
        "--sync-batchnorm",
        choices=("true", "false"),
        default=None,
        help="--trainer.sync_batchnorm of the fits (default: the configs')",
    )
    for name, what in (
        ("fit", "both fits"),
        ("predict", "the pseudo-mask prediction"),
        ("test", "the test split's prediction"),
    ):
        parse.add_argument(
            f"--{name}-args",
            default="",
            help=f"extra epspp overrides of {what}, one string split as a shell does "
            f"(write --{name}-args='--trainer.max_steps 5'); they come last and override",
        )
    parse.add_argument("--no-test", action="store_true", help="stop after stage 3 (no test-split prediction)")
    parse.add_argument("--launcher", default="", help="a prefix of every Trainer stage, e.g. srun")
    parse.add_argument(
        "--epspp", default=None, help="the epspp command the stages run (default: this Python's -m epspp)"
    )
    parse.add_argument(
        "--logs", action="store_true", help="each stage's output to <its folder>/log.txt instead of the terminal"
    )
    parse.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the stages' commands (one a line, shell-quoted) instead of running them",
    )
    return parse


def chain_main(argv: list[str] | None = None) -> int:
    """``epspp chain``: build the reproduction chain and run (or print) it."""
    args = parser().parse_args(argv)
    try:
        words = {
            name: tuple(split(getattr(args, f"{name}_args"), f"--{name}-args")) for name in ("fit", "predict", "test")
        }
        stages = reproduction_stages(
            args.dataset,
            args.segmentation,
            args.method,
            args.root,
            args.out,
            args.configs,
            words["fit"],
            words["predict"],
            words["test"],
            test=not args.no_test,
        )
        processes = None
        if args.devices is not None:
            if args.devices < 1 or args.num_nodes < 1:
                raise EPSError(f"--devices {args.devices} --num-nodes {args.num_nodes}: both must be at least 1")
            sync = None if args.sync_batchnorm is None else args.sync_batchnorm == "true"
            processes = Processes(args.devices, args.num_nodes, args.strategy, sync)
        runner = Runner(
            tag="chain",
            launcher=tuple(split(args.launcher, "--launcher")),
            processes=processes,
            log_name="log.txt" if args.logs else None,
        )
        if args.epspp:
            runner.executable = tuple(split(args.epspp, "--epspp"))
        if args.print_only:
            runner.print_commands(stages)
        else:
            runner.run(stages)
    except EPSError as error:
        print(f"epspp chain: error: {error}", file=sys.stderr)
        return 2
    return 0


def split(text: str, flag: str) -> list[str]:
    """``text`` split as a shell splits words (quotes kept together); a one-line error naming ``flag``."""
    try:
        return shlex.split(text)
    except ValueError as error:
        raise EPSError(f"{flag} {text!r}: {error} (close the quote)") from None
