"""Fixtures of the integration tests (the session's dataset and checkpoint are in tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def training_run(localization_checkpoint: Path, tmp_path: Path) -> Path:
    """A fit's run folder: its configuration dump and its last.ckpt."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(localization_checkpoint, run / "checkpoints" / "last.ckpt")
    from epspp.runs.folder import dump_mark

    (run / "config.yaml").write_text(dump_mark("fit") + "# how the checkpoint was trained\n")
    return run
