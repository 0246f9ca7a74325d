"""The progress bar of the configs: Lightning's rich bar, readable when a fit is limited by steps."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """``RichProgressBar`` whose training bar of a step-limited fit (``max_steps`` set, no ``max_epochs``) reads
    ``step 120/500 (epoch 20)``, updated at every step, instead of Lightning's ``Epoch 20/-2``."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_steps > 0 and trainer.max_epochs in (None, -1):
            return f"step {trainer.global_step}/{trainer.max_steps} (epoch {current_epoch})"
        return super()._get_train_description(current_epoch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.progress is not None and self.train_progress_bar_id is not None and trainer.max_steps > 0:
            self.progress.update(self.train_progress_bar_id,
                                 description=self._get_train_description(trainer.current_epoch))
