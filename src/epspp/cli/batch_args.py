"""The command line of ``epspp batch-args`` (argparse); the work is ``epspp.batch_scaling``'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from epspp.batch_scaling import config_recipe
from epspp.cli.argtypes import processes
from epspp.config_files import resolve_config
from epspp.errors import ConfigError


def batch_args_main(argv: list[str]) -> int:
    """``epspp batch-args``: print the per-process overrides of a config's recipe for a DDP run."""
    parser = argparse.ArgumentParser(
        prog="epspp batch-args",
        description="Print the --data.batch_size / --model.init_args.lr (and --data.labeled_per_batch) "
        "overrides that keep a config's total batch over devices x nodes processes, with the "
        "learning rate scaled linearly where the total has to change.",
    )
    parser.add_argument(
        "--config",
        type=lambda value: Path(resolve_config(value)),
        required=True,
        help="the stage's YAML config, or a packaged one's name (its batch is the total)",
    )
    parser.add_argument("--devices", type=processes, default=1, help="processes (GPUs) per node")
    parser.add_argument("--num-nodes", type=processes, default=1, help="nodes")
    args = parser.parse_args(argv)
    try:
        scaled, message = config_recipe(args.config, args.devices * args.num_nodes)
    except ConfigError as error:
        print(f"epspp batch-args: error: {error}", file=sys.stderr)
        return 2
    print(message, file=sys.stderr)
    print(" ".join(scaled.args()))
    return 0
