"""Test-only callbacks that the DDP and resume tests add to real ``epspp`` processes.

The tests run ``epspp`` with ``PYTHONPATH`` set to this folder and name the callbacks by module path,
e.g. ``--trainer.callbacks+={"class_path": "ddp_probe.MetricProbe", "init_args": {"out_dir": DIR}}``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch


def _number(value: object) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().cpu())
    return float(value) if isinstance(value, int | float) else None


class MetricProbe(pl.Callback):
    """Writes what every rank sees to ``OUT_DIR/rank<global rank>.json``.

    After every training batch the rank records ``trainer.callback_metrics`` (the values Lightning
    logs, after ``sync_dist``); at the end of every validation, test and prediction it records the
    metrics again, how many samples it was given, its world size and whether SyncBatchNorm layers
    are in the model.

    Args:
        out_dir: folder of the per-rank files.
    """

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.record: dict = {"train": [], "val": [], "test": [], "samples": {}}

    def _dump(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record |= {
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "sync_batchnorm_layers": sum(isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules()),
            "batchnorm_layers": sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in pl_module.modules()),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=1))
        os.replace(tmp, path)

    @staticmethod
    def _metrics(trainer: pl.Trainer) -> dict[str, float]:
        metrics = {key: _number(value) for key, value in trainer.callback_metrics.items()}
        return {key: value for key, value in metrics.items() if value is not None}

    def _count(self, stage: str, batch: dict) -> None:
        self.record["samples"][stage] = self.record["samples"].get(stage, 0) + len(batch["image"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self._count("train", batch)
        self.record["train"].append({"step": trainer.global_step, **self._metrics(trainer)})
        self._dump(trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if not trainer.sanity_checking:
            self._count("val", batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        self._count("test", batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        self._count("predict", batch)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.record["val"].append({"step": trainer.global_step, **self._metrics(trainer)})
            self._dump(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record["test"].append(self._metrics(trainer))
        self._dump(trainer, pl_module)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._dump(trainer, pl_module)


class KillAt(pl.Callback):
    """Kills its own process with SIGKILL, as a pre-emption or an out-of-memory kill does.

    Training: at the start of the batch that would make global step ``step`` + 1, i.e. once ``step``
    optimizer steps are done.  Prediction: at the start of batch ``predict_batch`` (the masks of the
    earlier batches are written).  Nothing is flushed or saved: no Lightning hook runs after it.

    Args:
        step: training steps to complete before the kill (None: never during training).
        predict_batch: prediction batch index at which to kill (None: never during prediction).
    """

    def __init__(self, step: int | None = None, predict_batch: int | None = None) -> None:
        super().__init__()
        self.step = step
        self.predict_batch = predict_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.step is not None and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if self.predict_batch is not None and batch_idx >= self.predict_batch:
            os.kill(os.getpid(), signal.SIGKILL)
