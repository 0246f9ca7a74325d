"""Checkpoints are saved atomically on every filesystem: the run folder on another filesystem than ``$TMPDIR``
(a cluster's node-local tmp and shared run folder), a save killed midway keeps the previous ``last.ckpt``."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from fixtures.cli import CONFIGS, TINY_FIT

from epspp.errors import OutputError


def _other_filesystem(than: Path) -> Path:
    """A writable folder on another filesystem than ``than`` (skip where the machine has only one)."""
    for candidate in ("/dev/shm", "/run/user", "/var/tmp", str(Path.home())):
        folder = Path(candidate)
        if folder.is_dir() and os.access(folder, os.W_OK) and folder.stat().st_dev != than.stat().st_dev:
            return Path(tempfile.mkdtemp(prefix="epspp-run-", dir=folder))
    pytest.skip("no two writable filesystems on this machine")


@pytest.fixture
def cli_checkpoint_io(synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The checkpoint IO of a trainer built by ``epspp fit``, its run folder on another filesystem than $TMPDIR."""
    from pytorch_lightning import LightningModule

    from epspp.cli.lightning import EPSCLI
    from epspp.data.datamodule import EPSDataModule

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    run = _other_filesystem(tmpdir)
    assert run.stat().st_dev != tmpdir.stat().st_dev
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    monkeypatch.setattr(sys, "argv", ["epspp"])
    cli = EPSCLI(
        LightningModule,
        EPSDataModule,
        subclass_mode_model=True,
        run=False,
        args=[
            "--config",
            str(CONFIGS / "demo" / "scratch" / "localization_eps++.yaml"),
            "--data.root",
            str(synthetic_root),
            *map(str, TINY_FIT),
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(run),
        ],
    )
    yield cli.trainer.strategy.checkpoint_io, run / "checkpoints" / "last.ckpt"
    for path in sorted(run.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    run.rmdir()


def test_a_save_killed_midway_keeps_the_previous_checkpoint(cli_checkpoint_io, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint_io, last = cli_checkpoint_io
    real_save = torch.save
    targets: list = []

    def spying_save(obj, f, *args, **kwargs):
        targets.append(f)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spying_save)
    checkpoint_io.save_checkpoint({"step": 1, "weights": torch.arange(1000.0)}, last)
    assert torch.load(last, weights_only=True)["step"] == 1
    # the bytes went to a temporary file in the target's own folder, not to $TMPDIR (another filesystem)
    assert not isinstance(targets[0], io.BytesIO), "written through memory and $TMPDIR, then copied over"
    assert Path(targets[0].name).parent == last.parent

    def killed_save(obj, f, *args, **kwargs):  # the process dies after writing part of the file
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_io.save_checkpoint({"step": 2, "weights": torch.zeros(1000)}, last)
    kept = torch.load(last, weights_only=True)
    assert kept["step"] == 1 and torch.equal(kept["weights"], torch.arange(1000.0))
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_a_full_disk_is_one_line_naming_the_checkpoint(cli_checkpoint_io, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint_io, last = cli_checkpoint_io
    checkpoint_io.save_checkpoint({"step": 1}, last)
    before = last.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"part")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match=f"cannot save checkpoint {last}: No space left on device"):
        checkpoint_io.save_checkpoint({"step": 2}, last)
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]
