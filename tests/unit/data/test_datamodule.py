"""EPSDataModule on the synthetic dataset: batches of every stage, pseudo-masks, semi-supervision."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.helpers import gt_mask, labels_from_masks, split_ids

import epspp.data.synthetic as synthetic
from epspp.config_checks import check_data_options
from epspp.data.classes import SYNTHETIC_CLASSES
from epspp.data.datamodule import EPSDataModule
from epspp.data.io import DatasetError, write_mask_png
from epspp.errors import ConfigError

C = 5
SIZE = 48
PSEUDO_CLASS = 4  # every pseudo-mask is this class everywhere: tells pseudo-masks from ground truth


def _module(root, **kwargs) -> EPSDataModule:
    options = {"num_workers": 0, "batch_size": 4, "crop_size": 32, "resize_long": (40, 56), "eval_size": 64}
    return EPSDataModule(root=str(root), **{**options, **kwargs})


def _write_pseudo_masks(folder, ids) -> None:
    folder.mkdir(exist_ok=True)
    for image_id in ids:
        write_mask_png(folder / f"{image_id}.png", np.full((SIZE, SIZE), PSEUDO_CLASS, np.uint8))


@pytest.fixture
def pseudo_dir(synthetic_root, tmp_path):
    folder = tmp_path / "pseudo_masks"
    _write_pseudo_masks(folder, split_ids(synthetic_root, "train"))
    return folder


def test_classes_come_from_the_dataset(synthetic_root):
    module = _module(synthetic_root)
    assert module.class_names == list(SYNTHETIC_CLASSES)
    assert module.num_classes == C == len(SYNTHETIC_CLASSES) - 1


def test_localization_train_batch(synthetic_root):
    module = _module(synthetic_root, task="localization")
    module.setup("fit")
    loader = module.train_dataloader()
    assert len(loader) == 5  # 20 images, batches of 4
    batch = next(iter(loader))
    assert set(batch) == {"id", "image", "saliency", "size", "label"}  # no ground truth: the loss never sees it
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["saliency"].shape == (4, 1, 32, 32) and batch["saliency"].dtype == torch.float32
    assert 0.0 <= batch["saliency"].min() and batch["saliency"].max() <= 1.0
    assert batch["label"].shape == (4, C) and batch["label"].dtype == torch.float32
    assert batch["size"].tolist() == [[SIZE, SIZE]] * 4
    assert len(batch["id"]) == 4 and set(batch["id"]) <= set(split_ids(synthetic_root, "train"))
    expected = labels_from_masks(synthetic_root, batch["id"], C)
    for row, image_id in enumerate(batch["id"]):
        np.testing.assert_array_equal(batch["label"][row].numpy(), expected[image_id])
    assert batch["image"].std() > 0.1  # a normalized image, not a constant


def test_localization_val_batch(synthetic_root):
    module = _module(synthetic_root, task="localization", val_batch_size=3)
    module.setup("validate")
    assert "train" not in module.datasets
    batches = list(module.val_dataloader())
    assert [len(b["id"]) for b in batches] == [3, 3]
    batch = batches[0]
    assert set(batch) == {"id", "image", "mask", "saliency", "size", "label"}
    assert batch["image"].shape == (3, 3, 64, 64)
    assert batch["saliency"].shape == (3, 1, 64, 64)
    # eval_size 64 pads the 48x48 images bottom/right: mask 255, saliency 0
    mask = batch["mask"]
    assert mask.shape == (3, 64, 64)
    assert bool((mask[:, SIZE:, :] == 255).all()) and bool((mask[:, :, SIZE:] == 255).all())
    assert float(batch["saliency"][:, :, SIZE:, :].abs().sum()) == 0.0
    for row, image_id in enumerate(batch["id"]):
        np.testing.assert_array_equal(mask[row, :SIZE, :SIZE].numpy(), gt_mask(synthetic_root, image_id))
    assert batch["id"] == split_ids(synthetic_root, "val")[:3]  # no shuffling


def test_eval_scale_enlarges_val_images_and_masks_but_not_predict(synthetic_root):
    module = _module(
        synthetic_root, task="localization", val_batch_size=2, eval_size=None, eval_scale=2.0, predict_split="val"
    )
    module.setup("validate")
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (2, 3, 2 * SIZE, 2 * SIZE) and batch["mask"].shape == (2, 2 * SIZE, 2 * SIZE)
    truth = gt_mask(synthetic_root, batch["id"][0])
    np.testing.assert_array_equal(batch["mask"][0].numpy(), truth.repeat(2, axis=0).repeat(2, axis=1))
    module.setup("predict")  # pseudo-masks are written at the images' own size: the model's scales enlarge there
    assert next(iter(module.predict_dataloader()))["image"].shape == (1, 3, SIZE, SIZE)
    with pytest.raises(ConfigError, match="eval_scale must be > 0"):
        check_data_options({**module.hparams, "eval_scale": 0})


def test_predict_batch(synthetic_root):
    module = _module(synthetic_root, predict_split="val")
    module.setup("predict")
    loader = module.predict_dataloader()
    assert len(loader) == 6
    batch = next(iter(loader))
    assert set(batch) == {"id", "image", "mask", "size", "label", "has_mask"}
    assert batch["image"].shape == (1, 3, SIZE, SIZE)  # full resolution, not padded to eval_size
    assert batch["size"].tolist() == [[SIZE, SIZE]]
    assert batch["has_mask"].tolist() == [True]
    image_id = split_ids(synthetic_root, "val")[0]
    assert batch["id"] == [image_id]
    np.testing.assert_array_equal(batch["label"][0].numpy(), labels_from_masks(synthetic_root, [image_id], C)[image_id])


def test_segmentation_ground_truth_only(synthetic_root):
    module = _module(synthetic_root, task="segmentation")
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {"id", "image", "mask", "size", "is_labeled"}
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 32, 32)
    assert batch["is_labeled"].tolist() == [1.0] * 4
    val = next(iter(module.val_dataloader()))
    assert set(val) == {"id", "image", "mask", "size", "is_labeled"}
    assert val["mask"].shape == (4, 64, 64)


def test_segmentation_ground_truth_of_labeled_split_only(synthetic_root):
    module = _module(synthetic_root, task="segmentation", labeled_split="labeled_10pct", batch_size=2)
    module.setup("fit")
    assert module.datasets["train"].ids == split_ids(synthetic_root, "labeled_10pct")


def test_segmentation_with_pseudo_masks(synthetic_root, pseudo_dir):
    module = _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(pseudo_dir))
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 5
    assert sorted(i for b in batches for i in b["id"]) == split_ids(synthetic_root, "train")
    for batch in batches:
        assert batch["is_labeled"].tolist() == [0.0] * 4
        # pseudo-masks (all PSEUDO_CLASS) where the crop holds the image, 255 where it is padded
        assert set(batch["mask"].unique().tolist()) <= {PSEUDO_CLASS, 255}


def test_semi_supervised_batches_mix_labeled_and_pseudo_labeled(synthetic_root, pseudo_dir):
    labeled = set(split_ids(synthetic_root, "labeled_10pct"))
    assert len(labeled) == 2
    # pseudo_dir has pseudo-masks for the labelled ids too: their ground truth must win.
    # crop = image size and no rescaling: only flips are random, so masks can be compared exactly
    module = _module(
        synthetic_root,
        task="segmentation",
        pseudo_mask_dir=str(pseudo_dir),
        labeled_split="labeled_10pct",
        crop_size=SIZE,
        resize_long=(SIZE, SIZE),
    )
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 9  # 18 pseudo-labelled ids, 2 per batch of 4 (labeled_per_batch = 4 // 2)
    pseudo_seen = []
    for batch in batches:
        flags = batch["is_labeled"]
        assert flags.sum().item() == 2 and len(flags) == 4
        for row, image_id in enumerate(batch["id"]):
            mask = batch["mask"][row].numpy()
            if flags[row] == 1.0:
                assert image_id in labeled
                truth = gt_mask(synthetic_root, image_id)
                assert np.array_equal(mask, truth) or np.array_equal(mask, truth[:, ::-1])
            else:
                assert image_id not in labeled
                assert bool((mask == PSEUDO_CLASS).all())
                pseudo_seen.append(image_id)
    assert sorted(pseudo_seen) == sorted(set(split_ids(synthetic_root, "train")) - labeled)  # each once


def test_semi_supervised_labeled_ids_outside_the_train_split_train_on_their_ground_truth(synthetic_copy, tmp_path):
    """A labelled split need not lie inside train_split: its other images join the training set with their ground
    truth (they have no pseudo-mask), none vanishes."""
    train, val = split_ids(synthetic_copy, "train"), split_ids(synthetic_copy, "val")
    (synthetic_copy / "ImageSets" / "Segmentation" / "labeled_mixed.txt").write_text(f"{train[0]}\n{val[0]}\n")
    pseudo = tmp_path / "pseudo"
    _write_pseudo_masks(pseudo, train)
    module = _module(
        synthetic_copy,
        task="segmentation",
        pseudo_mask_dir=str(pseudo),
        labeled_split="labeled_mixed",
        crop_size=SIZE,
        resize_long=(SIZE, SIZE),
    )
    module.setup("fit")
    assert module.datasets["train"].ids == [*train, val[0]]
    seen = {}
    for batch in module.train_dataloader():
        for row, image_id in enumerate(batch["id"]):
            seen[image_id] = (batch["is_labeled"][row].item(), batch["mask"][row].numpy())
    flag, mask = seen[val[0]]
    truth = gt_mask(synthetic_copy, val[0])
    assert flag == 1.0 and (np.array_equal(mask, truth) or np.array_equal(mask, truth[:, ::-1]))


def test_semi_supervised_labeled_per_batch(synthetic_root, pseudo_dir):
    module = _module(
        synthetic_root,
        task="segmentation",
        pseudo_mask_dir=str(pseudo_dir),
        labeled_split="labeled_10pct",
        batch_size=4,
        labeled_per_batch=1,
    )
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 6  # 18 // 3
    assert [b["is_labeled"].sum().item() for b in batches] == [1.0] * 6


def test_missing_pseudo_masks_are_an_error(synthetic_root, tmp_path):
    ids = split_ids(synthetic_root, "train")
    folder = tmp_path / "partial"
    _write_pseudo_masks(folder, ids[3:])
    module = _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(folder))
    with pytest.raises(DatasetError) as error:
        module.setup("fit")
    message = str(error.value)
    assert "3 of 20 ids" in message and str(folder) in message and "allow_missing" in message
    assert str(ids[:3]) in message


def test_missing_pseudo_masks_of_labeled_ids_are_fine(synthetic_root, tmp_path):
    ids = split_ids(synthetic_root, "train")
    labeled = split_ids(synthetic_root, "labeled_10pct")
    folder = tmp_path / "unlabeled_only"
    _write_pseudo_masks(folder, [i for i in ids if i not in labeled])
    module = _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(folder), labeled_split="labeled_10pct")
    module.setup("fit")
    assert len(module.datasets["train"]) == 20


def test_allow_missing_skips_ids_without_pseudo_mask(synthetic_root, tmp_path, capsys):
    ids = split_ids(synthetic_root, "train")
    folder = tmp_path / "partial"
    _write_pseudo_masks(folder, ids[3:])
    module = _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(folder), allow_missing=True)
    module.setup("fit")
    assert module.datasets["train"].ids == ids[3:]
    assert "skipping 3 ids" in capsys.readouterr().err
    seen = [i for b in module.train_dataloader() for i in b["id"]]
    assert len(seen) == 16 and not set(seen) & set(ids[:3])  # 17 ids, batches of 4, last one dropped


def test_pseudo_mask_folder_missing(synthetic_root, tmp_path):
    module = _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(tmp_path / "none"))
    with pytest.raises(DatasetError, match="pseudo-mask folder .*none does not exist"):
        module.setup("fit")


def test_nonexistent_root_tells_how_to_prepare_it(tmp_path):
    root = tmp_path / "no_dataset"
    with pytest.raises(DatasetError) as error:
        _module(root)
    assert f"epspp prepare synthetic --root {root}" in str(error.value)
    assert not root.exists()


def test_prepare_synthetic_generates_the_dataset(tmp_path, monkeypatch):
    # the default (1000 + 200 images) takes several seconds: shrink the defaults
    calls = []
    original = synthetic.generate_synthetic

    def small(root, **kwargs):
        calls.append((root, kwargs))
        return functools.partial(original, num_train=8, num_val=3, image_size=32)(root, **kwargs)

    monkeypatch.setattr(synthetic, "generate_synthetic", small)
    root = tmp_path / "nested" / "synthetic"
    module = _module(root, prepare_synthetic=True, batch_size=2)
    assert len(calls) == 1 and Path(calls[0][0]) == root
    assert len(split_ids(root, "train")) == 8 and len(split_ids(root, "val")) == 3
    assert module.num_classes == C
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)
    # an existing root is used as is
    _module(root, prepare_synthetic=True)
    assert len(calls) == 1


def test_training_batches_follow_the_seed_with_loader_workers(synthetic_root: Path) -> None:
    """Augmentation (albumentations' own generators included) and order follow ``seed_everything``."""
    from pytorch_lightning import seed_everything

    def first_batches(seed: int) -> list[torch.Tensor]:
        seed_everything(seed, workers=True)
        data = EPSDataModule(
            str(synthetic_root),
            batch_size=4,
            num_workers=2,
            crop_size=32,
            resize_long=(30, 60),
            val_split=None,
            preflight=False,
        )
        data.setup("fit")
        loader = data.train_dataloader()
        batches = []
        for _ in range(2):  # two epochs of the persistent workers
            for index, batch in enumerate(loader):
                if index == 0:
                    batches += [batch["image"], batch["saliency"]]
        return batches

    same, again, other = first_batches(3), first_batches(3), first_batches(4)
    assert all(torch.equal(a, b) for a, b in zip(same, again, strict=True))
    assert not torch.equal(same[0], other[0])
    assert not torch.equal(same[0], same[2])  # the next epoch draws anew


def test_training_crops_without_the_mask_are_those_with_it(synthetic_root: Path) -> None:
    """Skipping the mask changes no random draw: the same seed gives the same image and saliency crops."""
    module = _module(synthetic_root, task="localization")
    module.setup("fit")
    without = module.datasets["train"]
    with_mask = module._dataset(module.hparams.train_split, "localization", training=True)
    torch.manual_seed(3)
    a = without[1]
    torch.manual_seed(3)
    b = with_mask[1]
    assert "mask" not in a and b["mask"].shape == (32, 32)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["saliency"], b["saliency"])
    assert all(mask is None for _, _, mask, _ in without.files())  # the pre-flight skips the masks too


class _FakeTrainer:
    """A trainer whose strategy's root device is ``device`` (nothing runs on it)."""

    def __init__(self, device: str) -> None:
        self.strategy = type("Strategy", (), {"root_device": torch.device(device)})()
        self.global_rank = 0


@pytest.mark.parametrize(("device", "pinned"), [(None, False), ("cpu", False), ("cuda:0", True)])
def test_pin_memory_follows_the_accelerator(synthetic_root: Path, device: str | None, pinned: bool) -> None:
    module = _module(synthetic_root, task="localization", worker_nice=0)
    module.setup("fit")
    if device is not None:
        module.trainer = _FakeTrainer(device)  # type: ignore[assignment]
    assert module.train_dataloader().pin_memory is pinned


def _made_from(folder: Path, root: Path, class_names: list[str] | None = None) -> None:
    """The mask writer's records of ``folder``: made from ``root`` (and its classes, when given)."""
    record = {"dataset": {"root": str(root.resolve()), "ids_sha256": None}, "checkpoint_sha256": None}
    (folder / "provenance.json").write_text(json.dumps(record | {"model": "m", "inference": {}}))
    if class_names is not None:
        (folder / "manifest.json").write_text(json.dumps({"class_names": class_names}))


def test_stage_3_refuses_pseudo_masks_made_from_another_dataset(
    synthetic_root: Path, synthetic_copy: Path, pseudo_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    # the copy has the same ids and image sizes: only the folder's provenance tells the two apart
    _made_from(pseudo_dir, synthetic_copy)
    module = _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(pseudo_dir))
    with pytest.raises(DatasetError) as error:
        module.setup("fit")
    assert str(error.value) == (
        f"--data.pseudo_mask_dir {pseudo_dir} holds masks of the dataset {synthetic_copy.resolve()} (see "
        f"{pseudo_dir / 'provenance.json'}), not of --data.root {synthetic_root.resolve()}: predict the masks of "
        f"{synthetic_root.resolve()}, or give the folder of its masks"
    )
    # the same root with other classes (the manifest's), or in another order
    _made_from(pseudo_dir, synthetic_root, list(reversed(SYNTHETIC_CLASSES)))
    with pytest.raises(DatasetError, match=r"holds masks of the classes \['boat', .* lists \['background', "):
        module.setup("fit")
    # made from this dataset (masks in the writer's mask_subdir, the records one folder up): read as before
    _made_from(pseudo_dir, synthetic_root, list(SYNTHETIC_CLASSES))
    sub = pseudo_dir / "masks"
    _write_pseudo_masks(sub, split_ids(synthetic_root, "train"))
    _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(sub)).setup("fit")
    _made_from(pseudo_dir, synthetic_copy)
    with pytest.raises(DatasetError, match="holds masks of the dataset"):
        _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(sub)).setup("fit")
    assert "no provenance.json" not in capsys.readouterr().err


def test_a_pseudo_mask_folder_without_provenance_is_read_with_one_note(
    synthetic_root: Path, pseudo_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    for _ in range(2):
        _module(synthetic_root, task="segmentation", pseudo_mask_dir=str(pseudo_dir)).setup("fit")
    notes = [line for line in capsys.readouterr().err.splitlines() if "no provenance.json" in line]
    assert notes == [
        f"[epspp] note: --data.pseudo_mask_dir {pseudo_dir} has no provenance.json (an older epspp's or your own "
        "masks): which dataset and classes it was made for is not checked"
    ]


def test_labeled_per_batch_leaves_a_pseudo_labelled_sample_in_every_batch(tmp_path: Path) -> None:
    """1..batch_size-1, refused at construction (before the root is even looked at) at exactly batch_size."""
    missing = str(tmp_path / "no_root")
    semi = {"task": "segmentation", "batch_size": 4, "labeled_split": "labeled", "pseudo_mask_dir": missing}
    for bad in (4, 0):
        with pytest.raises(ConfigError, match=rf"labeled_per_batch must be in 1..batch_size-1 = 1..3, got {bad}"):
            EPSDataModule(missing, labeled_per_batch=bad, **semi)
    for good in (3, 1):  # the check passes: the missing root is what stops it
        with pytest.raises(DatasetError, match="does not exist"):
            EPSDataModule(missing, labeled_per_batch=good, **semi)


def test_semi_supervised_batches_need_two_images_and_two_are_enough(tmp_path: Path) -> None:
    """One labelled and one pseudo-labelled image: batch_size 2 is the least (boundary sweep)."""
    missing = str(tmp_path / "no_root")
    semi = {"task": "segmentation", "labeled_split": "labeled", "pseudo_mask_dir": missing}
    with pytest.raises(ConfigError, match="batch_size must be >= 2, got 1"):
        EPSDataModule(missing, batch_size=1, **semi)
    with pytest.raises(DatasetError, match="does not exist"):  # the check passes: the missing root stops it
        EPSDataModule(missing, batch_size=2, **semi)


def test_the_sampler_seed_follows_seed_everything_unless_data_seed_is_set(
    synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.seed wins; without it, the run's seed (seed_everything's PL_GLOBAL_SEED); without either, 0."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "1234")
    assert _module(synthetic_root).sampler_seed() == 1234
    assert _module(synthetic_root, seed=7).sampler_seed() == 7
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert _module(synthetic_root).sampler_seed() == 0


# ---------------------------------------------------------------- variation pass: options away from their defaults
def test_every_transform_option_reaches_its_parameter(synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each data option, set away from its default, arrives at the parameter of its name: training, evaluation
    (eval_size, eval_scale) and predict (full size, no eval_scale)."""
    import inspect

    from epspp.data import datamodule, transforms

    calls: list[tuple[str, dict]] = []

    def recording(real):
        def record(*args, **kwargs):
            calls.append((real.__name__, dict(inspect.signature(real).bind(*args, **kwargs).arguments)))
            return real(*args, **kwargs)

        return record

    monkeypatch.setattr(datamodule, "train_transform", recording(transforms.train_transform))
    monkeypatch.setattr(datamodule, "eval_transform", recording(transforms.eval_transform))
    mean, std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)
    options = {"crop_size": 24, "resize_long": (30, 50), "color_jitter": 0.2, "jitter_hue": 0.05, "jitter_p": 0.7}
    options |= {"train_interpolation": "bicubic", "train_scales": (0.5, 1.5), "eval_size": 40, "eval_scale": 2.0}
    module = _module(synthetic_root, task="localization", predict_split="val", mean=mean, std=std, **options)
    module.setup("fit")
    module.setup("predict")
    assert calls == [
        (
            "train_transform",
            {
                "crop_size": 24,
                "resize_long": (30, 50),
                "mean": mean,
                "std": std,
                "color_jitter": 0.2,
                "jitter_hue": 0.05,
                "jitter_p": 0.7,
                "interpolation": "bicubic",
                "scales": (0.5, 1.5),
            },
        ),
        ("eval_transform", {"eval_size": 40, "mean": mean, "std": std, "scale": 2.0}),
        ("eval_transform", {"eval_size": None, "mean": mean, "std": std}),
    ]


def test_the_saliency_and_mask_folders_reach_every_dataset(synthetic_root: Path, tmp_path: Path) -> None:
    saliency, masks = tmp_path / "maps", tmp_path / "truth"
    saliency.symlink_to(synthetic_root / "saliency")
    masks.symlink_to(synthetic_root / "SegmentationClassAug")
    module = _module(
        synthetic_root, task="localization", predict_split="val", saliency_dir=str(saliency), mask_dir=str(masks)
    )
    module.setup("fit")
    module.setup("predict")
    for name in ("train", "val", "predict"):
        dataset = module.datasets[name]
        assert (dataset.saliency_dir, dataset.mask_dir) == (saliency, masks), name


def test_the_test_stage_scores_the_test_split_not_the_val_split(synthetic_root: Path) -> None:
    module = _module(synthetic_root, task="localization", val_split="val", test_split="train")
    module.setup("test")
    assert list(module.datasets) == ["test"]
    assert module.datasets["test"].ids == split_ids(synthetic_root, "train")


def test_semi_supervised_batches_of_an_odd_size_hold_the_smaller_half_labelled(
    synthetic_root: Path, pseudo_dir: Path
) -> None:
    """batch_size 3: 3 // 2 = 1 labelled and 2 pseudo-labelled per batch, 18 // 2 = 9 batches."""
    module = _module(
        synthetic_root,
        task="segmentation",
        pseudo_mask_dir=str(pseudo_dir),
        labeled_split="labeled_10pct",
        batch_size=3,
    )
    module.setup("fit")
    sampler = module.train_dataloader().sampler
    assert (sampler.batch_size, sampler.labeled_per_batch, len(sampler)) == (3, 1, 27)


@pytest.mark.parametrize(("eval_size", "padded"), [(None, True), (64, False)])
def test_full_resolution_evaluation_batches_are_padded_by_pad_collate(
    synthetic_root: Path, eval_size: int | None, padded: bool
) -> None:
    from epspp.data.transforms import pad_collate

    module = _module(synthetic_root, task="localization", eval_size=eval_size)
    module.setup("validate")
    assert (module.val_dataloader().collate_fn is pad_collate) is padded


@pytest.mark.parametrize(
    ("workers", "worker_nice", "device", "nice"),
    [(1, None, "cpu", 19), (1, None, "cuda:0", None), (1, 5, "cuda:0", 5), (0, 5, "cpu", None)],
)
def test_the_loader_workers_are_niced_on_the_cpu_unless_told_otherwise(
    synthetic_root: Path, workers: int, worker_nice: int | None, device: str, nice: int | None
) -> None:
    """worker_nice None: 19 (CPU_WORKER_NICE) when the model runs on the CPU, 0 (no init function) on a GPU; a value
    given is used on either; no workers, nothing to nice."""
    module = _module(synthetic_root, task="localization", num_workers=workers, worker_nice=worker_nice)
    module.setup("validate")
    module.trainer = _FakeTrainer(device)  # type: ignore[assignment]
    init = module.val_dataloader().worker_init_fn
    assert (None if init is None else init.nice) == nice


@pytest.mark.parametrize(("task", "labelled"), [("localization", True), ("segmentation", False)])
def test_only_stage_2_predictions_read_the_image_level_labels(synthetic_root: Path, task: str, labelled: bool) -> None:
    """Pseudo-masks need the labels; a segmentation network predicts splits without any (VOC test)."""
    module = _module(synthetic_root, task=task, predict_split="val")
    module.setup("predict")
    assert bool(module.datasets["predict"].labels) is labelled
