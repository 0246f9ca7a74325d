"""The ``epspp`` command: LightningCLI subcommands (fit/validate/test/predict) plus prepare/evaluate.

    epspp fit --config configs/demo/localization_eps++.yaml
    epspp predict --config configs/demo/pseudo_masks.yaml --ckpt_path runs/.../best.ckpt
    epspp prepare synthetic --root data/synthetic
    epspp evaluate --pred-dir runs/demo/eps++/pseudo_masks --root data/synthetic --split train
"""

from __future__ import annotations

import os
import sys


def main(args: list[str] | None = None) -> None:
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
