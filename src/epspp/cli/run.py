"""The command line of ``epspp run`` (argparse); the work is ``epspp.run``'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from epspp.cli.argtypes import count
from epspp.errors import EPSError
from epspp.run import COMMAND, METHODS, run_own_data


def run_main(argv: list[str] | None = None) -> int:
    """``epspp run --images DIR --labels FILE [--saliency DIR] --out DIR [--preset photos] [--method eps++]
    [--predict DIR] [--max-steps N] [--no-pretrained] [-- FIT OVERRIDES]``."""
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Your own photos to masks in one command: saliency "
        "(if not given) -> dataset -> stage 1 -> pseudo-masks -> stage 3 -> masks -> "
        "report. A rerun skips what is finished; a changed option reruns what "
        "depends on it.",
    )
    parser.add_argument("--images", required=True, type=Path, help="folder of photos (.jpg .png ...)")
    parser.add_argument("--labels", required=True, type=Path, help="labels: CSV 'id,classes' or JSON {id: [names]}")
    parser.add_argument(
        "--saliency",
        type=Path,
        default=None,
        help="folder of <id>.png saliency maps (default: made with `epspp saliency`)",
    )
    parser.add_argument("--out", required=True, type=Path, help="run folder (new, empty or an earlier epspp run's)")
    parser.add_argument("--preset", default="photos", help="configs/<preset> or a folder of configs (photos)")
    parser.add_argument("--method", choices=METHODS, default="eps++", help="stage 1's loss (eps++)")
    parser.add_argument("--predict", type=Path, default=None, help="folder of new photos to write masks of")
    parser.add_argument(
        "--max-steps",
        type=count,
        default=None,
        help="every fit's step budget, warm-ups scaled with it (default: the preset's)",
    )
    parser.add_argument(
        "--no-pretrained",
        dest="pretrained",
        action="store_false",
        help="backbones from random weights (no download; for trying it out and for tests)",
    )
    parser.add_argument("--saliency-model", default=None, help="`epspp saliency --model` (without --saliency)")
    parser.add_argument(
        "--saliency-model-path",
        type=Path,
        default=None,
        help="`epspp saliency --model-path`: a local .onnx file (offline)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra `epspp fit` flags of both fits (after --), e.g. --data.num_workers=0"
    )
    args = parser.parse_args(argv)
    try:
        summary = run_own_data(
            args.images,
            args.labels,
            args.out,
            saliency=args.saliency,
            preset=args.preset,
            method=args.method,
            predict=args.predict,
            max_steps=args.max_steps,
            pretrained=args.pretrained,
            saliency_model=args.saliency_model,
            saliency_model_path=args.saliency_model_path,
            overrides=args.overrides,
        )
    except EPSError as error:
        print(f"{COMMAND}: error: {error}", file=sys.stderr)
        return 2
    print(f"[run] report: {summary['report']} (picture {summary['picture']})")
    return 0
