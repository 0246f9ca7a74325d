"""A stage's run folder (``trainer.default_root_dir``): what ``epspp fit|validate|test|predict`` may write there.

The write rule (docs/architecture.md, "Conventions") for the stages: a run folder is never (inside) the dataset
root or another input of the run; the configuration dump of each subcommand starts with its own mark and is
replaced only by a run of the same subcommand (``config.yaml``, else ``config.<subcommand>.yaml``); a fit that
does not resume writes its checkpoints, backbone and IRD records only into a folder that is new, or an earlier
fit's (it holds a fit's dump); and a fit never replaces an earlier fit's ``last.ckpt`` silently: without
``--ckpt_path`` it refuses, with ``--start_over`` the earlier fit's files are first renamed to ``*.previous``.
A command that fails leaves no empty folder behind (``note_new_folder`` / ``discard_empty_new_folders``).
Its paths: checkpoint and logger folders inside it (``resolve_run_paths``); what best.ckpt is selected on when
the validation split has no ground truth (``monitor_what_exists``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from epspp.data.io import read_split
from epspp.errors import ConfigError, DatasetError
from epspp.runs.lock import hold_folder, remove_stale_temporaries_said
from epspp.runs.ownership import holds_no_file, refuse_inside
from epspp.runs.progress import PROGRESS_FILE

#: the epspp flag of ``epspp fit`` that moves an earlier fit's files aside and starts over
START_OVER_FLAG = "--start_over"

#: the first line of a dump of an older epspp, which did not name the subcommand (taken as a fit's)
LEGACY_DUMP_MARK = "# epspp: this run's configuration as Lightning dumps it (each run in this folder rewrites it)\n"
#: where an earlier fit leaves its dump: the run folder, or a logger's version folder inside it
DUMP_PATTERNS = ("config*.yaml", "*/config*.yaml", "*/*/config*.yaml")


def dump_mark(subcommand: str) -> str:
    """The first line of ``epspp <subcommand>``'s configuration dump."""
    return (
        f"# epspp {subcommand}: this run's configuration as Lightning dumps it (each {subcommand} in this "
        "folder rewrites it)\n"
    )


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
                print(
                    f"[epspp] {folder / name} is not a configuration dump of epspp (a file of yours?): kept; this "
                    f"run's configuration goes to {path}",
                    file=sys.stderr,
                )
            return path
    raise ConfigError(
        f"{folder} holds a {name} and a {path.name} that epspp {subcommand} did not write: move them, or "
        "choose another --trainer.default_root_dir"
    )


def run_folder_option(subcommand: str) -> str:
    """The option that names a stage's run folder: ``--pseudo_masks.output_dir`` (predict), else
    ``--trainer.default_root_dir``."""
    return "--pseudo_masks.output_dir" if subcommand == "predict" else "--trainer.default_root_dir"


def run_inputs(config: Any) -> dict[str | Path | None, str]:
    """The folders a stage reads (folder -> what it is), which its run folder must stay out of."""
    data = config.get("data") or {}
    return {
        data.get("mask_dir"): "the dataset's mask folder",
        data.get("saliency_dir"): "the dataset's saliency folder",
        data.get("pseudo_mask_dir"): "the pseudo-mask folder",
        data.get("predict_image_dir"): "the image folder",
        data.get("root"): "the dataset's root folder",
    }


def check_run_folder(config: Any, subcommand: str, start_over: bool = False) -> None:
    """Refuse a run folder, or a folder a config names for the run to write in (``written_folders``: checkpoint and
    logger folders), inside the run's inputs; a fit (not resumed) into a folder where it would replace files that
    no fit wrote (a checkpoint folder outside the run folder: any existing checkpoint of the names it writes); and
    one into an earlier fit's folder (its ``last.ckpt``) unless ``start_over``: then the earlier fit's files are
    renamed aside first (``set_aside_earlier_fit``)."""
    root = Path(config.trainer.get("default_root_dir") or os.getcwd())
    option = run_folder_option(subcommand)
    refuse_inside(root, run_inputs(config), option)
    for folder, key in written_folders(config).items():
        refuse_inside(folder, run_inputs(config), key)
    if subcommand == "fit" and start_over and config.get("ckpt_path"):
        raise ConfigError(
            f"--ckpt_path {config.get('ckpt_path')} continues a fit and {START_OVER_FLAG} starts one "
            "over: give one of them"
        )
    if subcommand != "fit" or config.get("ckpt_path"):
        return
    outputs = fit_outputs_by_key(config, root)
    for path, key in outputs.items():
        if key and not path.resolve().is_relative_to(root.resolve()) and path.exists():
            raise ConfigError(
                f"{key} {path.parent} holds {path}, which this fit would replace (the folder is outside "
                f"--trainer.default_root_dir {root}): choose another folder, or move the file (to continue a fit "
                "from it: --ckpt_path)"
            )
    if not root.is_dir():
        return
    if not is_fit_folder(root):
        for path in outputs:
            if path.exists():
                raise ConfigError(
                    f"--trainer.default_root_dir {root} holds {path}, which no `epspp fit` wrote there "
                    "(the folder holds no configuration dump of a fit): choose another "
                    "--trainer.default_root_dir, or move the file (to continue a fit from it: "
                    "--ckpt_path)"
                )
        return
    earlier = [path for path in outputs if path.name == "last.ckpt" and path.is_file()]
    if not earlier:
        return
    if not start_over:
        raise ConfigError(
            f"--trainer.default_root_dir {root} holds an earlier fit ({earlier[0]}): continue it with "
            f"--ckpt_path last, or start over with {START_OVER_FLAG} (its files are kept as *.previous)"
        )
    if not first_process():  # torchrun's other ranks: the first process moves the files
        return
    moved = set_aside_earlier_fit(config, root)
    print(
        f"[epspp] {START_OVER_FLAG}: the earlier fit's files are kept as "
        f"{', '.join(os.path.relpath(new, root) for _, new in moved)} in {root}",
        file=sys.stderr,
    )


def written_folders(config: Any) -> dict[Path, str]:
    """The folders the config's callbacks and loggers write in (folder -> its config key, as the message names it:
    ``trainer.callbacks[1].init_args.dirpath``, a BackboneExport's ``filename``'s folder,
    ``trainer.logger[0].init_args.save_dir``); None values skipped."""
    found: dict[Path, str] = {}
    for index, callback in enumerate(config.trainer.get("callbacks") or []):
        args = callback.get("init_args") or {}
        if callback.class_path.endswith("ModelCheckpoint") and args.get("dirpath"):
            found.setdefault(Path(args["dirpath"]), f"trainer.callbacks[{index}].init_args.dirpath")
        elif callback.class_path.endswith("BackboneExport") and args.get("filename"):  # in the run folder, or not
            root = config.trainer.get("default_root_dir") or os.getcwd()
            found.setdefault(Path(root, args["filename"]).parent, f"trainer.callbacks[{index}].init_args.filename")
    loggers = config.trainer.get("logger")
    single = not isinstance(loggers, list)
    for index, logger in enumerate([loggers] if single else loggers):
        args = getattr(logger, "init_args", None) or {}
        for name in ("save_dir", "log_dir", "dir"):
            if args.get(name):
                where = "trainer.logger" if single else f"trainer.logger[{index}]"
                found.setdefault(Path(args[name]), f"{where}.init_args.{name}")
    return found


def set_aside_earlier_fit(config: Any, root: Path) -> list[tuple[Path, Path]]:
    """Rename the files of the fit in ``root`` that a new fit would replace (its checkpoint folders, fixed-name
    outputs, progress.json and configuration dump) to a free ``*.previous`` name beside them; nothing is deleted.
    Returns the (old, new) pairs."""
    outputs = fit_outputs(config, root)
    folders = list(dict.fromkeys(path.parent for path in outputs if path.suffix == ".ckpt" and path.parent != root))
    files = [path for path in outputs if path.parent not in folders]
    files += [path for path in (root / "config.yaml", root / "config.fit.yaml") if dump_subcommand(path) == "fit"]
    moved = []
    for path in [*folders, *files]:
        if path.exists():
            new = previous_name(path)
            os.rename(path, new)
            moved.append((path, new))
    return moved


def previous_name(path: Path) -> Path:
    """A free name beside ``path`` that says it was set aside: ``checkpoints.previous``, ``backbone.previous.pth``,
    then ``checkpoints.previous-2``, ..."""
    stem, suffix = (path.name, "") if path.is_dir() else (path.stem, path.suffix)
    for n in range(1, 10_000):
        candidate = path.with_name(f"{stem}.previous{'' if n == 1 else f'-{n}'}{suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise ConfigError(f"{path.parent} holds 10000 earlier fits set aside: move some of them")


def is_fit_folder(root: Path) -> bool:
    """Whether an earlier ``epspp fit`` ran in ``root`` (its configuration dump is there)."""
    return any(dump_subcommand(path) == "fit" for pattern in DUMP_PATTERNS for path in root.glob(pattern))


def fit_outputs(config: Any, root: Path) -> list[Path]:
    """The files a fit replaces in its run folder: the checkpoints of fixed names, stage 0's backbone, IRD's record,
    the progress file."""
    return list(fit_outputs_by_key(config, root))


def fit_outputs_by_key(config: Any, root: Path) -> dict[Path, str]:
    """``fit_outputs`` with the config key that places each (a ModelCheckpoint's ``dirpath``; "" for the files
    of the run folder itself)."""
    from epspp.callbacks.ird_monitor import TELEMETRY_FILE, WARNINGS_FILE

    paths = dict.fromkeys([root / TELEMETRY_FILE, root / WARNINGS_FILE, root / PROGRESS_FILE], "")
    for index, callback in enumerate(config.trainer.get("callbacks") or []):
        args = callback.get("init_args") or {}
        if callback.class_path.endswith("ModelCheckpoint"):
            folder = Path(args.get("dirpath") or root / "checkpoints")
            names = ["last", args.get("filename") or ""] if args.get("save_last") else [args.get("filename") or ""]
            key = f"trainer.callbacks[{index}].init_args.dirpath" if args.get("dirpath") else ""
            paths.update({folder / f"{name}.ckpt": key for name in names if name and "{" not in name})
        elif callback.class_path.endswith("BackboneExport"):
            paths[root / (args.get("filename") or "backbone.pth")] = ""
    return paths


def first_process() -> bool:
    """Not a DDP child process (those parse the same command line again: say things once)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def first_of_all_processes() -> bool:
    """The first process of the whole run, on every node: ``first_process``, and global rank 0 where a launcher sets
    one (torchrun's ``RANK``, srun's ``SLURM_PROCID``; a node's first process of a multi-node run is not)."""
    if not first_process():
        return False
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return os.environ[name] == "0"
    return True


_new_folders: list[Path] = []


def note_new_folder(folder: str | Path) -> None:
    """Remember the outermost folder of ``folder``'s path that does not exist yet (what this command creates)."""
    path = Path(folder).absolute()
    new = None
    while not path.exists() and path != path.parent:
        new, path = path, path.parent
    if new is not None and new not in _new_folders:
        _new_folders.append(new)


def discard_empty_new_folders() -> None:
    """After a failed command: remove the folders ``note_new_folder`` noted that hold nothing but empty folders
    (a later run must not find a folder it did not write); a folder with any file is kept."""
    while _new_folders:
        folder = _new_folders.pop()
        if folder.is_dir() and holds_no_file(folder):
            for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                path.rmdir()
            folder.rmdir()


# What a stage's configuration becomes from what is on disk (the CLI and Python users call these).


def prepare_run(config: Any, subcommand: str, start_over: bool = False) -> None:
    """Rewrite a stage's parsed ``config`` (a jsonargparse Namespace of ``epspp <subcommand>``) from what is on
    disk, as ``epspp fit|validate|test|predict`` does before building anything; callable from Python.

    A ``fit`` without ground truth in its validation split selects checkpoints on what exists
    (``monitor_what_exists``); a ``predict`` writes in its ``pseudo_masks.output_dir`` and starts no W&B run;
    relative checkpoint and logger folders go inside ``trainer.default_root_dir`` (``resolve_run_paths``); the run
    folder follows the write rule (``check_run_folder``; ``start_over``: an earlier fit's files are set aside).
    """
    if subcommand == "fit":
        monitor_what_exists(config)
    output_dir = (config.get("pseudo_masks") or {}).get("output_dir")
    if subcommand == "predict" and output_dir:
        predict_in_output_dir(config, str(output_dir))
    if subcommand == "predict":
        drop_wandb(config)
    root = config.trainer.get("default_root_dir")
    note_new_folder(root or os.getcwd())  # removed again if the command fails before writing a file
    if root:
        resolve_run_paths(config, root)
    if first_of_all_processes():  # one run at a time in a folder (the other ranks are the same run); checked first
        refuse_inside(root or os.getcwd(), run_inputs(config), run_folder_option(subcommand))
        hold_folder(root or os.getcwd(), run_folder_option(subcommand))
    check_run_folder(config, subcommand, start_over)
    if first_of_all_processes():  # the folder is this run's: what a killed run left half-written goes
        remove_stale_temporaries_said(Path(root or os.getcwd()))
    for logger in config_loggers(config):  # after the checks: W&B inspects its folder (for git) at start-up and warns
        if getattr(logger, "class_path", "").endswith("WandbLogger"):  # "git root ... does not exist" otherwise
            os.makedirs(logger.init_args.get("save_dir") or root or os.getcwd(), exist_ok=True)


def monitor_what_exists(config: Any) -> None:
    """Without ground truth in the validation split, select checkpoints on what exists.

    Localization: ``val/mAP`` (image labels exist) instead of ``val/mIoU``.  Segmentation: nothing to
    validate on, so no validation and ``train/loss`` (lowest).  The checkpoint's ModelCheckpoint state
    names the monitor; the run says so.
    """
    data: Any = config.get("data") or {}
    split, root = data.get("val_split"), data.get("root")
    if not split or not root or has_ground_truth(Path(root), split, data.get("mask_dir")) is not False:
        return
    task = data.get("task", "localization")
    monitor, mode = ("val/mAP", "max") if task == "localization" else ("train/loss", "min")
    if task != "localization":
        data.val_split = None
    for callback in config.trainer.get("callbacks") or []:
        if callback.class_path.endswith("ModelCheckpoint") and callback.init_args.get("monitor") == "val/mIoU":
            callback.init_args.monitor, callback.init_args.mode = monitor, mode
            if task != "localization":  # no validation loop to save after: save at each training-epoch end
                callback.init_args.save_on_train_epoch_end = True
    what = "validation on the image labels only" if task == "localization" else "no validation"
    if first_process():
        print(
            f"[epspp] split '{split}' has no ground-truth mask: {what}; best.ckpt is selected on {monitor} ({mode})",
            file=sys.stderr,
        )


def has_ground_truth(root: Path, split: str, mask_dir: str | None) -> bool | None:
    """Whether an id of ``split`` has a ground-truth mask (None: unreadable split; the data module says why)."""
    try:
        ids = read_split(root, split)
    except DatasetError:
        return None
    masks = Path(mask_dir) if mask_dir else root / "SegmentationClassAug"
    return any((masks / f"{i}.png").is_file() for i in ids)


def predict_in_output_dir(config: Any, output_dir: str) -> None:
    """A predict run writes its configuration and logs in ``--pseudo_masks.output_dir``, never in the training
    run's folder that a training config names (its config.yaml is the record of how the checkpoint was made)."""
    given = config.trainer.get("default_root_dir")
    if given and os.path.normpath(given) != os.path.normpath(output_dir) and first_process():
        print(
            f"[epspp] predict writes its configuration and logs in --pseudo_masks.output_dir {output_dir}, not in "
            f"--trainer.default_root_dir {given}",
            file=sys.stderr,
        )
    config.trainer.default_root_dir = output_dir


def drop_wandb(config: Any) -> None:
    """No W&B run for a prediction: the configs' WandbLogger is removed (other loggers are kept)."""
    loggers = config.trainer.get("logger")
    if isinstance(loggers, list):
        kept = [logger for logger in loggers if not getattr(logger, "class_path", "").endswith("WandbLogger")]
        config.trainer.logger = kept or False
    elif getattr(loggers, "class_path", "").endswith("WandbLogger"):
        config.trainer.logger = False


def resolve_run_paths(config: Any, root: str) -> None:
    """Relative ModelCheckpoint and logger folders inside ``root`` (``--trainer.default_root_dir DIR`` moves a whole
    run; absolute paths are kept); a WandbLogger without a name is named after the run folder."""
    for callback in config.trainer.get("callbacks") or []:
        if callback.class_path.endswith("ModelCheckpoint"):
            callback.init_args.dirpath = inside(root, callback.init_args.get("dirpath") or "checkpoints")
    for logger in config_loggers(config):
        if hasattr(logger, "init_args") and "save_dir" in logger.init_args:
            logger.init_args.save_dir = inside(root, logger.init_args.save_dir or ".")
        if getattr(logger, "class_path", "").endswith("WandbLogger"):
            if not logger.init_args.get("name"):
                logger.init_args.name = run_name(root)


def checkpoint_folders(config: Any) -> list[Path]:
    """The folders the config's ModelCheckpoint callbacks write in (relative ones inside ``default_root_dir``)."""
    root = config.trainer.get("default_root_dir") or "."
    folders = [
        Path(inside(root, callback.init_args.get("dirpath") or "checkpoints"))
        for callback in config.trainer.get("callbacks") or []
        if callback.class_path.endswith("ModelCheckpoint")
    ]
    return list(dict.fromkeys(folders)) or [Path(root, "checkpoints")]


def keyword_checkpoint(config: Any, keyword: str) -> Path | None:
    """The file ``--ckpt_path last`` (the newest ``last*.ckpt``, as Lightning picks it) or ``best`` (the monitored
    ModelCheckpoint's ``<filename>.ckpt``) stands for in the config's checkpoint folders; None when there is none."""
    if keyword == "last":
        found = [
            path
            for folder in checkpoint_folders(config)
            if folder.is_dir()
            for path in folder.iterdir()
            if re.fullmatch(r"last(-\d+)?\.ckpt", path.name) and path.is_file()
        ]
        return max(found, key=lambda path: path.stat().st_mtime) if found else None
    for callback in config.trainer.get("callbacks") or []:
        if callback.class_path.endswith("ModelCheckpoint") and callback.init_args.get("monitor"):
            root = config.trainer.get("default_root_dir") or "."
            path = Path(
                inside(root, callback.init_args.get("dirpath") or "checkpoints"),
                f"{callback.init_args.get('filename') or 'best'}.ckpt",
            )
            return path if path.is_file() else None
    return None


def run_name(root: str) -> str:
    """W&B run name from the run folder: ``runs/demo/eps++/localization`` -> ``demo/eps++/localization``."""
    parts = os.path.normpath(root).split(os.sep)
    return "/".join(parts[parts.index("runs") + 1 :] if "runs" in parts else parts[-3:])


def inside(root: str, path: str) -> str:
    """``path`` inside ``root`` when it is relative (absolute paths are kept)."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def config_loggers(config: Any) -> list[Any]:
    """The config's ``trainer.logger`` as a list (one logger, a list of them, or a bool)."""
    loggers = config.trainer.get("logger")
    return loggers if isinstance(loggers, list) else [loggers]
