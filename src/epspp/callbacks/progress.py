"""The configs' progress callback: a rich bar in a terminal, plain lines in a log file, ``progress.json`` of a fit.

At setup ``StepProgressBar`` looks at stdout: a terminal gets Lightning's rich bar, whose training bar of a
step-limited fit counts the whole fit's steps (so its rate and ETA are the fit's, not one epoch's); a file or a
pipe (nohup, SLURM) gets a plain line every ``every_n_steps`` steps and at least every ``every_s`` seconds::

    [fit] step 120/500 (24%)  loss 0.512  1.9 it/s  ETA 3 min 20 s

``validate``, ``test`` and ``predict`` print the same lines per batch. A fit also writes
``<trainer.default_root_dir>/progress.json`` (``epspp.runs.progress``) at every plain line, every
``PROGRESS_WRITE_S`` seconds and at the end. Rank zero only.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

from epspp.errors import OutputError
from epspp.runs.progress import StageClock, format_duration, format_rate, progress_line, progress_record, write_progress

#: seconds between two writes of progress.json when no plain line is printed
PROGRESS_WRITE_S = 10.0
LOSS_KEYS = ("train/loss", "loss", "train_loss")


def stdout_is_terminal() -> bool:
    """Whether stdout is an interactive terminal (not a file, a pipe or a captured stream)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def step_limited(trainer: pl.Trainer) -> bool:
    """Whether the fit stops at ``max_steps`` rather than after a number of epochs."""
    return trainer.max_steps > 0 and trainer.max_epochs in (None, -1)


def fit_total_steps(trainer: pl.Trainer) -> int:
    """The optimizer steps of the whole fit (``max_steps``, else what the epochs make), -1 when unbounded."""
    if trainer.max_steps > 0:
        return int(trainer.max_steps)
    try:
        total = trainer.estimated_stepping_batches
    except Exception:  # noqa: BLE001 - no training loader yet or an iterable of unknown length
        return -1
    return int(total) if math.isfinite(total) else -1


def loss_of(metrics: dict[str, Any]) -> float | None:
    """The training loss among the progress-bar metrics (``train/loss``, else ``loss``), None when not logged."""
    for key in LOSS_KEYS:
        value = metrics.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


class StepProgressBar(RichProgressBar):
    """Rich bar in a terminal, plain progress lines elsewhere; ``progress.json`` of a fit (module docstring).

    Args:
        every_n_steps: plain mode: a line every this many steps (batches for validate/test/predict).
        every_s: plain mode: a line at least this often (seconds), checked at every step or batch.
        plain: force the plain lines (true) or the rich bar (false); default: plain when stdout is not a terminal.
        refresh_rate: rich bar refreshes per second (Lightning's ``RichProgressBar``).
        leave: keep the rich bar of each finished epoch.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        every_s: float = 30.0,
        plain: bool | None = None,
        refresh_rate: int = 100,
        leave: bool = False,
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.every_n_steps, self.every_s, self.plain_setting = max(1, int(every_n_steps)), float(every_s), plain
        self.plain = bool(plain)
        self.clock: StageClock | None = None
        self.stage = "fit"
        self.time: Callable[[], float] = time.monotonic  # replaced by a fake clock in tests
        self.last_print = self.last_write = 0.0
        self.batches = 0  # validate/test/predict: batches done in the stage

    # ------------------------------------------------------------------ choice of the display
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Choose the display: plain lines unless stdout is a terminal (or ``plain`` says otherwise)."""
        super().setup(trainer, pl_module, stage)
        self.plain = (not stdout_is_terminal()) if self.plain_setting is None else bool(self.plain_setting)
        if self.plain:
            self.disable()  # the rich hooks do nothing; the plain ones below print

    def _speaks(self, trainer: pl.Trainer) -> bool:
        return self.plain and trainer.is_global_zero

    def _say(self, line: str) -> None:
        print(line, flush=True)
        self.last_print = self.time()

    # ------------------------------------------------------------------ fit
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """One line with the model's parameter count (the summary table is hidden by default)."""
        super().on_fit_start(trainer, pl_module)
        if trainer.is_global_zero:
            total = sum(p.numel() for p in pl_module.parameters())
            trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
            print(
                f"[fit] {type(pl_module).__name__}: {total / 1e6:.2f} M parameters ({trainable / 1e6:.2f} M trainable)",
                flush=True,
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the fit's clock and its progress line."""
        super().on_train_start(trainer, pl_module)
        now = self.time()
        self.stage, self.clock = "fit", StageClock(fit_total_steps(trainer), now, offset=int(trainer.global_step))
        self.last_print = self.last_write = now
        if trainer.is_global_zero:
            self._write(trainer, done=False)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A step-limited fit's rich bar counts the whole fit's steps: created once, never reset per epoch."""
        if self.is_disabled or not step_limited(trainer):
            super().on_train_epoch_start(trainer, pl_module)
            return
        self._fit_task(trainer)
        self.refresh()

    def _fit_task(self, trainer: pl.Trainer) -> None:
        if self.progress is None:
            return
        description = self._get_train_description(trainer.current_epoch)
        if self.train_progress_bar_id is None:
            self.train_progress_bar_id = self.progress.add_task(
                description, total=trainer.max_steps, completed=trainer.global_step
            )
        else:
            self.progress.update(self.train_progress_bar_id, description=description, visible=True)

    # a private method of RichProgressBar overridden: Lightning has no public hook for the bar's description (its
    # callers, on_train_epoch_start and the validation bars, are public but would have to be copied whole)
    def _get_train_description(self, current_epoch: int) -> str:
        if step_limited(self.trainer):
            return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Advance the fit's progress (and write progress.json)."""
        if self.is_enabled and step_limited(trainer):
            if self.train_progress_bar_id is None:  # resumed mid-epoch
                self._fit_task(trainer)
            self._update(self.train_progress_bar_id, trainer.global_step)
            self._update_metrics(trainer, pl_module)
            self.refresh()
        else:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        clock, step = self.clock, int(trainer.global_step)
        if clock is None or step <= clock.done or not trainer.is_global_zero:
            return  # an accumulated batch: the step has not advanced
        now = self.time()
        first = clock.first is None
        clock.update(step, now)
        printed = False
        if self.plain and (first or step % self.every_n_steps == 0 or now - self.last_print >= self.every_s):
            self._say(progress_line("fit", "step", clock, loss_of(self.get_metrics(trainer, pl_module))))
            printed = True
        if printed or now - self.last_write >= PROGRESS_WRITE_S:
            self._write(trainer, done=False)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Advance the validation's progress; inside a fit, a line when the fit has been quiet."""
        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if trainer.sanity_checking or not self._speaks(trainer):
            return
        if trainer.state.fn == "fit":  # validation inside a fit: a line when the fit has been quiet for every_s
            if self.time() - self.last_print >= self.every_s and self.clock is not None:
                self._say(
                    f"[fit] validating: batch {batch_idx + 1}/{self._total(trainer.num_val_batches)} "
                    f"(step {self.clock.done}/{self.clock.total})"
                )
            return
        self._batch_done()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print the fit's last line and write its final progress."""
        super().on_train_end(trainer, pl_module)
        clock = self.clock
        if clock is None or not trainer.is_global_zero:
            return
        if clock.done < trainer.global_step:
            clock.update(int(trainer.global_step), self.time())
        if self.plain:
            rate = f" ({format_rate(clock.rate)})" if clock.rate else ""
            self._say(
                f"[fit] done: step {clock.done}/{clock.total} in {format_duration(clock.elapsed(self.time()))}{rate}"
            )
        self._write(trainer, done=True)

    def _write(self, trainer: pl.Trainer, done: bool) -> None:
        if self.clock is None:
            return
        now = self.time()
        try:
            write_progress(trainer.default_root_dir, progress_record(self.clock, now, done))
        except (OSError, OutputError) as error:  # a full disk must not stop the fit; the next write tries again
            reason = error.reason if isinstance(error, OutputError) else error.strerror  # write_atomic's: OutputError
            print(
                f"[epspp] warning: cannot write {trainer.default_root_dir}/progress.json: {reason}",
                file=sys.stderr,
            )
        self.last_write = now

    # ------------------------------------------------------------------ validate / test / predict
    def _start_batches(self, trainer: pl.Trainer, stage: str, totals: Any) -> None:
        if trainer.state.fn == "fit" or trainer.sanity_checking:
            return
        now = self.time()
        self.stage, self.batches = stage, 0
        self.clock = StageClock(self._total(totals), now)
        self.last_print = now

    def _batch_done(self) -> None:
        clock = self.clock
        if clock is None:
            return
        self.batches += 1
        now = self.time()
        first = clock.first is None
        clock.update(self.batches, now)
        if first or self.batches % self.every_n_steps == 0 or now - self.last_print >= self.every_s:
            self._say(progress_line(self.stage, "batch", clock))

    def _end_batches(self, trainer: pl.Trainer) -> None:
        clock = self.clock
        if not self._speaks(trainer) or clock is None or trainer.state.fn == "fit":
            return
        rate = f" ({format_rate(clock.rate)})" if clock.rate else ""
        self._say(f"[{self.stage}] done: {clock.done} batches in {format_duration(clock.elapsed(self.time()))}{rate}")

    @staticmethod
    def _total(totals: Any) -> int:
        values = totals if isinstance(totals, list | tuple) else [totals]
        total = sum(values)
        return int(total) if math.isfinite(total) else -1

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the validation's progress line."""
        super().on_validation_start(trainer, pl_module)
        self._start_batches(trainer, "validate", trainer.num_val_batches)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """End the validation's progress line."""
        super().on_validation_end(trainer, pl_module)
        self._end_batches(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the test's progress line."""
        super().on_test_start(trainer, pl_module)
        self._start_batches(trainer, "test", trainer.num_test_batches)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Advance the test's progress."""
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if self._speaks(trainer):
            self._batch_done()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """End the test's progress line."""
        super().on_test_end(trainer, pl_module)
        self._end_batches(trainer)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the prediction's progress line."""
        super().on_predict_start(trainer, pl_module)
        self._start_batches(trainer, "predict", trainer.num_predict_batches)

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Advance the prediction's progress."""
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if self._speaks(trainer):
            self._batch_done()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """End the prediction's progress line."""
        super().on_predict_end(trainer, pl_module)
        self._end_batches(trainer)
