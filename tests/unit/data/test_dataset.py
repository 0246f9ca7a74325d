"""VOCLayoutDataset: sample fields in the three modes, image-level labels, and errors on bad input."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from fixtures.helpers import (
    gt_mask,
    labels_from_masks,
    read_png,
    saliency_with_errors,
    snapshot,
    split_ids,
    write_png,
)

from epspp.data.cache import dataset_cache
from epspp.data.dataset import VOCLayoutDataset
from epspp.data.io import DatasetError, write_mask_png
from epspp.data.labels import LABEL_CACHE
from epspp.data.transforms import IMAGENET_MEAN, IMAGENET_STD

C = 5  # object classes of the synthetic dataset
SIZE = 48


def _denormalize(image: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


# ------------------------------------------------------------------ the three modes
def test_localization_samples(synthetic_root):
    ids = split_ids(synthetic_root, "train")
    dataset = VOCLayoutDataset(synthetic_root, "train", C, mode="localization")
    assert len(dataset) == 20 and dataset.ids == ids
    expected = labels_from_masks(synthetic_root, ids, C)
    for index in (0, 7, 19):
        sample = dataset[index]
        image_id = ids[index]
        assert set(sample) == {"id", "image", "mask", "saliency", "size", "label"}
        assert sample["id"] == image_id
        assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.float32
        assert sample["saliency"].shape == (1, SIZE, SIZE) and sample["saliency"].dtype == torch.float32
        assert sample["mask"].shape == (SIZE, SIZE) and sample["mask"].dtype == torch.int64
        assert sample["size"].tolist() == [SIZE, SIZE]
        assert sample["label"].dtype == torch.float32 and sample["label"].shape == (C,)
        np.testing.assert_array_equal(sample["label"].numpy(), expected[image_id])
        # normalized image: the JPEG pixels, up to (x / 255 - mean) / std
        raw = read_png(synthetic_root / "JPEGImages" / f"{image_id}.jpg").astype(np.float32)
        np.testing.assert_allclose(_denormalize(sample["image"]), raw, atol=1e-3)
        assert sample["image"].min() < 0 < sample["image"].max()
        # saliency: the grey PNG scaled to [0, 1]
        saliency = sample["saliency"][0].numpy()
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0 and saliency.max() > 0.5
        grey = read_png(synthetic_root / "saliency" / f"{image_id}.png")
        np.testing.assert_allclose(saliency, grey / 255.0, atol=1e-6)
        # the ground-truth mask is served unchanged
        np.testing.assert_array_equal(sample["mask"].numpy(), gt_mask(synthetic_root, image_id))


def test_saliency_errors_are_read_only_when_asked(synthetic_root, tmp_path):
    folder = tmp_path / "saliency"
    flags = saliency_with_errors(synthetic_root, folder)
    off = VOCLayoutDataset(synthetic_root, "train", C, mode="localization", saliency_dir=folder)
    assert "saliency_error" not in off[3]
    on = VOCLayoutDataset(
        synthetic_root, "train", C, mode="localization", saliency_dir=folder, with_saliency_errors=True
    )
    sample = on[3]  # the evaluation transform: no geometry, the flags as written
    assert sample["saliency_error"].dtype == torch.uint8
    np.testing.assert_array_equal(sample["saliency_error"].numpy(), flags[on.ids[3]])
    torch.testing.assert_close(sample["saliency"], off[3]["saliency"])
    predict = VOCLayoutDataset(
        synthetic_root, "train", C, mode="predict", saliency_dir=folder, with_saliency_errors=True
    )
    assert "saliency_error" not in predict[3]
    (folder / "errors" / f"{on.ids[5]}.png").unlink()
    with pytest.raises(DatasetError) as error:
        VOCLayoutDataset(
            synthetic_root, "train", C, mode="localization", saliency_dir=folder, with_saliency_errors=True
        )
    message = str(error.value)
    assert str(folder / "errors" / f"{on.ids[5]}.png") in message and "--data.saliency_errors" in message
    assert "\n" not in message


def test_labels_equal_classes_in_masks_for_every_id(synthetic_root):
    for split in ("train", "val"):
        ids = split_ids(synthetic_root, split)
        dataset = VOCLayoutDataset(synthetic_root, split, C, mode="predict")
        expected = labels_from_masks(synthetic_root, ids, C)
        assert set(dataset.labels) == set(ids)
        for image_id in ids:
            np.testing.assert_array_equal(dataset.labels[image_id], expected[image_id])
            assert dataset.labels[image_id].sum() >= 1  # every synthetic image shows an object


def test_predict_samples(synthetic_root):
    dataset = VOCLayoutDataset(synthetic_root, "val", C, mode="predict")
    sample = dataset[2]
    image_id = split_ids(synthetic_root, "val")[2]
    assert set(sample) == {"id", "image", "mask", "size", "label", "has_mask"}
    assert sample["id"] == image_id
    assert sample["image"].shape == (3, SIZE, SIZE)
    assert sample["has_mask"].dtype == torch.bool and bool(sample["has_mask"])
    np.testing.assert_array_equal(sample["mask"].numpy(), gt_mask(synthetic_root, image_id))
    np.testing.assert_array_equal(sample["label"].numpy(), labels_from_masks(synthetic_root, [image_id], C)[image_id])


def test_predict_without_ground_truth_serves_ignore_mask(synthetic_copy):
    ids = split_ids(synthetic_copy, "val")
    names = json.loads((synthetic_copy / "classes.json").read_text())["names"]
    labels = labels_from_masks(synthetic_copy, ids, C)  # the labels given in the safe format
    (synthetic_copy / "cls_labels.json").write_text(
        json.dumps({i: [names[c] for c in _classes(labels[i])] for i in ids})
    )
    (synthetic_copy / "SegmentationClassAug" / f"{ids[1]}.png").unlink()
    dataset = VOCLayoutDataset(synthetic_copy, "val", C, mode="predict")
    sample = dataset[1]
    assert not bool(sample["has_mask"])
    assert sample["mask"].shape == (SIZE, SIZE) and bool((sample["mask"] == 255).all())
    assert bool(dataset[0]["has_mask"])


def test_segmentation_ground_truth_only(synthetic_root):
    ids = split_ids(synthetic_root, "train")
    dataset = VOCLayoutDataset(synthetic_root, "train", C, mode="segmentation")
    sample = dataset[4]
    assert set(sample) == {"id", "image", "mask", "size", "is_labeled"}
    assert sample["is_labeled"].dtype == torch.float32 and float(sample["is_labeled"]) == 1.0
    mask = sample["mask"].numpy()
    np.testing.assert_array_equal(mask, gt_mask(synthetic_root, ids[4]))
    assert set(np.unique(mask).tolist()) <= set(range(C + 1)) | {255}


def test_segmentation_pseudo_masks_and_labeled_ids(synthetic_root, tmp_path):
    ids = split_ids(synthetic_root, "train")
    labeled = set(split_ids(synthetic_root, "labeled_10pct"))
    assert len(labeled) == 2 and labeled <= set(ids)
    pseudo_dir = tmp_path / "pseudo"
    pseudo_dir.mkdir()
    pseudo = {}
    for k, image_id in enumerate(ids):  # distinct pseudo-masks: constant class, a stripe of 255
        mask = np.full((SIZE, SIZE), 1 + k % C, np.uint8)
        mask[k : k + 3] = 255
        write_mask_png(pseudo_dir / f"{image_id}.png", mask)
        pseudo[image_id] = mask
    dataset = VOCLayoutDataset(
        synthetic_root, "train", C, mode="segmentation", pseudo_mask_dir=pseudo_dir, labeled_ids=labeled
    )
    seen_labeled = 0
    for index, image_id in enumerate(ids):
        sample = dataset[index]
        assert sample["id"] == image_id
        if image_id in labeled:
            assert dataset.target_path(image_id) == synthetic_root / "SegmentationClassAug" / f"{image_id}.png"
            np.testing.assert_array_equal(sample["mask"].numpy(), gt_mask(synthetic_root, image_id))
            assert float(sample["is_labeled"]) == 1.0
            seen_labeled += 1
        else:
            assert dataset.target_path(image_id) == pseudo_dir / f"{image_id}.png"
            np.testing.assert_array_equal(sample["mask"].numpy(), pseudo[image_id])
            assert float(sample["is_labeled"]) == 0.0
    assert seen_labeled == 2

    # without labeled_ids every mask is a pseudo-mask
    weak = VOCLayoutDataset(synthetic_root, "train", C, mode="segmentation", pseudo_mask_dir=pseudo_dir)
    for index in (0, 5):
        np.testing.assert_array_equal(weak[index]["mask"].numpy(), pseudo[ids[index]])
        assert float(weak[index]["is_labeled"]) == 0.0


def test_ids_argument_overrides_split_file(synthetic_root):
    ids = split_ids(synthetic_root, "val")[3:5]
    dataset = VOCLayoutDataset(synthetic_root, "val", C, mode="predict", ids=ids)
    assert len(dataset) == 2 and [dataset[i]["id"] for i in range(2)] == ids


# ------------------------------------------------------------------ labels: cls_labels.npy and cache
def test_cls_labels_npy_is_preferred_to_masks(synthetic_copy):
    ids = split_ids(synthetic_copy, "train") + split_ids(synthetic_copy, "val")
    rng = np.random.default_rng(0)
    from_masks = labels_from_masks(synthetic_copy, ids, C)
    given = {}
    for image_id in ids:  # labels that differ from the masks
        label = (rng.random(C) < 0.5).astype(np.float32)
        while np.array_equal(label, from_masks[image_id]) or not label.any():
            label = (rng.random(C) < 0.5).astype(np.float32)
        given[image_id] = label
    np.save(synthetic_copy / "cls_labels.npy", given)
    # a broken mask is never read: the labels come from cls_labels.npy
    write_png(synthetic_copy / "SegmentationClassAug" / f"{ids[0]}.png", np.full((SIZE, SIZE), 99, np.uint8))
    dataset = VOCLayoutDataset(synthetic_copy, "train", C, mode="localization")
    for image_id in split_ids(synthetic_copy, "train"):
        np.testing.assert_array_equal(dataset.labels[image_id], given[image_id])
    np.testing.assert_array_equal(dataset[3]["label"].numpy(), given[dataset.ids[3]])
    assert dataset[3]["label"].dtype == torch.float32
    assert not (dataset_cache(synthetic_copy) / LABEL_CACHE).exists()


def test_cls_labels_npy_missing_ids_is_an_error(synthetic_copy):
    ids = split_ids(synthetic_copy, "train")
    np.save(synthetic_copy / "cls_labels.npy", {i: np.ones(C, np.float32) for i in ids[:-2]})
    with pytest.raises(DatasetError, match="cls_labels.npy has no label for 2 ids") as error:
        VOCLayoutDataset(synthetic_copy, "train", C)
    assert ids[-1] in str(error.value) and ids[-2] in str(error.value)


def _cache_labels(cache) -> dict:
    return {i: e["classes"] for i, e in json.loads(cache.read_text())["entries"].items()}


def _classes(label: np.ndarray) -> list[int]:
    return [int(c) + 1 for c in np.flatnonzero(label)]


def test_label_cache_is_written_and_reused(synthetic_copy):
    ids = split_ids(synthetic_copy, "train")
    cache = dataset_cache(synthetic_copy) / LABEL_CACHE
    assert cache.is_relative_to(os.environ["XDG_CACHE_HOME"]) and not cache.exists()  # outside the dataset
    VOCLayoutDataset(synthetic_copy, "train", C)
    expected = labels_from_masks(synthetic_copy, ids, C)
    assert _cache_labels(cache) == {i: _classes(expected[i]) for i in ids}
    # reused while the masks are unchanged: an entry edited by hand (same size and mtime key) is served
    table = json.loads(cache.read_text())
    table["entries"][ids[0]]["classes"] = [1, 2, 3, 4, 5]
    cache.write_text(json.dumps(table))
    assert VOCLayoutDataset(synthetic_copy, "train", C).labels[ids[0]].tolist() == [1.0] * C


def test_label_cache_follows_edited_masks(synthetic_copy):
    """Defect 8: a mask edited after the cache was written gives its new labels."""
    ids = split_ids(synthetic_copy, "train")
    VOCLayoutDataset(synthetic_copy, "train", C)
    path = synthetic_copy / "SegmentationClassAug" / f"{ids[0]}.png"
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:10, :10] = 4
    write_mask_png(path, mask)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later mtime, whatever the clock
    assert VOCLayoutDataset(synthetic_copy, "train", C).labels[ids[0]].tolist() == [0, 0, 0, 1.0, 0]
    assert _cache_labels(dataset_cache(synthetic_copy) / LABEL_CACHE)[ids[0]] == [4]


def test_label_cache_is_extended_for_new_splits(synthetic_copy):
    cache = dataset_cache(synthetic_copy) / LABEL_CACHE
    VOCLayoutDataset(synthetic_copy, "train", C)
    VOCLayoutDataset(synthetic_copy, "val", C)
    assert set(_cache_labels(cache)) == set(split_ids(synthetic_copy, "train")) | set(split_ids(synthetic_copy, "val"))


# ------------------------------------------------------------------ bad input
def _split_file(root, split="train"):
    return str(root / "ImageSets" / "Segmentation" / f"{split}.txt")


def test_missing_image(synthetic_copy):
    image_id = split_ids(synthetic_copy, "train")[3]
    path = synthetic_copy / "JPEGImages" / f"{image_id}.jpg"
    path.unlink()
    with pytest.raises(DatasetError) as error:
        VOCLayoutDataset(synthetic_copy, "train", C, mode="predict")
    message = str(error.value)
    assert str(path) in message and _split_file(synthetic_copy) in message and "1 file(s)" in message


def test_missing_saliency(synthetic_copy):
    ids = split_ids(synthetic_copy, "train")
    paths = [synthetic_copy / "saliency" / f"{i}.png" for i in ids[:4]]
    for path in paths:
        path.unlink()
    with pytest.raises(DatasetError) as error:
        VOCLayoutDataset(synthetic_copy, "train", C, mode="localization")
    message = str(error.value)
    assert "4 file(s)" in message and _split_file(synthetic_copy) in message
    assert str(paths[0]) in message
    # predict mode does not need saliency
    assert len(VOCLayoutDataset(synthetic_copy, "train", C, mode="predict")) == 20


def test_missing_mask_in_segmentation_mode(synthetic_copy):
    image_id = split_ids(synthetic_copy, "val")[5]
    path = synthetic_copy / "SegmentationClassAug" / f"{image_id}.png"
    path.unlink()
    with pytest.raises(DatasetError) as error:
        VOCLayoutDataset(synthetic_copy, "val", C, mode="segmentation")
    assert str(path) in str(error.value) and _split_file(synthetic_copy, "val") in str(error.value)


def test_missing_pseudo_mask_in_segmentation_mode(synthetic_root, tmp_path):
    ids = split_ids(synthetic_root, "train")
    for image_id in ids[1:]:
        write_mask_png(tmp_path / f"{image_id}.png", np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(DatasetError) as error:
        VOCLayoutDataset(synthetic_root, "train", C, mode="segmentation", pseudo_mask_dir=tmp_path)
    assert str(tmp_path / f"{ids[0]}.png") in str(error.value)
    # the missing one is labelled: its ground truth is used instead
    dataset = VOCLayoutDataset(
        synthetic_root, "train", C, mode="segmentation", pseudo_mask_dir=tmp_path, labeled_ids={ids[0]}
    )
    assert float(dataset[0]["is_labeled"]) == 1.0


def test_empty_split_file(synthetic_copy):
    path = synthetic_copy / "ImageSets" / "Segmentation" / "empty.txt"
    path.write_text("\n  \n")
    with pytest.raises(DatasetError, match="empty") as error:
        VOCLayoutDataset(synthetic_copy, "empty", C)
    assert str(path) in str(error.value)


def test_missing_split_file_lists_available_splits(synthetic_root):
    with pytest.raises(DatasetError) as error:
        VOCLayoutDataset(synthetic_root, "trainaug", C)
    message = str(error.value)
    assert str(synthetic_root / "ImageSets" / "Segmentation" / "trainaug.txt") in message
    assert "not found" in message
    assert "['labeled_10pct', 'train', 'val']" in message


def test_image_and_saliency_of_different_sizes(synthetic_copy):
    image_id = split_ids(synthetic_copy, "train")[2]
    path = synthetic_copy / "saliency" / f"{image_id}.png"
    write_png(path, np.zeros((30, 40), np.uint8))  # 40 wide, 30 high
    dataset = VOCLayoutDataset(synthetic_copy, "train", C, mode="localization")
    dataset[1]  # other samples are fine
    with pytest.raises(DatasetError) as error:
        dataset[2]
    message = str(error.value)
    assert str(path) in message and "40x30" in message and f"{SIZE}x{SIZE}" in message
    assert str(synthetic_copy / "JPEGImages" / f"{image_id}.jpg") in message


def test_mask_of_different_size(synthetic_copy):
    image_id = split_ids(synthetic_copy, "val")[0]
    path = synthetic_copy / "SegmentationClassAug" / f"{image_id}.png"
    write_mask_png(path, np.zeros((SIZE, SIZE + 2), np.uint8))
    dataset = VOCLayoutDataset(synthetic_copy, "val", C, mode="segmentation")
    with pytest.raises(DatasetError) as error:
        dataset[0]
    assert str(path) in str(error.value) and f"{SIZE + 2}x{SIZE}" in str(error.value)


@pytest.mark.parametrize("mode", ["localization", "segmentation"])
def test_mask_value_out_of_range(synthetic_copy, mode):
    image_id = split_ids(synthetic_copy, "train")[6]
    path = synthetic_copy / "SegmentationClassAug" / f"{image_id}.png"
    mask = gt_mask(synthetic_copy, image_id).copy()
    mask[:2, :2] = 7
    mask[-1, -1] = 200
    mask[5, 5] = 255  # ignore is allowed
    mask[6, 6] = C  # the last class is allowed
    write_mask_png(path, mask)
    with pytest.raises(DatasetError) as error:
        dataset = VOCLayoutDataset(synthetic_copy, "train", C, mode=mode)
        dataset[6]  # segmentation mode reads masks lazily
    message = str(error.value)
    assert str(path) in message and "[7, 200]" in message and f"0..{C}" in message


@pytest.mark.parametrize(
    "folder, suffix, mode, what",
    [
        ("JPEGImages", "jpg", "predict", "image"),
        ("saliency", "png", "localization", "saliency map"),
        ("SegmentationClassAug", "png", "segmentation", "mask"),
    ],
)
def test_corrupt_file(synthetic_copy, folder, suffix, mode, what):
    image_id = split_ids(synthetic_copy, "val")[1]
    VOCLayoutDataset(synthetic_copy, "val", C, mode="predict")  # cache the labels while masks are sound
    path = synthetic_copy / folder / f"{image_id}.{suffix}"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image" if suffix == "png" else b"\xff\xd8\xff garbage")
    dataset = VOCLayoutDataset(synthetic_copy, "val", C, mode=mode)
    with pytest.raises(DatasetError) as error:
        dataset[1]
    assert re.search(rf"cannot read {what} {re.escape(str(path))}", str(error.value))


def test_truncated_jpeg(synthetic_copy):
    image_id = split_ids(synthetic_copy, "train")[0]
    path = synthetic_copy / "JPEGImages" / f"{image_id}.jpg"
    path.write_bytes(path.read_bytes()[:200])
    dataset = VOCLayoutDataset(synthetic_copy, "train", C, mode="predict")
    with pytest.raises(DatasetError, match=re.escape(str(path))):
        dataset[0]


def test_root_does_not_exist(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=f"{re.escape(str(root))} does not exist"):
        VOCLayoutDataset(root, "train", C)
    assert not root.exists()


def test_errors_leave_files_intact(synthetic_copy):
    VOCLayoutDataset(synthetic_copy, "train", C)  # writes the label cache for train
    cache = dataset_cache(synthetic_copy) / LABEL_CACHE
    cached = cache.read_bytes()
    val_id = split_ids(synthetic_copy, "val")[2]
    write_mask_png(synthetic_copy / "SegmentationClassAug" / f"{val_id}.png", np.full((SIZE, SIZE), 9, np.uint8))
    before = snapshot(synthetic_copy)
    with pytest.raises(DatasetError, match="values \\[9\\]"):
        VOCLayoutDataset(synthetic_copy, "val", C)  # fails while deriving val labels
    (synthetic_copy / "saliency" / f"{split_ids(synthetic_copy, 'train')[0]}.png").unlink()
    del before[f"saliency/{split_ids(synthetic_copy, 'train')[0]}.png"]
    with pytest.raises(DatasetError):
        VOCLayoutDataset(synthetic_copy, "train", C)
    with pytest.raises(DatasetError):
        VOCLayoutDataset(synthetic_copy, "missing_split", C)
    assert snapshot(synthetic_copy) == before
    assert cache.read_bytes() == cached


def test_corrupt_label_cache_is_reported_not_replaced(synthetic_copy):
    cache = dataset_cache(synthetic_copy) / LABEL_CACHE
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not a json file")
    with pytest.raises(DatasetError) as error:
        VOCLayoutDataset(synthetic_copy, "train", C)
    assert str(cache) in str(error.value)
    assert cache.read_bytes() == b"not a json file"


def test_label_cache_is_specific_to_the_mask_folder(synthetic_copy, tmp_path):
    """Labels derived from another mask folder must not be served for the default one (or back)."""
    ids = split_ids(synthetic_copy, "val")
    other = tmp_path / "other_masks"
    other.mkdir()
    for image_id in ids:
        write_mask_png(other / f"{image_id}.png", np.full((SIZE, SIZE), 1, np.uint8))  # class 1 only
    custom = VOCLayoutDataset(synthetic_copy, "val", C, mode="predict", mask_dir=other)
    assert all(custom.labels[i].tolist() == [1.0, 0, 0, 0, 0] for i in ids)
    default = VOCLayoutDataset(synthetic_copy, "val", C, mode="predict")
    expected = labels_from_masks(synthetic_copy, ids, C)
    for image_id in ids:
        np.testing.assert_array_equal(default.labels[image_id], expected[image_id])
    again = VOCLayoutDataset(synthetic_copy, "val", C, mode="predict", mask_dir=other)
    assert all(again.labels[i].tolist() == [1.0, 0, 0, 0, 0] for i in ids)
    assert len(list(dataset_cache(synthetic_copy).glob("*.json"))) == 2


# ------------------------------------------------------------------ variation pass: options away from their defaults
def test_predict_without_labels_reads_no_mask_for_them(synthetic_copy):
    """with_labels false (segmentation predictions of an unlabelled split, such as VOC test): no ``label`` field, and a
    split without any mask is served; with labels (derived from the masks) it is refused."""
    for path in (synthetic_copy / "SegmentationClassAug").glob("val_*.png"):
        path.unlink()
    dataset = VOCLayoutDataset(synthetic_copy, "val", C, mode="predict", with_labels=False)
    sample = dataset[0]
    assert set(sample) == {"id", "image", "mask", "size", "has_mask"} and dataset.labels == {}
    assert not bool(sample["has_mask"])
    with pytest.raises(DatasetError, match="image-level labels are derived from the masks"):
        VOCLayoutDataset(synthetic_copy, "val", C, mode="predict")


def test_a_plain_image_folder_names_the_entries_it_does_not_read(tmp_path, capsys):
    from epspp.data.dataset import ImageFolderDataset

    write_png(tmp_path / "a.png", np.zeros((4, 7, 3), np.uint8), "RGB")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "more").mkdir()
    assert ImageFolderDataset(tmp_path, C).ids == ["a"]
    assert capsys.readouterr().err == (
        f"[epspp] note: {tmp_path} (--data.predict_image_dir): skipped 1 subfolder(s), e.g. more/ (their images are "
        "not read); 1 file(s) that are not images (.jpg .jpeg .png .bmp .tif .tiff .webp), e.g. notes.txt\n"
    )
