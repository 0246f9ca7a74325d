"""Checks on checkpoints loaded into a stage (clear errors instead of state-dict size mismatches)."""

from __future__ import annotations

from typing import Any

from epspp.errors import CheckpointMismatchError


def check_num_classes(checkpoint: dict[str, Any], num_classes: int) -> None:
    """Fail clearly when a checkpoint's class count differs from the dataset's.

    Args:
        checkpoint: the loaded Lightning checkpoint dict.
        num_classes: object classes C of the current dataset.
    """
    trained = checkpoint.get("hyper_parameters", {}).get("num_classes")
    if trained is not None and int(trained) != int(num_classes):
        raise CheckpointMismatchError(
            f"the checkpoint was trained for {trained} object classes but the dataset has {num_classes}: "
            f"use a checkpoint of this dataset (or the matching --data.root)"
        )
