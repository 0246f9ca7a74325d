"""Checks on checkpoints loaded into a stage (clear errors instead of state-dict size mismatches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from epspp.errors import CheckpointMismatchError


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
