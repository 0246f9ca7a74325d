"""The command line of ``epspp render`` (argparse); the work is ``epspp.render``'s."""

from __future__ import annotations

import argparse
import sys

from epspp import render as library
from epspp.cli.argtypes import count, image_side
from epspp.errors import EPSError
from epspp.render import render


def render_main(argv: list[str] | None = None) -> int:
    """``epspp render --pred-dir OUT (--root ROOT | --images DIR) [--num 32] [--panel 256] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="epspp render", description=(library.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pred-dir", required=True, help="folder of <id>.png masks")
    parser.add_argument("--root", default=None, help="dataset root (images, saliency, classes.json, image labels)")
    parser.add_argument(
        "--images",
        default=None,
        help="folder of the images the masks were predicted from (--data.predict_image_dir); with "
        "--root too, the class names and labels come from the root",
    )
    parser.add_argument("--num", type=count, default=32, help="images (rows) at most (32)")
    parser.add_argument("--panel", type=image_side, default=256, help="width of each panel in pixels (256)")
    parser.add_argument(
        "--out",
        default=None,
        help="PNG to write (default PRED_DIR/overview.png; never in the "
        "dataset; a file that epspp render did not write is replaced "
        "only with --overwrite)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an --out file that epspp render did not write"
    )
    args = parser.parse_args(argv)
    if args.root is None and args.images is None:
        parser.error("give the images: --root ROOT (a dataset) or --images DIR (a folder of images)")
    try:
        path = render(args.pred_dir, args.root, args.out, args.num, args.panel, args.overwrite, args.images)
    except EPSError as error:
        print(f"epspp render: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
