"""The command line of ``epspp convert`` (argparse); the work is ``epspp.convert``'s."""

from __future__ import annotations

import argparse
import sys

from epspp.convert import convert_weights
from epspp.errors import EPSError


def convert_main(argv: list[str] | None = None) -> int:
    """Entry point of ``epspp convert-weights``."""
    parser = argparse.ArgumentParser(
        prog="epspp convert-weights",
        description="Convert ResNet-38d ImageNet weights (the MXNet ilsvrc-cls_rna-a1_cls1000_ep-0001.params, "
        "read without mxnet, or a PSA-named .pth) to a PyTorch state dict for pretrained_path.",
    )
    parser.add_argument("source", help="the .params (or .pth) file")
    parser.add_argument("target", help="the .pth to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target")
    args = parser.parse_args(argv)
    try:
        count = convert_weights(args.source, args.target, args.overwrite)
    except EPSError as error:
        print(f"epspp convert-weights: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {count} tensors to {args.target} (load it with --model.init_args.pretrained_path {args.target})")
    return 0
