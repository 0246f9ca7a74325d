"""LightningCLI of epspp: the class count linked from the data, the mask writer as a config group."""

from __future__ import annotations

import os

from pytorch_lightning.cli import LightningCLI

from epspp.callbacks.pseudo_masks import PseudoMaskWriter


class EPSCLI(LightningCLI):
    """LightningCLI with the class count linked from the data and the mask writer as a group."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(PseudoMaskWriter, "pseudo_masks")

    def before_instantiate_classes(self) -> None:
        """Resolve relative run paths against ``trainer.default_root_dir``.

        A ModelCheckpoint ``dirpath`` (default ``checkpoints``) and a logger ``save_dir`` that are
        relative are taken inside ``default_root_dir``, so ``--trainer.default_root_dir DIR`` moves a
        whole run.  Absolute paths are kept.
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
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


def _inside(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))
