"""A checkpoint must match the dataset's classes: their count in both directions, their names and their order."""

from __future__ import annotations

import pytest
import torch
from fixtures.helpers import TINY, TINY_KWARGS

from epspp.errors import CheckpointMismatchError
from epspp.tasks.checkpoint import check_classes
from epspp.tasks.localization import LocalizationModule
from epspp.tasks.segmentation import SegmentationModule

NAMES = ["background", "cat", "dog"]


def _trained(num_classes: int, names: list[str] | None) -> dict:
    return {"hyper_parameters": {"num_classes": num_classes, "class_names": names}}


@pytest.mark.parametrize("trained", [1, 3])
def test_fewer_or_more_classes_than_the_dataset_are_refused(trained: int) -> None:
    with pytest.raises(CheckpointMismatchError, match=f"trained for {trained} object classes but the dataset has 2"):
        check_classes(_trained(trained, None), 2)


def test_same_classes_in_another_order_are_refused_naming_both_lists() -> None:
    with pytest.raises(CheckpointMismatchError) as caught:
        check_classes(_trained(2, ["background", "dog", "cat"]), 2, NAMES)
    message = str(caught.value)
    assert "['background', 'dog', 'cat']" in message and "['background', 'cat', 'dog']" in message
    assert "\n" not in message


def test_other_names_are_refused_and_matching_ones_pass() -> None:
    with pytest.raises(CheckpointMismatchError, match="classes"):
        check_classes(_trained(2, ["background", "cat", "bird"]), 2, NAMES)
    check_classes(_trained(2, list(NAMES)), 2, tuple(NAMES))
    check_classes(_trained(2, None), 2, NAMES)  # a checkpoint without names: only the count is known


@pytest.mark.parametrize("module_class", [LocalizationModule, SegmentationModule])
def test_modules_refuse_checkpoints_of_swapped_or_fewer_classes(module_class: type) -> None:
    torch.manual_seed(0)
    module = module_class(num_classes=2, class_names=NAMES, backbone=TINY, backbone_kwargs=TINY_KWARGS)
    with pytest.raises(CheckpointMismatchError, match="lists \\['background', 'cat', 'dog'\\]"):
        module.on_load_checkpoint(_trained(2, ["background", "dog", "cat"]))
    with pytest.raises(CheckpointMismatchError, match="trained for 1 object classes but the dataset has 2"):
        module.on_load_checkpoint(_trained(1, ["background", "cat"]))
    module.on_load_checkpoint(_trained(2, list(NAMES)))
