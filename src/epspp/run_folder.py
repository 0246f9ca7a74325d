"""A stage's run folder (``trainer.default_root_dir``): what ``epspp fit|validate|test|predict`` may write there.

The write rule (docs/architecture.md, "Conventions") for the stages: a run folder is never (inside) the dataset
root or another input of the run; the configuration dump of each subcommand starts with its own mark and is
replaced only by a run of the same subcommand (``config.yaml``, else ``config.<subcommand>.yaml``); a fit that
does not resume writes its checkpoints, backbone and IRD records only into a folder that is new, or an earlier
fit's (it holds a fit's dump).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from epspp.errors import ConfigError
from epspp.outputs import refuse_inside

#: the first line of a dump of an older epspp, which did not name the subcommand (taken as a fit's)
LEGACY_DUMP_MARK = "# epspp: this run's configuration as Lightning dumps it (each run in this folder rewrites it)\n"
#: where an earlier fit leaves its dump: the run folder, or a logger's version folder inside it
DUMP_PATTERNS = ("config*.yaml", "*/config*.yaml", "*/*/config*.yaml")


def dump_mark(subcommand: str) -> str:
    """The first line of ``epspp <subcommand>``'s configuration dump."""
    return (f"# epspp {subcommand}: this run's configuration as Lightning dumps it (each {subcommand} in this "
            "folder rewrites it)\n")


def dump_subcommand(path: Path) -> str | None:
    """The subcommand whose dump ``path`` is (an older epspp's: ``fit``), None when epspp did not write it."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return None
    if first == LEGACY_DUMP_MARK:
        return "fit"
    words = first.split()
    return words[2].rstrip(":") if len(words) > 2 and first == dump_mark(words[2].rstrip(":")) else None


def config_dump_path(folder: Path, subcommand: str, name: str = "config.yaml") -> Path:
    """``folder/name`` when it is free or an earlier dump of the same subcommand, else ``config.<subcommand>.yaml``
    beside it (the run says so); a folder where both names hold other files is refused."""
    stem, suffix = os.path.splitext(name)
    for candidate in (name, f"{stem}.{subcommand}{suffix or '.yaml'}"):
        path = folder / candidate
        if not path.exists() or dump_subcommand(path) == subcommand:
            if candidate != name and dump_subcommand(folder / name) is None and first_process():
                print(f"[epspp] {folder / name} is not a configuration dump of epspp (a file of yours?): kept; this "
                      f"run's configuration goes to {path}", file=sys.stderr)
            return path
    raise ConfigError(f"{folder} holds a {name} and a {path.name} that epspp {subcommand} did not write: move them, or "
                      "choose another --trainer.default_root_dir")


def run_inputs(config: Any) -> dict[str | None, str]:
    """The folders a stage reads (folder -> what it is), which its run folder must stay out of."""
    data = config.get("data") or {}
    return {data.get("mask_dir"): "the dataset's mask folder",
            data.get("saliency_dir"): "the dataset's saliency folder",
            data.get("pseudo_mask_dir"): "the pseudo-mask folder",
            data.get("predict_image_dir"): "the image folder",
            data.get("root"): "the dataset's root folder"}


def check_run_folder(config: Any, subcommand: str) -> None:
    """Refuse a run folder inside the run's inputs, and a fit (not resumed) into a folder where it would replace
    files that no fit wrote."""
    root = Path(config.trainer.get("default_root_dir") or os.getcwd())
    option = "--pseudo_masks.output_dir" if subcommand == "predict" else "--trainer.default_root_dir"
    refuse_inside(root, run_inputs(config), option)
    if subcommand != "fit" or config.get("ckpt_path") or not root.is_dir() or is_fit_folder(root):
        return
    for path in fit_outputs(config, root):
        if path.exists():
            raise ConfigError(f"--trainer.default_root_dir {root} holds {path}, which no `epspp fit` wrote there (the "
                              "folder holds no configuration dump of a fit): choose another "
                              "--trainer.default_root_dir, or move the file (to continue a fit from it: --ckpt_path)")


def is_fit_folder(root: Path) -> bool:
    """Whether an earlier ``epspp fit`` ran in ``root`` (its configuration dump is there)."""
    return any(dump_subcommand(path) == "fit" for pattern in DUMP_PATTERNS for path in root.glob(pattern))


def fit_outputs(config: Any, root: Path) -> list[Path]:
    """The files a fit replaces in its run folder: the checkpoints of fixed names, stage 0's backbone, IRD's record."""
    from epspp.models.ird_health import TELEMETRY_FILE, WARNINGS_FILE

    paths = [root / TELEMETRY_FILE, root / WARNINGS_FILE]
    for callback in config.trainer.get("callbacks") or []:
        args = callback.get("init_args") or {}
        if callback.class_path.endswith("ModelCheckpoint"):
            folder = Path(args.get("dirpath") or root / "checkpoints")
            names = ["last", args.get("filename") or ""] if args.get("save_last") else [args.get("filename") or ""]
            paths += [folder / f"{name}.ckpt" for name in names if name and "{" not in name]
        elif callback.class_path.endswith("BackboneExport"):
            paths.append(root / (args.get("filename") or "backbone.pth"))
    return paths


def first_process() -> bool:
    """Not a DDP child process (those parse the same command line again: say things once)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
