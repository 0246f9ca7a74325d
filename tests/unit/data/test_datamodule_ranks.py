"""What EPSDataModule's loaders hand the process of rank 1 of 2, with a fake trainer instead of DDP processes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fixtures.helpers import split_ids

from epspp.data.datamodule import EPSDataModule
from epspp.data.io import write_mask_png
from epspp.data.sampler import MixedBatchSampler


def _fake_trainer(rank: int, world_size: int) -> SimpleNamespace:
    """What ``_distributed`` and ``_loader`` read of a Lightning trainer under DDP."""
    return SimpleNamespace(
        global_rank=rank,
        distributed_sampler_kwargs={"rank": rank, "num_replicas": world_size},
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=True),
    )


def _module(root: Path, rank: int, world_size: int, **kwargs: object) -> EPSDataModule:
    options = {"num_workers": 0, "batch_size": 2, "crop_size": 32, "resize_long": (40, 56), "eval_size": 64}
    module = EPSDataModule(root=str(root), **{**options, **kwargs})
    module.trainer = _fake_trainer(rank, world_size)  # type: ignore[assignment]
    return module


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (0, 2), (1, 2), (2, 4)])
def test_each_rank_scores_the_val_ids_of_its_stride_once(synthetic_root: Path, rank: int, world_size: int) -> None:
    module = _module(synthetic_root, rank, world_size, task="localization")
    module.setup("validate")
    ids = [image_id for batch in module.val_dataloader() for image_id in batch["id"]]
    assert ids == split_ids(synthetic_root, "val")[rank::world_size]  # 6 val ids: no padding duplicate


@pytest.mark.parametrize(("world_size", "warned"), [(6, False), (7, True)])
def test_the_duplicates_warning_starts_past_one_val_image_per_process(
    synthetic_root: Path, world_size: int, warned: bool, recwarn: pytest.WarningsRecorder
) -> None:
    """6 val images over 6 processes: one each, no duplicate (no warning); over 7 Lightning pads (boundary sweep)."""
    module = _module(synthetic_root, world_size - 1, world_size, task="localization")
    module.setup("validate")
    ids = [image_id for batch in module.val_dataloader() for image_id in batch["id"]]
    notes = [str(w.message) for w in recwarn if "pads it with duplicates" in str(w.message)]
    assert notes == (
        [
            f"the evaluation split has 6 images for {world_size} processes: Lightning pads it with "
            "duplicates, which are scored twice"
        ]
        if warned
        else []
    )
    if not warned:
        assert ids == split_ids(synthetic_root, "val")[world_size - 1 :: world_size]  # the last rank: the 6th image


def test_a_loader_worker_of_rank_1_is_seeded_as_rank_1(synthetic_root: Path) -> None:
    module = _module(synthetic_root, 1, 2, task="localization", num_workers=1, worker_nice=3)
    module.setup("validate")
    init = module.val_dataloader().worker_init_fn
    assert (init.rank, init.nice) == (1, 3)


def test_rank_1_trains_on_every_other_index_of_the_mixed_batch_sequence(synthetic_root: Path, tmp_path: Path) -> None:
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    for image_id in split_ids(synthetic_root, "train"):
        write_mask_png(pseudo / f"{image_id}.png", np.zeros((48, 48), np.uint8))
    kwargs = {"task": "segmentation", "pseudo_mask_dir": str(pseudo), "labeled_split": "labeled_10pct", "seed": 7}
    module = _module(synthetic_root, 1, 2, batch_size=4, **kwargs)
    module.setup("fit")
    sampler = module.train_dataloader().sampler
    ids = module.datasets["train"].ids
    labeled = [i for i, image_id in enumerate(ids) if image_id in set(split_ids(synthetic_root, "labeled_10pct"))]
    unlabeled = [i for i in range(len(ids)) if i not in labeled]
    whole = list(MixedBatchSampler(labeled, unlabeled, 4, 2, seed=7))  # no process group here: a world of 1
    mine = list(sampler)
    assert len(mine) == len(whole) // 2 and mine == whole[1::2]  # strided, not shuffled by Lightning


@pytest.mark.parametrize(("batch_size", "drop_last"), [(7, True), (8, False)])
def test_the_last_partial_batch_is_dropped_only_when_each_process_has_a_whole_one(
    synthetic_root: Path, batch_size: int, drop_last: bool
) -> None:
    # 20 train images over 3 processes: Lightning's DistributedSampler gives each ceil(20 / 3) = 7 of them
    module = _module(synthetic_root, 0, 3, task="localization", batch_size=batch_size)
    module.setup("fit")
    assert module.train_dataloader().drop_last is drop_last


def test_more_processes_than_evaluation_images_is_a_warning_and_every_image_is_scored(synthetic_root: Path) -> None:
    """6 val ids: 6 processes share them without padding (each one id); 7 cannot: Lightning pads, and says so."""
    module = _module(synthetic_root, 5, 6, task="localization")
    module.setup("validate")
    assert [i for batch in module.val_dataloader() for i in batch["id"]] == [split_ids(synthetic_root, "val")[5]]
    module = _module(synthetic_root, 1, 7, task="localization")
    module.setup("validate")
    with pytest.warns(UserWarning, match="^the evaluation split has 6 images for 7 processes: Lightning pads it"):
        loader = module.val_dataloader()
    assert [i for batch in loader for i in batch["id"]] == split_ids(synthetic_root, "val")  # Lightning's sampler


def test_options_out_of_range_and_absent_splits_are_refused(synthetic_root: Path, tmp_path: Path) -> None:
    from epspp.errors import ConfigError

    for name in ("batch_size", "val_batch_size"):
        with pytest.raises(ConfigError) as error:
            EPSDataModule(root=str(synthetic_root), **{name: 0})
        assert str(error.value) == f"--data.{name} must be >= 1, got 0"
    EPSDataModule(root=str(synthetic_root), batch_size=1, val_batch_size=1)  # the boundary: allowed
    with pytest.raises(ConfigError) as error:
        EPSDataModule(
            root=str(synthetic_root), labeled_split="labeled_10pct", pseudo_mask_dir=str(tmp_path), batch_size=1
        )
    assert str(error.value) == (
        "semi-supervised batches mix labelled and pseudo-labelled images: batch_size must be >= 2, got 1"
    )
    module = _module(synthetic_root, 0, 1, task="localization", val_split=None)
    module.setup("validate")
    assert module.val_dataloader() == []  # no validation
    with pytest.raises(ConfigError) as error:
        module.test_dataloader()
    assert str(error.value) == "no test split: set --data.test_split"


def test_segmentation_predicts_val_batch_size_images_at_once(synthetic_root: Path) -> None:
    module = _module(synthetic_root, 0, 1, task="segmentation", predict_split="val", val_batch_size=4, batch_size=2)
    module.setup("predict")
    sizes = [len(batch["id"]) for batch in module.predict_dataloader()]
    assert sizes == [4, 2]  # 6 val ids, 4 at a time (the last batch is kept)
    module = _module(synthetic_root, 0, 1, task="segmentation", predict_split="val", batch_size=5)
    module.setup("predict")
    assert [len(batch["id"]) for batch in module.predict_dataloader()] == [5, 1]  # batch_size without val_batch_size
    module = _module(synthetic_root, 0, 1, task="localization", predict_split="val", val_batch_size=4)
    module.setup("predict")
    assert [len(batch["id"]) for batch in module.predict_dataloader()] == [1] * 6  # pseudo-masks: one image each


def test_a_trainer_that_leaves_the_sampler_to_the_user_gets_the_whole_split(synthetic_root: Path) -> None:
    """use_distributed_sampler false (the user shards the data): rank 1 of 2 is served as one process."""
    module = _module(synthetic_root, 1, 2, task="localization")
    module.trainer._accelerator_connector.use_distributed_sampler = False  # type: ignore[attr-defined]
    module.setup("validate")
    assert [i for batch in module.val_dataloader() for i in batch["id"]] == split_ids(synthetic_root, "val")
