"""The command line of ``epspp saliency`` (argparse); the work is ``epspp.saliency``'s."""

from __future__ import annotations

import argparse
import sys

from epspp import saliency as library
from epspp.cli.argtypes import count
from epspp.errors import EPSError
from epspp.saliency import COMMAND, DEFAULT_MODEL, MODELS, PROGRESS_EVERY, write_saliency_maps


def saliency_main(argv: list[str] | None = None) -> int:
    """``epspp saliency --images DIR --out DIR [--model NAME] [--model-path FILE]``."""
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description=(library.__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="models (rembg):\n" + "\n".join(f"  {k:22} {v}" for k, v in MODELS.items()),
    )
    parser.add_argument("--images", required=True, help="folder of images (the ids of epspp prepare folder)")
    parser.add_argument(
        "--out", required=True, help="folder of <id>.png maps and saliency.json (not inside --images; a rerun resumes)"
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=list(MODELS),
        metavar="NAME",
        help=f"detector family (default {DEFAULT_MODEL}; see below)",
    )
    parser.add_argument(
        "--model-path",
        default=None,
        metavar="FILE",
        help="ONNX file of that family on disk (offline); default: rembg fetches it on first use",
    )
    parser.add_argument(
        "--progress-every",
        type=count,
        default=PROGRESS_EVERY,
        metavar="N",
        help=f"images between progress lines ({PROGRESS_EVERY}; also every 30 s)",
    )
    args = parser.parse_args(argv)
    if args.progress_every < 1:
        parser.error(f"--progress-every {args.progress_every}: expected a positive number of images")
    try:
        write_saliency_maps(args.images, args.out, args.model, args.model_path, args.progress_every)
    except EPSError as error:
        print(f"{COMMAND}: error: {error}", file=sys.stderr)
        return 2
    return 0
