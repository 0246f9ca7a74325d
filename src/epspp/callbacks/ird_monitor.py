"""Watching IRD while it trains: ``IRDMonitor``, the callback that records IRD's telemetry and warns of a collapse.

``LocalizationModule`` computes and logs IRD's per-step values (``train/inconsistent*``, ``train/fg_salient``,
``train/threshold_map_*``) and adds this callback itself when it trains with ``saliency_loss: ird``
(``configure_callbacks``), so every config keeps the telemetry file and the warning.

IRD drops from the saliency loss every pixel where the PAMR-refined foreground and the saliency map
disagree.  When the localization maps are not confidently above 0.5 on the objects (a backbone that is
not pretrained, a short warm-up, maps too coarse for PAMR, poor saliency maps), every salient pixel
ends up in the dropped region: the loss then only pushes the foreground down on the background, and
the background channel takes the objects.  ``CollapseMonitor`` detects this from the per-step
``train/inconsistent_salient`` (``epspp.losses.ird_telemetry``) and says so once.  ``TelemetryRecord`` keeps
every step's telemetry (not only the logged steps) and writes it to the run folder's ``ird_telemetry.csv``,
which the demo report and the studies average.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections import deque
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl

from epspp.files import write_text
from epspp.runs.logs import TELEMETRY_FILE, WARNINGS_FILE  # the run folder's files (runs/logs.py reads them)

#: N against the injected saliency errors (``epspp.losses.ird_telemetry``), recorded only when the training batches
#: carry ``saliency_error`` (``data.saliency_errors: true``); NaN (an empty cell) when a ratio has no pixel
ERROR_KEYS = ("error_precision", "error_recall", "correct_dropped")
#: the columns of the telemetry record besides ``step`` (``epspp.losses.ird_telemetry``)
TELEMETRY_KEYS = (
    "inconsistent_salient",
    "inconsistent_background",
    "inconsistent",
    "fg_salient",
    "threshold_map_salient",
    "threshold_map_background",
    *ERROR_KEYS,
)
#: the other readings of B() for each, named by the collapse warning
OTHER_READING = {
    "normalized": "softmax or floored",
    "softmax": "normalized or floored",
    "floored": "normalized or softmax",
}


class CollapseMonitor:
    """Fires once when the share of salient pixels in IRD's dropped region averages >= ``threshold``
    over ``window`` consecutive steps after the warm-up.

    Args:
        window: number of consecutive steps averaged.
        threshold: the collapse threshold of the mean share.
        reading: the run's ``ird_threshold_maps`` (which map B() thresholds), named in the warning with the other.
    """

    def __init__(self, window: int = 50, threshold: float = 0.95, reading: str = "normalized") -> None:
        self.window, self.threshold, self.reading = int(window), float(threshold), reading
        self.values: deque[float] = deque(maxlen=self.window)
        self.fired_at: int | None = None

    def update(self, step: int, inconsistent_salient: float) -> str | None:
        """Record one step's share; return the warning the first time the window's mean reaches the threshold."""
        self.values.append(float(inconsistent_salient))
        if self.fired_at is not None or len(self.values) < self.window:
            return None
        mean = math.fsum(self.values) / len(self.values)  # exact sum: a mean at the threshold is at it
        if mean < self.threshold:
            return None
        self.fired_at = int(step)
        return (
            f"IRD collapse at step {step}: on average {mean:.1%} of the salient pixels (saliency > 0.5) were in "
            f"the dropped inconsistent region over the last {self.window} steps, so the saliency loss no longer "
            "sees the objects and the background channel takes them. Check: a backbone that is not pretrained "
            "(pretrained / pretrained_path), the warm-up length (ird_warmup_steps), the map resolution (crop "
            "size, output_stride, PAMR dilations), the saliency maps, and the reading of B(): this run thresholds "
            f"the {self.reading} maps (ird_threshold_maps: {self.reading}; the other readings: "
            f"ird_threshold_maps: {OTHER_READING.get(self.reading, 'normalized')}, docs/architecture.md "
            '"How we read IRD\'s B()").'
        )

    def state_dict(self) -> dict:
        """The window of values and the step the warning fired at, for the checkpoint."""
        return {"values": list(self.values), "fired_at": self.fired_at}

    def load_state_dict(self, state: dict) -> None:
        """Restore the window and the firing step from a checkpoint."""
        self.values = deque(state.get("values", []), maxlen=self.window)
        self.fired_at = state.get("fired_at")


class TelemetryRecord:
    """IRD's telemetry of every training step (rank-averaged), kept in the checkpoint and written as a CSV.

    ``update`` appends one step's values; a step logged again (after a resume from an earlier checkpoint)
    replaces the rows from that step on. ``write`` saves the CSV (temporary name, then rename), with the columns
    of the first row (the ``ERROR_KEYS`` only when the run recorded them) and an empty cell for a NaN.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def update(self, step: int, values: dict[str, float]) -> None:
        """Record ``values`` for ``step`` (rows of that step and later are dropped first)."""
        while self.rows and self.rows[-1]["step"] >= step:
            self.rows.pop()
        self.rows.append({"step": int(step), **{k: float(v) for k, v in values.items()}})

    def write(self, run_dir: str | Path) -> Path | None:
        """Write ``run_dir/ird_telemetry.csv`` (one row per step); nothing when no step was recorded."""
        if not self.rows:
            return None
        columns = list(self.rows[0])
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(row[k]) if k != "step" else row[k] for k in columns} for row in self.rows)
        path = Path(run_dir) / TELEMETRY_FILE
        return write_text(path, text.getvalue())

    def state_dict(self) -> dict:
        """Columns of plain numbers (a checkpoint loads them with ``weights_only=True``)."""
        columns = list(self.rows[0]) if self.rows else []
        return {key: [row[key] for row in self.rows] for key in columns}

    def load_state_dict(self, state: dict) -> None:
        """Restore the rows from a checkpoint's columns."""
        columns = list(state)
        count = len(state[columns[0]]) if columns else 0
        self.rows = [{key: state[key][i] for key in columns} for i in range(count)]


def _cell(value: float) -> str:
    """One telemetry value as the CSV writes it: 6 significant digits, empty for NaN (a ratio over no pixel)."""
    return "" if math.isnan(value) else f"{value:.6g}"


def record_warning(run_dir: str | Path, message: str) -> Path:
    """Print ``message`` as one line to stderr and append it to ``run_dir/warnings.txt`` (temp file + rename)."""
    print(f"[epspp] warning: {message}", file=sys.stderr, flush=True)
    path = Path(run_dir) / WARNINGS_FILE
    earlier = path.read_text(encoding="utf-8") if path.is_file() else ""
    return write_text(path, earlier + message + "\n")


class IRDMonitor(pl.Callback):
    """Records IRD's telemetry of every training step in ``ird_telemetry.csv`` and warns once of a collapse.

    The task keeps each step's values on the device and, at logging steps (or when this callback asks, at the
    end of an epoch, of the fit and at a checkpoint), moves them rank-averaged to ``pl_module.ird_values``
    (``(step, {name: value})`` per step); this callback records them (warm-up included), feeds the share of
    salient pixels in the dropped region to ``CollapseMonitor`` after the warm-up, and on rank 0 writes the
    record at each epoch's end and the warning to ``warnings.txt``, both in the run folder
    (``trainer.default_root_dir``). Its state rides in the checkpoint under ``ird_collapse`` and
    ``ird_telemetry`` (the keys of checkpoints written before it existed).

    Args:
        reading: the run's ``ird_threshold_maps``, named in the warning.
        warmup_steps: the run's ``ird_warmup_steps``: steps before them are recorded but not watched.
        window: steps averaged by the collapse monitor.
        threshold: the collapse threshold of the mean share.
    """

    def __init__(
        self, reading: str = "normalized", warmup_steps: int = 0, window: int = 50, threshold: float = 0.95
    ) -> None:
        self.warmup_steps = int(warmup_steps)
        self.collapse = CollapseMonitor(window, threshold, reading)
        self.telemetry = TelemetryRecord()

    def record(self, trainer: pl.Trainer, step: int, values: dict[str, float]) -> None:
        """Record one step's telemetry; after the warm-up, watch it and warn once (rank 0)."""
        self.telemetry.update(step, values)
        if step < self.warmup_steps:
            return
        message = self.collapse.update(step, values["inconsistent_salient"])
        if message is not None and trainer.is_global_zero:
            record_warning(trainer.default_root_dir, message)

    def write(self, trainer: pl.Trainer) -> None:
        """Save the per-step record in the run folder (rank 0)."""
        if trainer.is_global_zero:
            self.telemetry.write(trainer.default_root_dir)

    def collect(self, trainer: pl.Trainer, pl_module: pl.LightningModule, flush: bool) -> None:
        """Record the steps whose telemetry the module moved to the host (``flush``: ask it to move the
        steps it still keeps on the device first; every rank calls this at the same points)."""
        module = cast(Any, pl_module)  # a LocalizationModule
        if flush and hasattr(module, "flush_ird"):
            module.flush_ird()
        reported, module.ird_values = getattr(module, "ird_values", []), []
        for step, values in reported:
            self.record(trainer, step, values)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Record the steps the module moved to the host at this (logging) step; no transfer of its own."""
        self.collect(trainer, pl_module, flush=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the epoch's last steps and write the telemetry at the end of every epoch."""
        self.collect(trainer, pl_module, flush=True)
        self.write(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the last steps and write the telemetry when the fit ends."""
        self.collect(trainer, pl_module, flush=True)
        self.write(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Keep the collapse window and the telemetry (every step up to this one) in the checkpoint."""
        self.collect(trainer, pl_module, flush=True)
        checkpoint["ird_collapse"] = self.collapse.state_dict()
        checkpoint["ird_telemetry"] = self.telemetry.state_dict()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Restore the collapse window and the telemetry of a resumed fit."""
        self.collapse.load_state_dict(checkpoint.get("ird_collapse", {}))
        self.telemetry.load_state_dict(checkpoint.get("ird_telemetry", {}))
