"""The command line of ``epspp evaluate`` (argparse); the work is ``epspp.evaluate``'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from epspp.cli.argtypes import open_unit_interval
from epspp.data.classes import read_classes
from epspp.data.io import DatasetError
from epspp.errors import EPSError
from epspp.evaluate import (
    EVALUATE,
    evaluate_folder,
    scores_to_json,
    sweep_bg_threshold,
    threshold_choice,
    written_by_evaluate,
)
from epspp.files import write_json
from epspp.metrics import iou_table
from epspp.runs.ownership import check_output_file, refuse_inside
from epspp.runs.provenance import check_source


def evaluate_main(argv: list[str] | None = None) -> int:
    """mIoU of a folder of PNG masks (``--pred-dir``) against a split's ground truth; ``--bg-thresholds``
    also sweeps the background threshold over the saved score maps."""
    parser = argparse.ArgumentParser(prog="epspp evaluate", description=evaluate_main.__doc__)
    parser.add_argument("--pred-dir", required=True, help="folder of <id>.png class-index masks")
    parser.add_argument("--root", required=True, help="dataset root (VOC layout)")
    parser.add_argument("--split", required=True, help="split name, e.g. train or val")
    parser.add_argument("--mask-dir", default=None, help="ground truth (default ROOT/SegmentationClassAug)")
    parser.add_argument(
        "--json",
        default=None,
        help="also write the scores to this JSON file (never into the dataset; a file that epspp "
        "evaluate did not write is replaced only with --overwrite)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a --json file that epspp evaluate did not write"
    )
    parser.add_argument(
        "--bg-thresholds",
        type=open_unit_interval,
        nargs="+",
        default=None,
        metavar="T",
        help="also score PRED_DIR/scores/*.npy (written with save_scores: true) at each of these "
        "background thresholds, in (0, 1), to choose bg_threshold",
    )
    parser.add_argument(
        "--select-pred-dir",
        default=None,
        metavar="DIR",
        help="with --bg-thresholds: choose the threshold on these masks' score maps (another split, "
        "e.g. val, predicted with save_scores: true) and report PRED_DIR at it; without it the "
        "choice is made on the scored split itself and marked as an oracle",
    )
    parser.add_argument(
        "--select-split", default=None, metavar="NAME", help="the split of --select-pred-dir (e.g. val)"
    )
    args = parser.parse_args(argv)
    thresholds = list(dict.fromkeys(args.bg_thresholds or []))  # each candidate once
    if (args.select_pred_dir is None) != (args.select_split is None):
        parser.error("--select-pred-dir and --select-split go together: the masks of another split and its name")
    if args.select_pred_dir is not None and not args.bg_thresholds:
        parser.error("--select-pred-dir chooses a background threshold: give the candidates with --bg-thresholds")
    try:
        if args.json:
            refuse_inside(args.json, {args.root: "the dataset root", args.mask_dir: "the mask folder"}, "--json")
            check_output_file(args.json, EVALUATE, "--json", written_by_evaluate, args.overwrite)
        if not Path(args.pred_dir).is_dir():
            raise DatasetError(f"--pred-dir {args.pred_dir} is not a folder")
        names = read_classes(args.root)
        for folder, option in ((args.pred_dir, "--pred-dir"), (args.select_pred_dir, "--select-pred-dir")):
            if folder is not None:
                check_source(folder, args.root, names, option, "--root", note=False)
        result = evaluate_folder(args.pred_dir, args.root, args.split, args.mask_dir)
        if not result["evaluated"]:
            raise DatasetError(
                f"no id of split '{args.split}' has a ground-truth mask in "
                f"{args.mask_dir or Path(args.root) / 'SegmentationClassAug'}: nothing to score"
            )
        sweep = choice = None
        if thresholds:
            sweep = sweep_bg_threshold(args.pred_dir, args.root, args.split, thresholds, args.mask_dir)
            chooser = (
                sweep
                if args.select_pred_dir is None
                else sweep_bg_threshold(args.select_pred_dir, args.root, args.select_split, thresholds, args.mask_dir)
            )
            choice = threshold_choice(
                thresholds,
                chooser["metrics"],
                sweep["metrics"],
                args.select_split or args.split,
                args.split,
                result["class_names"],
            )
    except (EPSError, FileNotFoundError) as error:
        print(f"epspp evaluate: error: {error}", file=sys.stderr)
        return 2
    scores = result["metric"].compute()
    print(iou_table(scores["iou"], result["class_names"]))
    print(
        f"pixel accuracy {100 * float(scores['pixel_accuracy']):.2f}%  "
        f"({result['evaluated']} masks, {result['no_ground_truth']} ids without ground truth skipped)"
    )
    report = scores_to_json(scores, result["class_names"]) | {"evaluated": result["evaluated"]}
    if choice is not None:
        report |= choice
        sweep = cast(dict, sweep)  # set with choice
        print(
            f"\nbackground threshold sweep of {Path(args.pred_dir) / 'scores'} ({sweep['evaluated']} images, "
            f"split {args.split}):"
        )
        chosen_key = f"{choice['chosen_bg_threshold']:g}"
        mark = (
            f"  <- ORACLE: chosen on the scored split {args.split} itself (an upper bound; choose on another "
            "split with --select-pred-dir/--select-split)"
            if choice["oracle"]
            else f"  <- chosen on {choice['chosen_on']} ({choice['choice_sweep'][chosen_key]:.2f} there)"
        )
        print(f"bg_threshold  mIoU(%) on {args.split}")
        for threshold, miou in report["bg_threshold_sweep"].items():
            chosen = mark if float(threshold) == choice["chosen_bg_threshold"] else ""
            print(f"{threshold:<12}  {miou:7.2f}{chosen}")
    if args.json:
        write_json(args.json, {"written_by": EVALUATE} | report, "write --json")
    return 0
