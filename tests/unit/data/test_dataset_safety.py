"""Bad input to the data path: ids that are paths, crafted label files, 16-bit saliency, other image types."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import labels_from_masks, split_ids, write_png
from PIL import Image

from epspp.data.classes import read_classes
from epspp.data.dataset import VOCLayoutDataset
from epspp.data.io import DatasetError, read_saliency, read_split
from epspp.data.labels import load_npy_labels

C = 5


def _write_split(root: Path, name: str, lines: list[str]) -> None:
    (root / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))


# ------------------------------------------------------------------ defect 2: ids are names, not paths
@pytest.mark.parametrize("bad", ["../../victim/x", "/abs/path/y", "a/b", "..", "x\\y", "nul\x00byte"])
def test_split_ids_that_are_paths_are_refused_with_their_line(synthetic_copy: Path, bad: str) -> None:
    good = split_ids(synthetic_copy, "train")[:2]
    _write_split(synthetic_copy, "evil", [good[0], "", bad, good[1]])
    with pytest.raises(DatasetError, match=r"evil\.txt line 3: id .* is not a plain file name"):
        read_split(synthetic_copy, "evil")


def test_ids_argument_that_escapes_is_refused(synthetic_root: Path) -> None:
    with pytest.raises(DatasetError, match="not a plain file name"):
        VOCLayoutDataset(synthetic_root, "train", C, ids=["../train_000000"])


def test_ids_with_spaces_are_kept_whole(synthetic_copy: Path) -> None:
    image_id = split_ids(synthetic_copy, "train")[0]
    for folder, suffix in (("JPEGImages", ".jpg"), ("saliency", ".png"), ("SegmentationClassAug", ".png")):
        source = synthetic_copy / folder / f"{image_id}{suffix}"
        (synthetic_copy / folder / f"my image{suffix}").write_bytes(source.read_bytes())
    _write_split(synthetic_copy, "spaced", ["  my image  "])
    assert read_split(synthetic_copy, "spaced") == ["my image"]
    dataset = VOCLayoutDataset(synthetic_copy, "spaced", C)
    assert dataset[0]["id"] == "my image" and dataset.labels["my image"].shape == (C,)


# ------------------------------------------------------------------ defect 3: cls_labels.npy never runs code
class _Payload:
    def __reduce__(self):  # what a crafted download would hold
        return (Path.touch, (Path(self.marker),))


def _crafted_npy(path: Path, marker: Path) -> None:
    payload = _Payload()
    payload.marker = str(marker)
    table = np.empty((), dtype=object)
    table[()] = {"train_000000": payload}
    np.save(path, table, allow_pickle=True)


def test_crafted_cls_labels_npy_does_not_run_code(synthetic_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    _crafted_npy(synthetic_copy / "cls_labels.npy", marker)
    with pytest.raises(DatasetError, match="cls_labels.npy"):
        VOCLayoutDataset(synthetic_copy, "train", C)
    (synthetic_copy / "classes.json").unlink()  # read_classes falls back on cls_labels.npy: the same reader
    with pytest.raises(DatasetError, match="cls_labels.npy"):
        read_classes(synthetic_copy)
    assert not marker.exists()
    # the payload is real: the plain pickle reader would have run it
    with open(synthetic_copy / "cls_labels.npy", "rb") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        pickle.load(handle)
    assert marker.exists()


def test_eps_cls_labels_npy_is_still_read(synthetic_copy: Path) -> None:
    ids = split_ids(synthetic_copy, "train")
    table = labels_from_masks(synthetic_copy, ids, C)
    np.save(synthetic_copy / "cls_labels.npy", table)  # EPS's format: np.save of a dict
    loaded = load_npy_labels(synthetic_copy / "cls_labels.npy")
    assert set(loaded) == set(ids)
    for image_id in ids:
        np.testing.assert_array_equal(loaded[image_id], table[image_id])


def test_missing_or_broken_classes_json_is_a_dataset_error(synthetic_copy: Path) -> None:
    (synthetic_copy / "classes.json").write_text("{not json")
    with pytest.raises(DatasetError, match="classes.json"):
        read_classes(synthetic_copy)
    (synthetic_copy / "classes.json").unlink()
    with pytest.raises(DatasetError, match="classes.json not found"):
        read_classes(synthetic_copy)


# ------------------------------------------------------------------ defect 7: 16-bit saliency
def test_16_bit_saliency_is_scaled_by_its_depth(tmp_path: Path) -> None:
    values = np.array([[0, 16384, 32768, 65535]], np.uint16)
    path = tmp_path / "sal16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(read_saliency(path), values / 65535.0, atol=1e-6)
    write_png(tmp_path / "sal8.png", np.array([[0, 64, 128, 255]]))
    np.testing.assert_allclose(read_saliency(tmp_path / "sal8.png"), [[0, 64 / 255, 128 / 255, 1.0]], atol=1e-6)


# ------------------------------------------------------------------ images of any common type
def test_images_are_read_with_the_extension_found(synthetic_copy: Path) -> None:
    image_id = split_ids(synthetic_copy, "train")[0]
    jpg = synthetic_copy / "JPEGImages" / f"{image_id}.jpg"
    rgb = np.asarray(Image.open(jpg).convert("RGB"))
    Image.fromarray(rgb).save(jpg.with_suffix(".png"))
    jpg.unlink()
    dataset = VOCLayoutDataset(synthetic_copy, "train", C, mode="predict")
    assert dataset.image_path(image_id).suffix == ".png"
    assert tuple(dataset[0]["size"].tolist()) == rgb.shape[:2]


# ------------------------------------------------------------------ a plain folder of images
def test_image_folder_samples_and_stage2_refuses_a_folder(synthetic_root: Path, tmp_path: Path) -> None:
    from epspp.data.datamodule import EPSDataModule
    from epspp.data.dataset import ImageFolderDataset
    from epspp.errors import ConfigError

    folder = tmp_path / "new"
    folder.mkdir()
    image = Image.open(synthetic_root / "JPEGImages" / "val_000000.jpg").convert("RGB")
    image.save(folder / "b.png")
    image.resize((40, 30)).save(folder / "a c.jpg")
    (folder / "notes.txt").write_text("not an image")
    dataset = ImageFolderDataset(folder, C)
    assert dataset.ids == ["a c", "b"] and len(dataset) == 2
    sample = dataset[0]
    assert sample["id"] == "a c" and sample["size"].tolist() == [30, 40] and sample["image"].shape == (3, 30, 40)
    assert not bool(sample["has_mask"]) and bool((sample["mask"] == 255).all())
    module = EPSDataModule(str(synthetic_root), task="segmentation", predict_image_dir=str(folder), num_workers=0)
    module.setup("predict")
    assert module.datasets["predict"].ids == ["a c", "b"]
    with pytest.raises(ConfigError, match="stage 2 needs the image-level labels"):
        EPSDataModule(str(synthetic_root), predict_image_dir=str(folder), num_workers=0).setup("predict")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image in"):
        ImageFolderDataset(tmp_path / "empty", C)


def test_segmentation_validation_scores_the_ids_with_ground_truth(synthetic_copy: Path) -> None:
    from epspp.data.datamodule import EPSDataModule

    val = split_ids(synthetic_copy, "val")
    for image_id in val[:4]:
        (synthetic_copy / "SegmentationClassAug" / f"{image_id}.png").unlink()
    module = EPSDataModule(str(synthetic_copy), task="segmentation", num_workers=0, eval_size=48)
    module.setup("validate")
    dataset = module.datasets["val"]
    assert dataset.ids == val
    assert bool((dataset[0]["mask"] == 255).all()) and not bool((dataset[5]["mask"] == 255).all())
    for image_id in val[4:]:
        (synthetic_copy / "SegmentationClassAug" / f"{image_id}.png").unlink()
    with pytest.raises(DatasetError, match="split 'val' .* has no ground-truth mask .*: nothing to score"):
        EPSDataModule(str(synthetic_copy), task="segmentation", num_workers=0).setup("validate")
