"""Test-only callbacks that the DDP and resume tests add to real ``epspp`` processes, and process helpers.

The tests run ``epspp`` with ``PYTHONPATH`` set to this folder and name the callbacks by module path,
e.g. ``--trainer.callbacks+={"class_path": "ddp_probe.MetricProbe", "init_args": {"out_dir": DIR}}``
(``probe(DIR)`` and ``kill_at(...)`` build these values; ``Proc`` runs a command in its own session).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    logs, after ``sync_dist``), its own loss and the labelled images in the batch; at the end of every
    validation, test and prediction the metrics again; and the ids it was given, its world size and
    the (Sync)BatchNorm layers in the model.

    Args:
        out_dir: folder of the per-rank files.
    """

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.record: dict = {"train": [], "val": [], "test": [], "ids": {}}

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
        self.record["ids"].setdefault(stage, []).extend(batch["id"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self._count("train", batch)
        local = outputs["loss"] if isinstance(outputs, dict) else outputs
        entry = {"step": trainer.global_step, "local_loss": _number(local), **self._metrics(trainer)}
        if "is_labeled" in batch:
            entry["labeled_in_batch"] = int(batch["is_labeled"].sum())
        self.record["train"].append(entry)
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


# ------------------------------------------------------------- the test side
# Helpers for the tests that start these processes (imported by test_ddp.py and test_resume.py).
HERE = Path(__file__).resolve().parent
TIMEOUT = 300


def probe(out_dir: Path) -> str:
    """``--trainer.callbacks+=`` value adding a MetricProbe that writes to ``out_dir``."""
    return json.dumps({"class_path": "ddp_probe.MetricProbe", "init_args": {"out_dir": str(out_dir)}})


def kill_at(**init_args: int) -> str:
    """``--trainer.callbacks+=`` value adding a KillAt callback."""
    return json.dumps({"class_path": "ddp_probe.KillAt", "init_args": init_args})


def read_probe(out_dir: Path) -> dict[int, dict]:
    """{global rank: record} of the MetricProbe files in ``out_dir``."""
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("rank*.json"))}


def process_env(**extra: str) -> dict[str, str]:
    """The environment of an ``epspp`` process: offline W&B, one thread, this folder importable."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", COLUMNS="120")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env | extra


class Proc:
    """One ``epspp`` command (``python -m epspp ARGS``, or ``command`` as given) in its own session.

    Its DDP ranks are its children, so a timeout kills the whole process group; stdout and stderr
    go to ``log_dir/<name>.{out,err}`` and are shown when the exit status is not the expected one.
    """

    def __init__(self, name: str, args: list, cwd: Path, log_dir: Path, command: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.cwd, self.log_dir = name, Path(cwd), Path(log_dir)
        self.argv = [*(command or [sys.executable, "-m", "epspp"]), *map(str, args)]
        self.env = env or process_env()
        self.process = None
        self.seconds = 0.0

    def start(self) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._start = time.perf_counter()
        with open(self.log_dir / f"{self.name}.out", "w") as out, open(self.log_dir / f"{self.name}.err", "w") as err:
            self.process = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=err,
                                            start_new_session=True)
        return self

    def wait(self, expect: int | None = 0, timeout: float = TIMEOUT) -> Proc:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.process.wait()
            raise AssertionError(f"{self.name} ran over {timeout} s and was killed\n{self.logs()}") from None
        self.seconds = time.perf_counter() - self._start
        if code < 0:
            self._kill_group()  # a killed rank 0 leaves its other ranks behind
        if expect is not None and code != expect:
            raise AssertionError(f"{self.name} exited {code}, expected {expect}\n{self.logs()}")
        return self

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def logs(self) -> str:
        text = [f"$ {' '.join(self.argv)}"]
        for suffix in ("out", "err"):
            path = self.log_dir / f"{self.name}.{suffix}"
            text.append(f"--- {suffix}\n{path.read_text()[-4000:] if path.is_file() else ''}")
        return "\n".join(text)


def run_all(*procs: Proc, expect: int | None = 0) -> tuple[Proc, ...]:
    """Start the processes together and wait for all of them."""
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.wait(expect)
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                proc._kill_group()
    return procs
