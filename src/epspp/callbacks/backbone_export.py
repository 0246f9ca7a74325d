"""Stage 0's product: the trained backbone's own state dict, the ``pretrained_path`` of stages 1 and 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl

from epspp.errors import ConfigError
from epspp.tasks.checkpoint import atomic_torch_save


class BackboneExport(pl.Callback):
    """At the end of a fit, write the backbone of a LocalizationModule to ``DEFAULT_ROOT_DIR/<filename>``.

    The file holds the feature extractor's own state dict (``net.backbone.body``), which
    ``pretrained_path`` of ``LocalizationModule`` and ``SegmentationModule`` loads for the same
    ``backbone`` and ``backbone_kwargs`` (any output stride). It is written under a temporary name in its
    folder and renamed, so an interrupted run never leaves a partial file; a fit that stops on an error
    or an interruption writes none (Lightning does not call ``on_fit_end`` then).

    Args:
        filename: file name, relative to ``trainer.default_root_dir`` (or an absolute path).
    """

    def __init__(self, filename: str = "backbone.pth") -> None:
        super().__init__()
        self.filename = filename

    def path(self, trainer: pl.Trainer) -> Path:
        """Where the backbone is written."""
        return Path(trainer.default_root_dir) / self.filename

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Refuse a run whose module has no localization backbone to export."""
        if not hasattr(getattr(getattr(pl_module, "net", None), "backbone", None), "body"):
            raise ConfigError(
                f"BackboneExport writes the backbone of a LocalizationModule; this run trains a "
                f"{type(pl_module).__name__}: remove the callback from the config"
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the trained backbone's weights (rank 0)."""
        if not trainer.is_global_zero:
            return
        body = cast(Any, pl_module).net.backbone.body  # a LocalizationModule's (checked in setup)
        state = {key: value.detach().cpu().clone() for key, value in body.state_dict().items()}
        target = self.path(trainer)
        atomic_torch_save(state, target, "write the backbone")
        print(
            f"[epspp] wrote the backbone {target} ({len(state)} tensors): use it as "
            f"--model.init_args.pretrained_path {target}"
        )
