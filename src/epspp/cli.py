"""The ``epspp`` command: LightningCLI subcommands (fit/validate/test/predict) plus prepare/evaluate.

    epspp fit --config configs/demo/localization_eps++.yaml
    epspp predict --config configs/demo/pseudo_masks.yaml --ckpt_path runs/.../best.ckpt
    epspp prepare synthetic --root data/synthetic
    epspp evaluate --pred-dir runs/demo/eps++/pseudo_masks --root data/synthetic --split train
    epspp batch-args --config configs/voc/localization_eps++.yaml --devices 4   # DDP batch/lr overrides
"""

from __future__ import annotations

import os
import sys
import warnings

# Warnings of Lightning that a user of ``epspp`` cannot act on: (the subcommands they are hidden in, message).
INFERENCE = ("predict", "validate", "test")
UNACTIONABLE_WARNINGS = [
    (("fit", *INFERENCE), r"`isinstance\(treespec, LeafSpec\)` is deprecated"),  # Lightning internals, newer torch
    # inference from a training checkpoint: its ModelCheckpoint state is not needed to predict or score
    (INFERENCE, r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint"),
    (INFERENCE, r"The dirpath has changed from"),
    # a resumed pseudo-mask run with every mask already written (the writer says so itself)
    (("predict",), r"Total length of `DataLoader` across ranks is zero"),
]


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``epspp`` console script (``args`` lets tests call it in-process)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "prepare":
        from epspp.data.prepare import prepare_main

        raise SystemExit(prepare_main(argv[1:]))
    if argv and argv[0] == "demo":
        from epspp.pipeline import demo_main

        raise SystemExit(demo_main(argv[1:]))
    if argv and argv[0] == "batch-args":
        from epspp.batch_scaling import batch_args_main

        raise SystemExit(batch_args_main(argv[1:]))
    if argv and argv[0] == "evaluate":
        from epspp.evaluate import evaluate_main

        raise SystemExit(evaluate_main(argv[1:]))
    os.environ.setdefault("WANDB_MODE", "offline")  # never ask for a login unless the user opts in
    quiet_unactionable_warnings(argv[0] if argv else "")
    from pytorch_lightning import LightningModule

    from epspp.data.datamodule import EPSDataModule
    from epspp.errors import EPSError
    from epspp.lightning_cli import EPSCLI

    try:
        EPSCLI(
            LightningModule,
            EPSDataModule,
            subclass_mode_model=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except EPSError as error:
        print(f"epspp: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def quiet_unactionable_warnings(subcommand: str) -> None:
    """Hide the Lightning warnings of ``UNACTIONABLE_WARNINGS`` that apply to this subcommand."""
    for subcommands, message in UNACTIONABLE_WARNINGS:
        if subcommand in subcommands:
            warnings.filterwarnings("ignore", message=message)
