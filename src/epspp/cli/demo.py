"""The command line of ``epspp demo`` (argparse); the work is ``epspp.demo``'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from epspp.demo import DEFAULT_OUT, REGIMES, demo_configs, run_demo
from epspp.errors import EPSError


def demo_main(argv: list[str] | None = None) -> int:
    """``epspp demo [--regime pretrained|scratch] [--root data/synthetic] [--out DIR] [--configs configs/demo]
    [--pretrain-root data/pretrain] [-- OVERRIDES]``."""
    parser = argparse.ArgumentParser(prog="epspp demo", description="Run the whole EPS++ pipeline on synthetic data.")
    parser.add_argument(
        "--regime",
        choices=REGIMES,
        default="pretrained",
        help="pretrained (default, the papers' regime): stage 0 pretrains the backbone on the "
        "pretraining corpus, stages 1 and 3 fine-tune it (configs/demo); scratch: stages 1 "
        "and 3 from random weights (configs/demo/scratch)",
    )
    parser.add_argument("--root", default="data/synthetic", help="synthetic dataset root (generated if absent)")
    parser.add_argument(
        "--out",
        default=None,
        help="run folder of the demo (default: runs/demo, or runs/demo_scratch with --regime scratch)",
    )
    parser.add_argument(
        "--configs",
        default=None,
        help="folder of the demo's stage configs (default: configs/demo of the repository; the "
        "scratch regime reads its scratch/ subfolder)",
    )
    parser.add_argument(
        "--pretrain-root",
        default="data/pretrain",
        help="stage 0's pretraining corpus (generated if absent; pretrained regime only)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="extra `epspp fit` overrides of every fit, stage 0 included (after --), e.g. --trainer.max_steps=5",
    )
    args = parser.parse_args(argv)
    try:
        report = run_demo(
            Path(args.root),
            Path(args.out or DEFAULT_OUT[args.regime]),
            demo_configs(args.configs),
            args.overrides,
            args.regime,
            Path(args.pretrain_root),
        )
    except EPSError as error:
        print(f"epspp demo: error: {error}", file=sys.stderr)
        return 2
    print(report["table"])
    return 0
