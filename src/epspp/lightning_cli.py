"""LightningCLI of epspp: the class count linked from the data, the mask writer as a config group."""

from __future__ import annotations

import importlib
import os
from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.plugins.layer_sync import LayerSync

from epspp.callbacks.pseudo_masks import PseudoMaskWriter
from epspp.errors import EPSError
from epspp.models.sync_bn import TimmSyncBatchNorm

PROGRESS_BARS = ("RichProgressBar", "TQDMProgressBar")


class EPSCLI(LightningCLI):
    """LightningCLI with the class count linked from the data and the mask writer as a group."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(PseudoMaskWriter, "pseudo_masks")

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

    def _parse_ckpt_path(self) -> None:
        """Take the network from ``--ckpt_path``'s hyper-parameters, but inference options from the config.

        Lightning replaces the model's arguments by the checkpoint's; the options a module lists in
        ``inference_options`` (scales, flips, thresholds, refinement) keep the values of the config
        and the command line, so ``pseudo_masks.yaml`` and ``--model.init_args.bg_threshold`` apply.
        """
        subcommand = self.config.get("subcommand")
        model = self.config[subcommand].get("model") if subcommand else None
        keep: dict = {}
        if model is not None and getattr(model, "class_path", None):
            module_name, _, class_name = model.class_path.rpartition(".")
            options = getattr(getattr(importlib.import_module(module_name), class_name), "inference_options", ())
            keep = {key: model.init_args[key] for key in options if key in model.init_args}
        super()._parse_ckpt_path()
        for key, value in keep.items():
            self.config[subcommand].model.init_args[key] = value

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """``--trainer.sync_batchnorm true`` converts timm's fused norm + activation layers correctly.

        Lightning's own converter turns them into plain SyncBatchNorm and drops the activation; the
        ``TimmSyncBatchNorm`` plugin (a ``TorchSyncBatchNorm``) keeps it, unless a layer-sync plugin is given.
        """
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config.get("trainer") or {}
        if trainer.get("sync_batchnorm") and "plugins" not in kwargs:
            plugins = trainer.get("plugins")
            plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
            if not any(isinstance(plugin, LayerSync) for plugin in plugins):
                kwargs["plugins"] = [*plugins, TimmSyncBatchNorm()]
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        """Resolve relative run paths against ``trainer.default_root_dir``.

        A ModelCheckpoint ``dirpath`` (default ``checkpoints``) and a logger ``save_dir`` that are
        relative are taken inside ``default_root_dir``, so ``--trainer.default_root_dir DIR`` moves a
        whole run.  Absolute paths are kept.  A WandbLogger without a ``name`` is named after the
        run folder (stage and method, e.g. ``demo/eps++/localization``).  With
        ``--trainer.enable_progress_bar false`` the configs' progress-bar callback is dropped
        (cluster logs stay clean) instead of Lightning refusing the combination.  A ``predict`` run
        without a ``default_root_dir`` writes in its ``--pseudo_masks.output_dir`` (Lightning's
        ``config.yaml``: how the masks were made).
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        output_dir = (config.get("pseudo_masks") or {}).get("output_dir")
        if self.subcommand == "predict" and output_dir and not config.trainer.get("default_root_dir"):
            config.trainer.default_root_dir = output_dir  # config.yaml beside the masks, not in the cwd
        if config.trainer.get("enable_progress_bar") is False and config.trainer.get("callbacks"):
            config.trainer.callbacks = [callback for callback in config.trainer.callbacks
                                        if not callback.class_path.endswith(PROGRESS_BARS)]
        root = config.trainer.get("default_root_dir")
        if not root:
            return
        for callback in config.trainer.get("callbacks") or []:
            if callback.class_path.endswith("ModelCheckpoint"):
                callback.init_args.dirpath = _inside(root, callback.init_args.get("dirpath") or "checkpoints")
        loggers = config.trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if hasattr(logger, "init_args") and "save_dir" in logger.init_args:
                logger.init_args.save_dir = _inside(root, logger.init_args.save_dir or ".")
            if getattr(logger, "class_path", "").endswith("WandbLogger"):
                if not logger.init_args.get("name"):
                    logger.init_args.name = run_name(root)
                # W&B inspects its folder (for git) at start-up and warns "git root ... does not exist" otherwise
                os.makedirs(logger.init_args.get("save_dir") or root, exist_ok=True)


def _user_error(error: BaseException) -> EPSError | None:
    """The first EPSError among ``error`` and the exceptions it was raised from."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, EPSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def run_name(root: str) -> str:
    """W&B run name from the run folder: ``runs/demo/eps++/localization`` -> ``demo/eps++/localization``."""
    parts = os.path.normpath(root).split(os.sep)
    return "/".join(parts[parts.index("runs") + 1:] if "runs" in parts else parts[-3:])


def _inside(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))
