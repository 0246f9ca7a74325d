"""LightningCLI of epspp: the class count linked from the data, the mask writer as a config group."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from pytorch_lightning import Trainer
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins import CheckpointIO
from pytorch_lightning.plugins.layer_sync import LayerSync
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from epspp.callbacks.mask_writer import MaskWriter
from epspp.cli.quiet import is_verbose, quiet_wandb_settings
from epspp.config_checks import check_config, warmup_note
from epspp.data.classes import CLASSES_FILE, read_classes
from epspp.errors import CheckpointMismatchError, ConfigError, EPSError
from epspp.files import write_atomic
from epspp.nets.sync_bn import TimmSyncBatchNorm
from epspp.runs.folder import (
    checkpoint_folders,
    config_dump_path,
    config_loggers,
    dump_mark,
    first_process,
    keyword_checkpoint,
    prepare_run,
)
from epspp.tasks.checkpoint import AtomicCheckpointIO, check_classes

PROGRESS_BARS = ("RichProgressBar", "TQDMProgressBar", "StepProgressBar")
CKPT_KEYWORDS = ("last", "best", "hpc")  # --ckpt_path values that Lightning resolves itself


class EPSCLI(LightningCLI):
    """LightningCLI with the class count linked from the data and the mask writer as a group.

    ``start_over`` (``epspp fit --start_over``): an earlier fit in the run folder is set aside, not refused.
    """

    def __init__(self, *args: Any, start_over: bool = False, **kwargs: Any) -> None:
        self.start_over = start_over
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        """Link the data's classes to the model, and add the mask writer's and epspp's own options."""
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(MaskWriter, "pseudo_masks")
        parser.add_argument(
            "--allow_random_weights",
            type=bool,
            default=False,
            help="predict: allow running without --ckpt_path (masks of an untrained network)",
        )

    def instantiate_classes(self) -> None:
        """Bad input found while building the model (a weight file, say) reaches the user as its own one-line
        error: jsonargparse wraps it in "Does not validate against any of the Union subtypes"."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            cause = _user_error(error)
            if cause is None:
                raise
            raise cause from None

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """After parsing (and before Lightning reads ``--ckpt_path``'s hyper-parameters into the model's arguments).

        ``--weights_only`` of fit/validate/test/predict defaults to true (checkpoints are read without unpickling
        code; Lightning's default, None, leaves it to torch); ``--ckpt_path last|best`` outside ``fit`` becomes the
        file it stands for (the network is read from it, as for an explicit path); the checkpoint is checked; and
        the model's ``inference_options`` (scales, flips, thresholds, refinement) and ``speed_options``
        (channels-last, compile) are kept aside, so that the
        config's and the command line's values replace the checkpoint's (``before_instantiate_classes``).
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self.inference_options: dict = {}
        if not subcommand:
            return
        config = self.config[subcommand]
        if "weights_only" in config and config.get("weights_only") is None:
            config.weights_only = True
        model = config.get("model")
        keyword = str(config.get("ckpt_path")) if str(config.get("ckpt_path")) in ("last", "best") else None
        path = keyword_checkpoint(config, keyword) if keyword else None
        if keyword and subcommand != "fit":
            if path is None:
                folders = ", ".join(map(str, checkpoint_folders(config)))
                raise ConfigError(
                    f"--ckpt_path {keyword}: no {keyword} checkpoint in {folders} (the config's "
                    "ModelCheckpoint folders): pass the checkpoint file, e.g. --ckpt_path "
                    "RUN/checkpoints/last.ckpt"
                )
            config.ckpt_path = str(path)
        check_checkpoint(config, model, path)
        if model is not None and getattr(model, "class_path", None):
            module_name, _, class_name = model.class_path.rpartition(".")
            module_class = getattr(importlib.import_module(module_name), class_name)
            options = (*getattr(module_class, "inference_options", ()), *getattr(module_class, "speed_options", ()))
            self.inference_options = {key: model.init_args[key] for key in options if key in model.init_args}

    def keep_inference_options(self, config: Any) -> None:
        """The network from ``--ckpt_path``'s hyper-parameters (read by Lightning), the inference options from the
        config and command line; outside ``fit`` the backbone's initial weights are not loaded (``pretrained``
        false, ``pretrained_path`` null): the checkpoint's replace them, so a predict needs no download and no
        stage-0 file."""
        init_args = getattr(config.get("model"), "init_args", None)
        if init_args is None:
            return
        for key, value in self.inference_options.items():
            init_args[key] = value
        if self.subcommand != "fit" and config.get("ckpt_path"):
            for key, value in (("pretrained", False), ("pretrained_path", None)):
                if key in init_args:
                    init_args[key] = value

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """``--trainer.sync_batchnorm true`` converts timm's fused norm + activation layers correctly.

        Lightning's own converter turns them into plain SyncBatchNorm and drops the activation; the
        ``TimmSyncBatchNorm`` plugin (a ``TorchSyncBatchNorm``) keeps it, unless a layer-sync plugin is given.
        Checkpoints are saved by ``AtomicCheckpointIO`` unless a checkpoint-IO plugin is given. Lightning's own
        refusal of a trainer setting (``--trainer.max_steps -5``, an accelerator the machine lacks) is one line
        naming the flag.
        """
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config.get("trainer") or {}
        if "plugins" not in kwargs:
            plugins = trainer.get("plugins")
            plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
            if trainer.get("sync_batchnorm") and not any(isinstance(plugin, LayerSync) for plugin in plugins):
                plugins.append(TimmSyncBatchNorm())
            if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
                plugins.append(AtomicCheckpointIO())  # last.ckpt stays whole when a save is killed
            kwargs["plugins"] = plugins
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as error:
            if isinstance(error, EPSError):
                raise
            raise ConfigError(lightning_error(error, trainer)) from None

    def after_instantiate_classes(self) -> None:
        """Tell the mask writer which checkpoint the masks come from (it checks the folder's provenance); a fit
        shorter than its warm-up says so once the trainer is built (a refused setting stays a one-line error)."""
        super().after_instantiate_classes()
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand == "fit" and (note := warmup_note(config)) and first_process():
            print(f"[epspp] {note}", file=sys.stderr)
        for callback in cast(Any, self.trainer).callbacks:  # Lightning sets it without declaring it on the class
            if isinstance(callback, MaskWriter) and config.get("ckpt_path"):
                callback.checkpoint_path = str(config.ckpt_path)

    def before_instantiate_classes(self) -> None:
        """The checked, rewritten configuration of the run: the inference options of the config
        (``keep_inference_options``); the option checks (``epspp.config_checks``); with ``--trainer.enable_progress_bar
        false`` the configs' progress-bar callback is dropped (cluster logs stay clean) instead of Lightning refusing
        the combination; no model summary table unless asked for (``--trainer.enable_model_summary true`` or
        ``--verbose``); and the run folder policy, ``epspp.runs.folder.prepare_run`` (what exists on disk, the run
        folder's paths, the write rule).
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        self.keep_inference_options(config)
        if self.subcommand == "predict" and not config.get("ckpt_path") and not config.get("allow_random_weights"):
            raise ConfigError(
                "predict needs the trained network: pass --ckpt_path CKPT (or --allow_random_weights "
                "true for the masks of an untrained network)"
            )
        check_config(config)
        warn_oversubscription(config.trainer.get("accelerator"), config.trainer.get("devices"))
        if config.trainer.get("enable_model_summary") is None and not is_verbose():
            config.trainer.enable_model_summary = False  # the progress callback prints the parameter count
        if config.trainer.get("enable_progress_bar") is False and config.trainer.get("callbacks"):
            config.trainer.callbacks = [
                callback for callback in config.trainer.callbacks if not callback.class_path.endswith(PROGRESS_BARS)
            ]
        prepare_run(config, cast(str, self.subcommand), self.start_over)  # the run folder policy (runs.folder)
        if any(getattr(logger, "class_path", "").endswith("WandbLogger") for logger in config_loggers(config)):
            quiet_wandb_settings()


class RunConfigDump(SaveConfigCallback):
    """Lightning's ``config.yaml`` of a run, that never replaces a file epspp did not write, nor another subcommand's.

    The dump starts with ``runs.folder.dump_mark(subcommand)``; a ``config.yaml`` without it (a user's own config kept
    in the run folder, or the dump of the fit whose run folder a ``validate`` uses) is left as it is and the dump goes
    to ``config.<subcommand>.yaml`` (``runs.folder.config_dump_path``).  Written atomically, by rank 0.
    """

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        """Save the run's config in its log folder (rank 0, once)."""
        if self.already_saved:
            return
        log_dir = Path(cast(str, trainer.log_dir))  # broadcasts the folder
        if trainer.is_global_zero:
            subcommand = str(getattr(stage, "value", stage))  # Lightning's TrainerFn: "fit", "validate", ...
            path = config_dump_path(log_dir, subcommand, self.config_filename)
            text = dump_mark(subcommand) + self.parser.dump(self.config, skip_none=False)
            write_atomic(
                path,
                lambda tmp: tmp.write_text(text, encoding="utf-8"),
                "write the run's configuration",
                advice="free space or choose a writable --trainer.default_root_dir",
            )
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


def check_checkpoint(config: Any, model: Any, path: str | Path | None = None) -> None:
    """Fail in one line when ``--ckpt_path`` (or the file ``path`` its keyword stands for) is missing, unreadable,
    not a Lightning checkpoint or of another stage."""
    path = path or config.get("ckpt_path")
    if not path or str(path) in CKPT_KEYWORDS:
        return
    if not Path(path).is_file():
        raise ConfigError(f"--ckpt_path {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, ...: torch raises many types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointMismatchError(
            f"cannot read checkpoint {path} ({reason[:200]}): a truncated or foreign "
            "file? Use a checkpoint written by `epspp fit`"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointMismatchError(
            f"{path} is not a Lightning checkpoint (no state_dict): use a checkpoint "
            "written by `epspp fit` (checkpoints/last.ckpt or best.ckpt)"
        )
    root = (config.get("data") or {}).get("root")
    if root and Path(root, CLASSES_FILE).is_file():  # before the mask writer looks at its folder
        names = read_classes(root)
        check_classes(checkpoint, len(names) - 1, names)
    trained = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    wanted = getattr(model, "class_path", None) if model is not None else None
    if trained and wanted and trained.rpartition(".")[2] != wanted.rpartition(".")[2]:  # epspp.models.X = .tasks.X
        raise CheckpointMismatchError(
            f"{path} is a checkpoint of {trained.rpartition('.')[2]}, but this config "
            f"runs {wanted.rpartition('.')[2]}: give a checkpoint of that stage (stage 1: "
            "localization, stage 3: segmentation)"
        )


@contextlib.contextmanager
def wandb_run_finished() -> Iterator[None]:
    """Finish the W&B run that the command starts (its ``WandbLogger``'s) when the command ends, exit code 0, or 1
    when it fails: the run's records and files are written and the run closed before the process exits.

    Without it W&B leaves the run to its service, which closes it when the process that owns the service ends;
    a stage started by a process that used W&B (a notebook, a script, ``WANDB_SERVICE`` in its environment) joins
    that process's service, and its run stays open and keeps being written after the stage has ended.  A run
    that was active before the command (a caller's, which the logger then logs into) is left open.
    """
    before = _active_wandb_run()
    exit_code = 1
    try:
        yield
        exit_code = 0
    finally:
        run = _active_wandb_run()
        if run is not None and run is not before:
            run.finish(exit_code=exit_code)


def _active_wandb_run() -> Any:
    """``wandb.run`` when W&B is imported (never importing it), else None."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def lightning_error(error: Exception, trainer: Any) -> str:
    """Lightning's message of a refused trainer setting in one line, after the flag it names (a setting named in
    the message, else one whose value it quotes, e.g. 'gpu' of --trainer.accelerator)."""
    message = " ".join(str(error).split())
    settings = {key: value for key, value in trainer.items() if value is not None and key != "callbacks"}
    named = [key for key in settings if re.search(rf"\b{re.escape(key)}\b", message)]
    named = named or [
        key
        for key, value in settings.items()
        if isinstance(value, str | int | float)
        and not isinstance(value, bool)
        and str(value)
        and re.search(rf"(?<![\w.-]){re.escape(str(value))}(?!\w|\.\d)", message)
    ]
    return f"--trainer.{named[0]} {settings[named[0]]}: {message}" if named else f"{message} (a --trainer.* setting)"


def warn_oversubscription(accelerator: Any, devices: Any) -> None:
    """Warn when more CPU processes are asked for than the machine has cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    on_cpu = accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available())
    devices = int(devices) if isinstance(devices, str) and devices.isdigit() else devices
    if on_cpu and isinstance(devices, int) and devices > cores and first_process():
        print(
            f"[epspp] warning: --trainer.devices {devices} starts {devices} processes on {cores} CPU cores: "
            "they compete for the cores and run slower than fewer would",
            file=sys.stderr,
        )


def _user_error(error: BaseException | None) -> EPSError | None:
    """The first EPSError among ``error`` and the exceptions it was raised from."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, EPSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
