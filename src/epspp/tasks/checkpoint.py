"""Checkpoints: checks on those loaded into a stage (clear errors instead of state-dict size mismatches), and
saving that is atomic on every filesystem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from epspp.errors import CheckpointMismatchError
from epspp.files import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO that writes a local checkpoint atomically, whatever the filesystem.

    Lightning writes through a temporary file in ``$TMPDIR`` and moves it: across filesystems (a node-local
    tmp, a shared run folder) the move copies over the old file, and a kill during it leaves a truncated
    ``last.ckpt``.  Here the temporary file is in the target's own folder, flushed and fsynced, then renamed
    over the target: the previous checkpoint stays whole until the new one is.  Remote paths (``s3://`` ...)
    keep Lightning's way.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Save ``checkpoint`` atomically (a temporary file renamed); remote paths as Lightning does."""
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, Path(path))


def atomic_torch_save(obj: Any, path: Path, action: str = "save checkpoint") -> None:
    """``torch.save(obj, path)`` through a temporary file in ``path``'s folder (flush, fsync, rename).

    A failure (full disk, read-only folder) removes the temporary file, leaves ``path`` as it was and raises
    an ``OutputError`` naming the file (``cannot {action} PATH: No space left on device: ...``).
    """
    write_atomic(
        path,
        lambda tmp: _torch_save(obj, tmp),
        action,
        sync=True,
        advice="free space or choose another folder (the previous file is kept)",
    )


def _torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file, so that a failed write carries its ``OSError`` (ENOSPC ...)."""
    with open(path, "wb") as handle:
        torch.save(obj, handle)


def check_classes(checkpoint: dict[str, Any], num_classes: int, class_names: Sequence[str] | None = None) -> None:
    """Fail clearly when a checkpoint's classes differ from the dataset's: their count, or their names and order.

    A checkpoint trained on [cat, dog] would otherwise run on a dataset listing [dog, cat] and locate each
    class with the other's map.

    Args:
        checkpoint: the loaded Lightning checkpoint dict.
        num_classes: object classes C of the current dataset.
        class_names: the dataset's class names, background first (None: compare the count only; so do
            checkpoints that did not record their names).
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    trained = hparams.get("num_classes")
    if trained is not None and int(trained) != int(num_classes):
        raise CheckpointMismatchError(
            f"the checkpoint was trained for {trained} object classes but the dataset has {num_classes}: "
            f"use a checkpoint of this dataset (or the matching --data.root)"
        )
    trained_names = hparams.get("class_names")
    if class_names is not None and trained_names is not None and list(trained_names) != list(class_names):
        raise CheckpointMismatchError(
            f"the checkpoint was trained for the classes {list(trained_names)} but the dataset lists "
            f"{list(class_names)} (in this order): use a checkpoint of this dataset, or list its classes in the "
            "checkpoint's order in classes.json"
        )
