"""``epspp configs list`` and ``epspp configs copy NAME|all DEST``: the configs shipped with the package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from epspp.config_files import copy_configs, list_configs
from epspp.errors import EPSError


def configs_main(argv: list[str]) -> int:
    """``epspp configs list`` prints the packaged configs' names (each a valid ``--config NAME``); ``epspp configs
    copy NAME|all DEST`` copies them into DEST to edit (never overwriting a file)."""
    parser = argparse.ArgumentParser(prog="epspp configs", description=configs_main.__doc__)
    commands = parser.add_subparsers(dest="action", required=True)
    commands.add_parser("list", help="the packaged configs' names")
    copy = commands.add_parser("copy", help="copy packaged configs into a folder")
    copy.add_argument("name", help="a config (voc/localization_eps++.yaml), a folder of them (voc) or all")
    copy.add_argument("dest", type=Path, help="the folder to copy into (relative paths kept)")
    args = parser.parse_args(argv)
    if args.action == "list":
        print("\n".join(list_configs()))
        return 0
    try:
        written = copy_configs(args.name, args.dest)
    except EPSError as error:
        print(f"epspp configs: error: {error}", file=sys.stderr)
        return 2
    print(f"copied {len(written)} config(s) into {args.dest}")
    return 0
