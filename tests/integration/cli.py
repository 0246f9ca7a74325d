"""Run ``epspp`` as a user does (a subprocess), with settings that keep a CPU run to seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# A tiny network and short runs on the 48-px test dataset.
TINY_FIT = [
    "--trainer.max_steps", "2", "--trainer.accelerator", "cpu", "--trainer.enable_model_summary", "false",
    "--data.num_workers", "0", "--data.batch_size", "4", "--data.crop_size", "48", "--data.eval_size", "48",
    "--data.resize_long", "[40, 56]",
    "--model.init_args.backbone", "resnet10t",
    "--model.init_args.backbone_kwargs", "{channels: [8, 16, 32, 64], stem_width: 8}",
]


def run_epspp(args: list[str], cwd: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m epspp ARGS`` in ``cwd``; on failure the assertion shows the command's output."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-m", "epspp", *map(str, args)], cwd=cwd, env=env, text=True,
                            capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"epspp {' '.join(map(str, args))} exited {result.returncode}\n"
                             f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result
