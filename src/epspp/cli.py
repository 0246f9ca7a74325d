"""The ``epspp`` command: LightningCLI subcommands (fit/validate/test/predict) plus prepare/evaluate.

    epspp fit --config configs/demo/localization_eps++.yaml
    epspp predict --config configs/demo/pseudo_masks.yaml --ckpt_path runs/.../best.ckpt
    epspp prepare synthetic --root data/synthetic
    epspp evaluate --pred-dir runs/demo/eps++/pseudo_masks --root data/synthetic --split train
"""

from __future__ import annotations

import os
import sys

from pytorch_lightning import LightningModule
from pytorch_lightning.cli import ArgsType, LightningCLI

from epspp.callbacks.pseudo_masks import PseudoMaskWriter
from epspp.data.datamodule import EPSDataModule
from epspp.data.io import DatasetError
from epspp.models.checkpoint import CheckpointMismatchError


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


def main(args: ArgsType = None) -> None:
    """Entry point of the ``epspp`` console script (``args`` lets tests call it in-process)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "prepare":
        from epspp.data.prepare import prepare_main

        raise SystemExit(prepare_main(argv[1:]))
    if argv and argv[0] == "demo":
        from epspp.pipeline import demo_main

        raise SystemExit(demo_main(argv[1:]))
    if argv and argv[0] == "evaluate":
        from epspp.evaluate import evaluate_main

        raise SystemExit(evaluate_main(argv[1:]))
    os.environ.setdefault("WANDB_MODE", "offline")  # never ask for a login unless the user opts in
    try:
        EPSCLI(
            LightningModule,
            EPSDataModule,
            subclass_mode_model=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (DatasetError, CheckpointMismatchError) as error:
        print(f"epspp: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
