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


class EPSCLI(LightningCLI):
    """LightningCLI with the class count linked from the data and the mask writer as a group."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(PseudoMaskWriter, "pseudo_masks")

    def before_instantiate_classes(self) -> None:
        """Put checkpoints and logs of a run under ``trainer.default_root_dir`` unless a config says otherwise.

        ModelCheckpoint callbacks without ``dirpath`` write to ``<default_root_dir>/checkpoints`` and
        loggers without ``save_dir`` to ``<default_root_dir>``, so one override moves a whole run.
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.get("default_root_dir")
        if not root:
            return
        for callback in config.trainer.get("callbacks") or []:
            if callback.class_path.endswith("ModelCheckpoint") and callback.init_args.get("dirpath") is None:
                callback.init_args.dirpath = os.path.join(root, "checkpoints")
        loggers = config.trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers] if loggers else []:
            if hasattr(logger, "init_args") and logger.init_args.get("save_dir") in (None, "."):
                logger.init_args.save_dir = root


def main(args: ArgsType = None) -> None:
    """Entry point of the ``epspp`` console script (``args`` lets tests call it in-process)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "prepare":
        from epspp.data.prepare import prepare_main

        raise SystemExit(prepare_main(argv[1:]))
    if argv and argv[0] == "evaluate":
        from epspp.evaluate import evaluate_main

        raise SystemExit(evaluate_main(argv[1:]))
    os.environ.setdefault("WANDB_MODE", "offline")  # never ask for a login unless the user opts in
    EPSCLI(
        LightningModule,
        EPSDataModule,
        subclass_mode_model=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=argv,
    )
