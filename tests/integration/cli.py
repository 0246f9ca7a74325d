"""Run ``epspp`` as a user does: a subprocess (``run_epspp``), or the console script's entry point in this
process (``in_process``, which saves the seconds a process spends importing torch, Lightning and timm), with
settings that keep a CPU run to seconds."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
SCRATCH_EPSPP = CONFIGS / "demo" / "scratch" / "localization_eps++.yaml"  # the from-scratch demo's EPS++ config

# A tiny network and short runs on the 48-px test dataset.
TINY_FIT = [
    "--trainer.max_steps", "2", "--trainer.accelerator", "cpu", "--trainer.enable_model_summary", "false",
    "--data.num_workers", "0", "--data.batch_size", "4", "--data.crop_size", "48", "--data.eval_size", "48",
    "--data.resize_long", "[40, 56]",
    "--model.init_args.backbone", "resnet10t",
    "--model.init_args.backbone_kwargs", "{channels: [8, 16, 32, 64], stem_width: 8}",
]


@dataclass
class Started:
    """An ``epspp`` process started by ``start_epspp``; ``wait`` gives its result (output kept in files, not pipes)."""

    args: list[str]
    process: subprocess.Popen
    out: IO[str]
    err: IO[str]
    result: subprocess.CompletedProcess | None = None

    def wait(self, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        """The finished process (killed after ``timeout`` s); ``check``: a non-zero exit fails with the output."""
        if self.result is None:
            try:
                code, timed_out = self.process.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:
                self.process.kill()
                code, timed_out = self.process.wait(), True
            outputs = []
            for handle in (self.out, self.err):
                handle.seek(0)
                outputs.append(handle.read())
                handle.close()
            self.result = subprocess.CompletedProcess([sys.executable, "-m", "epspp", *self.args], code, *outputs)
            if timed_out:
                raise subprocess.TimeoutExpired(self.result.args, timeout, *outputs)
        if check and self.result.returncode != 0:
            raise AssertionError(f"epspp {' '.join(self.args)} exited {self.result.returncode}\n"
                                 f"--- stdout\n{self.result.stdout[-4000:]}\n--- stderr\n{self.result.stderr[-4000:]}")
        return self.result


def start_epspp(args: list[str], cwd: Path) -> Started:
    """Start ``python -m epspp ARGS`` in ``cwd`` without waiting: runs started together share the cores."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    args = list(map(str, args))
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, "-m", "epspp", *args], cwd=cwd, env=env, text=True, stdout=out,
                               stderr=err)
    return Started(args, process, out, err)


def run_epspp(args: list[str], cwd: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m epspp ARGS`` in ``cwd``; on failure the assertion shows the command's output."""
    return start_epspp(args, cwd).wait(check=check, timeout=timeout)


@contextlib.contextmanager
def _as_epspp(cwd: str | Path) -> Iterator[None]:
    """This process as an ``epspp`` process in ``cwd``; the environment, ``sys.argv`` and the working
    directory are restored afterwards."""
    environ, argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    sys.argv = ["epspp"]  # LightningCLI warns when both sys.argv and args carry arguments
    os.chdir(cwd)
    try:
        yield
    finally:
        sys.argv = argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(environ)


def _exit_status(args: Sequence[str | Path]) -> int:
    """``epspp.cli.main(args)``; its exit status (0 when it returns)."""
    from epspp.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def call_main(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """``epspp.cli.main(args)`` in this process, in ``cwd``, on one torch thread, its stdout and stderr captured:
    (exit status, stdout, stderr). An exception that escapes ``main`` is printed to the captured stderr and
    counts as exit status 1, like a failed process. The environment, ``sys.argv``, the working directory and the
    thread count are restored afterwards."""
    import torch

    stdout, stderr = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _as_epspp(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = _exit_status(args)
            except Exception:  # noqa: BLE001 - reported like a failed process
                traceback.print_exc()
                code = 1
    finally:
        torch.set_num_threads(threads)
    return code, stdout.getvalue(), stderr.getvalue()


def in_process(capfd: pytest.CaptureFixture, *args: str | Path, check: bool = False) -> subprocess.CompletedProcess:
    """``epspp ARGS`` through the console script's entry point, in this process (saves the start-up).

    Runs in a fresh temporary working directory (a run without ``default_root_dir`` writes there); the
    environment, ``sys.argv`` and the working directory are restored afterwards.  ``check``: a non-zero
    exit fails like ``run_epspp``'s, with the output.
    """
    capfd.readouterr()
    with _as_epspp(tempfile.mkdtemp(prefix="epspp-cli-")):
        code = _exit_status(args)
    out, err = capfd.readouterr()
    if check and code != 0:
        raise AssertionError(f"epspp {' '.join(map(str, args))} exited {code}\n"
                             f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}")
    return subprocess.CompletedProcess(args, code, out, err)
