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


def test_a_checkpoint_without_hyper_parameters_or_names_is_checked_as_far_as_it_can_be() -> None:
    check_classes({}, 2, NAMES)  # no hyper-parameters at all: nothing to compare
    check_classes({"hyper_parameters": None}, 2, NAMES)
    check_classes(_trained(2, ["background", "dog", "cat"]), 2)  # the dataset's names unknown: the count only


def test_atomic_checkpoint_io_writes_local_files_itself_and_leaves_remote_ones_to_lightning(
    tmp_path, monkeypatch
) -> None:
    import os

    from pytorch_lightning.plugins import TorchCheckpointIO

    from epspp.tasks import checkpoint as checkpoint_module
    from epspp.tasks.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 3}, tmp_path / "last.ckpt")
    assert torch.load(tmp_path / "last.ckpt") == {"step": 3} and os.listdir(tmp_path) == ["last.ckpt"]
    seen: list = []
    monkeypatch.setattr(
        TorchCheckpointIO, "save_checkpoint", lambda self, c, path, options=None: seen.append((path, options))
    )
    monkeypatch.setattr(checkpoint_module, "atomic_torch_save", lambda obj, path: seen.append(("atomic", path)))
    io.save_checkpoint({}, "s3://bucket/last.ckpt")
    io.save_checkpoint({}, tmp_path / "x.ckpt", storage_options={"a": 1})
    io.save_checkpoint({}, tmp_path / "y.ckpt")
    assert seen == [("s3://bucket/last.ckpt", None), (tmp_path / "x.ckpt", {"a": 1}), ("atomic", tmp_path / "y.ckpt")]
