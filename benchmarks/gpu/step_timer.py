"""A Lightning callback that times the steps of a fit or a prediction, for benchmarks/gpu/check.py.

``--trainer.callbacks+='{class_path: step_timer.StepTimer, init_args: {out: FILE, warmup: N}}'`` (with
benchmarks/gpu on the Python path): the time between the ends of consecutive batches after ``warmup`` batches,
the device synchronized at each end, so the figure includes the data loader's waits and the loop's own work.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


class StepTimer(pl.Callback):
    """Seconds per training (or prediction) batch after ``warmup`` batches, written to ``out`` as JSON."""

    def __init__(self, out: str, warmup: int = 5) -> None:
        self.out = Path(out)
        self.warmup = warmup
        self.ends: list[float] = []
        self.losses: list[float] = []
        self.peak_memory_gb: float | None = None

    def _mark(self, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.ends.append(time.perf_counter())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        """Time stamp (and loss) of a finished training step."""
        self._mark(pl_module)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.losses.append(float(loss.detach()))

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Time stamp of a finished prediction batch."""
        self._mark(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the training steps' timings."""
        self._write(pl_module, "train")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the prediction batches' timings."""
        self._write(pl_module, "predict")

    def _write(self, pl_module: pl.LightningModule, loop: str) -> None:
        timed = self.ends[max(self.warmup - 1, 0) :]  # from the end of the last warm-up batch
        intervals = [b - a for a, b in zip(timed, timed[1:], strict=False)]
        if pl_module.device.type == "cuda":
            self.peak_memory_gb = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
        result = {
            "loop": loop,
            "batches": len(self.ends),
            "warmup": self.warmup,
            "timed": len(intervals),
            "seconds_per_batch": sum(intervals) / len(intervals) if intervals else None,
            "min_seconds": min(intervals) if intervals else None,
            "max_seconds": max(intervals) if intervals else None,
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "peak_memory_gb": self.peak_memory_gb,
        }
        partial = self.out.with_name(self.out.name + ".partial")
        partial.write_text(json.dumps(result, indent=1))
        os.replace(partial, self.out)
