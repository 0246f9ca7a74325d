"""The synthetic dataset generator: layout, labels, context, saliency errors, determinism, safety."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import read_png
from PIL import Image

import epspp.data.synthetic as synthetic
from epspp import __version__
from epspp.data.classes import SYNTHETIC_CLASSES
from epspp.data.synthetic import BOAT, TRAIN, SyntheticConfig, generate_synthetic, render_sample, write_saliency_variant

NUM_TRAIN, NUM_VAL = 200, 20


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("synthetic") / "root"
    start = time.perf_counter()
    generate_synthetic(root, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=3)
    return root, time.perf_counter() - start


def _ids(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def _load(root: Path, image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(root / "JPEGImages" / f"{image_id}.jpg"))
    mask = np.asarray(Image.open(root / "SegmentationClassAug" / f"{image_id}.png"))
    saliency = np.asarray(Image.open(root / "saliency" / f"{image_id}.png"))
    return image, mask, saliency


def test_layout_and_counts(dataset: tuple[Path, float]) -> None:
    root, _ = dataset
    train, val = _ids(root, "train"), _ids(root, "val")
    assert train == [f"train_{i:06d}" for i in range(NUM_TRAIN)]
    assert val == [f"val_{i:06d}" for i in range(NUM_VAL)]
    labeled = _ids(root, "labeled_10pct")
    assert len(labeled) == round(0.1 * NUM_TRAIN) and set(labeled) <= set(train) and labeled == sorted(labeled)
    subs = ("JPEGImages", "SegmentationClassAug", "saliency", "saliency/errors", "SegmentationContext")
    for sub, suffix in zip(subs, (".jpg", ".png", ".png", ".png", ".png"), strict=True):
        files = sorted(p.name for p in (root / sub).iterdir() if p.is_file())
        assert files == sorted(f"{i}{suffix}" for i in train + val)
    assert [p.name for p in (root / "saliency").iterdir() if p.is_dir()] == ["errors"]
    assert json.loads((root / "classes.json").read_text())["names"] == list(SYNTHETIC_CLASSES)
    assert not (root / "cls_labels.npy").exists()
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["version"] == __version__
    assert meta["params"] == {
        "num_train": NUM_TRAIN,
        "num_val": NUM_VAL,
        "image_size": 64,
        "seed": 3,
        "missing_class_rate": 0.1,
        "missing_part_rate": 0.2,
        "false_coverage_rate": 0.2,
        "labeled_fraction": 0.1,
        "num_classes": 5,
        "difficulty": "easy",
    }
    assert meta["splits"]["train"]["images"] == NUM_TRAIN and meta["splits"]["val"]["images"] == NUM_VAL
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_files_and_labels(dataset: tuple[Path, float]) -> None:
    root, _ = dataset
    meta = json.loads((root / "synthetic.json").read_text())
    class_images = dict.fromkeys(SYNTHETIC_CLASSES[1:], 0)
    multi = 0
    for image_id in _ids(root, "train"):
        assert Image.open(root / "SegmentationClassAug" / f"{image_id}.png").mode == "P"
        assert Image.open(root / "saliency" / f"{image_id}.png").mode == "L"
        image, mask, saliency = _load(root, image_id)
        assert image.shape == (64, 64, 3) and mask.shape == saliency.shape == (64, 64)
        present = [int(c) for c in np.unique(mask) if c]
        assert mask.max() <= 5 and 1 <= len(present) <= 3
        for c in present:
            assert (mask == c).sum() >= 20  # every labelled class is clearly visible
            class_images[SYNTHETIC_CLASSES[c]] += 1
        multi += len(present) > 1
    assert class_images == meta["splits"]["train"]["class_images"]
    assert multi == meta["splits"]["train"]["multi_class"]
    assert 0.2 <= multi / NUM_TRAIN <= 0.55
    assert all(count >= 0.15 * NUM_TRAIN for count in class_images.values())


def test_context_always_with_its_class_and_labelled_background() -> None:
    cfg = SyntheticConfig()
    seen = {TRAIN: 0, BOAT: 0}
    for i in range(150):
        sample = render_sample(cfg, np.random.default_rng([7, i]))
        has_context_class = bool(np.isin(sample.mask, [TRAIN, BOAT]).any())
        assert sample.context.any() == has_context_class
        assert (sample.mask[sample.context] == 0).all()
        for cls in seen:
            seen[cls] += bool((sample.mask == cls).any())
    assert min(seen.values()) > 20


def test_water_band_in_pixels(dataset: tuple[Path, float]) -> None:
    """In the written JPEGs, the bottom rows are water (blue background) exactly in boat images."""
    root, _ = dataset
    boat, other = [], []
    for image_id in _ids(root, "train"):
        image, mask, _ = _load(root, image_id)
        bottom, background = image[-6:].astype(int), mask[-6:] == 0
        if background.any():
            blue = ((bottom[..., 2] - bottom[..., 0]) > 60)[background].mean()
            (boat if (mask == BOAT).any() else other).append(blue)
    assert np.mean(boat) > 0.9 and min(boat) > 0.7
    assert np.mean(other) < 0.03


def test_saliency_error_rates(dataset: tuple[Path, float]) -> None:
    root, _ = dataset
    meta = json.loads((root / "synthetic.json").read_text())
    train = meta["splits"]["train"]
    # binomial(200, p): 0.1 -> 20 +- 4.2, 0.2 -> 40 +- 5.7; missing part is skipped when nothing is left
    assert 6 <= train["missing_class"] <= 36
    assert 18 <= train["missing_part"] <= 60
    assert 18 <= train["false_coverage"] <= 60
    assert 0 < train["false_coverage_context"] < train["false_coverage"]
    train_errors = {k: v for k, v in meta["errors"].items() if k.startswith("train_")}
    assert sum("missing_class" in e for e in train_errors.values()) == train["missing_class"]


def test_saliency_errors_in_pixels(dataset: tuple[Path, float]) -> None:
    root, _ = dataset
    errors = json.loads((root / "synthetic.json").read_text())["errors"]
    clean_spill, false_spill, cut = [], [], []
    for image_id in _ids(root, "train"):
        _, mask, saliency = _load(root, image_id)
        error = errors.get(image_id, {})
        if "missing_class" in error:  # no saliency over the missing class
            assert saliency[mask == SYNTHETIC_CLASSES.index(error["missing_class"])].mean() < 0.1 * 255
        if "missing_part" in error:
            part = mask == SYNTHETIC_CLASSES.index(error["missing_part"]["class"])
            cut.append((saliency[part] < 128).mean())  # 30-60% of one object of that class
        if not error:  # clean: objects salient, background not
            assert saliency[mask > 0].mean() > 0.7 * 255 and (saliency[mask > 0] < 128).mean() < 0.06
            clean_spill.append((saliency[mask == 0] > 128).sum())
        if "false_coverage" in error:
            false_spill.append((saliency[mask == 0] > 128).sum())
    assert min(false_spill) > 40 > max(clean_spill)
    assert min(cut) > 0.06 and np.mean(cut) > 0.25


def test_no_errors_at_zero_rates(tmp_path: Path) -> None:
    root = generate_synthetic(
        tmp_path / "d",
        num_train=30,
        num_val=2,
        missing_class_rate=0.0,
        missing_part_rate=0.0,
        false_coverage_rate=0.0,
        labeled_fraction=0.2,
    )
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["errors"] == {} and (root / "ImageSets/Segmentation/labeled_20pct.txt").is_file()
    for image_id in _ids(root, "train"):
        _, mask, saliency = _load(root, image_id)
        union, salient = mask > 0, saliency > 128
        assert (union & salient).sum() / (union | salient).sum() > 0.8


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path: Path) -> None:
    first = _tree_bytes(generate_synthetic(tmp_path / "a", num_train=25, num_val=5, seed=11))
    second = _tree_bytes(generate_synthetic(tmp_path / "b", num_train=25, num_val=5, seed=11))
    other = _tree_bytes(generate_synthetic(tmp_path / "c", num_train=25, num_val=5, seed=12))
    assert first == second
    assert first["JPEGImages/train_000000.jpg"] != other["JPEGImages/train_000000.jpg"]


def test_refuses_non_empty_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    generate_synthetic(root, num_train=3, num_val=1)  # an empty folder is fine
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_synthetic(root, num_train=3, num_val=1)
    (root / "stray.txt").write_text("x")
    generate_synthetic(root, num_train=4, num_val=1, overwrite=True)
    assert (root / "stray.txt").read_text() == "x" and len(_ids(root, "train")) == 4  # the user's file is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_overwrite_never_replaces_other_data(tmp_path: Path) -> None:
    """Defect 4: --overwrite replaces only a folder that holds our synthetic.json."""
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"irreplaceable")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a synthetic dataset") as error:
            generate_synthetic(precious, num_train=3, num_val=1, overwrite=overwrite)
        assert "--overwrite" not in str(error.value)
    assert [p.name for p in precious.iterdir()] == ["holiday.jpg"]
    assert (precious / "holiday.jpg").read_bytes() == b"irreplaceable"


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_write(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "write_jpeg", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "root", num_train=20, num_val=2)
    assert list(tmp_path.iterdir()) == []


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing_class_rate"):
        generate_synthetic(tmp_path / "x", missing_class_rate=1.5)
    with pytest.raises(ValueError, match="image_size"):
        generate_synthetic(tmp_path / "x", image_size=16)
    assert not (tmp_path / "x").exists()


def test_the_closed_ends_of_the_dataset_ranges_are_accepted_and_one_step_beyond_refused() -> None:
    """One train and one val image, 1..20 object classes (VOC's count), sides 32..4096 (boundary sweep)."""
    SyntheticConfig(num_train=1, num_val=1, num_classes=1, image_size=32)
    SyntheticConfig(num_classes=20, image_size=4096)
    with pytest.raises(ValueError, match="num_train and num_val must be >= 1, got 0, 1"):
        SyntheticConfig(num_train=0, num_val=1)
    with pytest.raises(ValueError, match="num_classes must be within 1..20, got 0"):
        SyntheticConfig(num_classes=0)
    with pytest.raises(ValueError, match="num_classes must be within 1..20, got 21"):
        SyntheticConfig(num_classes=21)
    with pytest.raises(ValueError, match=r"image_size must be in \[32, 4096\], got 4097"):
        SyntheticConfig(image_size=4097)


def test_saliency_variant_keeps_images_and_masks_and_injects_only_its_error(tmp_path: Path) -> None:
    root = generate_synthetic(
        tmp_path / "data",
        num_train=24,
        num_val=4,
        image_size=32,
        missing_class_rate=0.0,
        missing_part_rate=0.0,
        false_coverage_rate=0.0,
    )
    clean = write_saliency_variant(root, tmp_path / "clean")
    half = write_saliency_variant(root, tmp_path / "half", missing_class_rate=0.5)
    full = write_saliency_variant(root, tmp_path / "full", missing_class_rate=1.0)
    assert clean["splits"]["train"] == {"images": 24, "missing_class": 0, "missing_part": 0, "false_coverage": 0}
    assert 0 < half["splits"]["train"]["missing_class"] < 24 and half["splits"]["train"]["false_coverage"] == 0
    assert full["splits"]["train"]["missing_class"] == 24  # every image has a class to lose
    ids = [f"train_{i:06d}" for i in range(24)] + [f"val_{i:06d}" for i in range(4)]
    changed = 0
    for image_id in ids:
        base = read_png(root / "saliency" / f"{image_id}.png")
        assert np.array_equal(read_png(tmp_path / "clean" / f"{image_id}.png"), base)  # rate 0 = the dataset's
        half_map, full_map = (read_png(tmp_path / v / f"{image_id}.png") for v in ("half", "full"))
        # an image that lost a class at rate 0.5 lost the same one at rate 1 (the draws are nested)
        if not np.array_equal(half_map, base):
            changed += 1
            assert np.array_equal(half_map, full_map)
        assert half_map.sum() <= base.sum() and full_map.sum() <= base.sum()  # a missing class only removes
    assert changed == half["splits"]["train"]["missing_class"] + half["splits"]["val"]["missing_class"]
    assert json.loads((tmp_path / "half" / "saliency.json").read_text())["rates"]["missing_class_rate"] == 0.5


def test_regenerating_a_saliency_variant_keeps_the_users_files_and_refuses_other_folders(tmp_path: Path) -> None:
    root = generate_synthetic(
        tmp_path / "data",
        num_train=3,
        num_val=1,
        image_size=32,
        missing_class_rate=0.0,
        missing_part_rate=0.0,
        false_coverage_rate=0.0,
    )
    write_saliency_variant(root, tmp_path / "variant", missing_class_rate=1.0)
    (tmp_path / "variant" / "my_notes.txt").write_text("mine")
    write_saliency_variant(root, tmp_path / "variant")  # the study reruns with another rate
    assert (tmp_path / "variant" / "my_notes.txt").read_text() == "mine"
    assert np.array_equal(
        read_png(tmp_path / "variant" / "train_000000.png"), read_png(root / "saliency" / "train_000000.png")
    )
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not a saliency variant"):
        write_saliency_variant(root, tmp_path / "photos")
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"not ours"


# ---------------------------------------------------------------- variation pass: options away from their defaults
@pytest.mark.parametrize("name", ["missing_class_rate", "missing_part_rate", "false_coverage_rate", "labeled_fraction"])
def test_every_rate_is_checked_within_the_closed_unit_interval(name: str) -> None:
    SyntheticConfig(**{name: 0.0})
    SyntheticConfig(**{name: 1.0})
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match=rf"^{name} must be within \[0, 1\], got {bad}$"):
            SyntheticConfig(**{name: bad})


def test_one_val_image_is_the_least_and_a_side_of_31_is_refused() -> None:
    with pytest.raises(ValueError, match="num_train and num_val must be >= 1, got 1, 0"):
        SyntheticConfig(num_train=1, num_val=0)
    with pytest.raises(ValueError, match=r"image_size must be in \[32, 4096\], got 31"):
        SyntheticConfig(image_size=31)


def test_each_rate_of_a_saliency_variant_injects_its_own_error_and_no_labelled_split_at_zero(tmp_path: Path) -> None:
    names = ("missing_class", "missing_part", "false_coverage")
    zero = {f"{name}_rate": 0.0 for name in names}
    root = generate_synthetic(tmp_path / "data", num_train=6, num_val=1, image_size=32, labeled_fraction=0.0, **zero)
    assert sorted(p.name for p in (root / "ImageSets" / "Segmentation").iterdir()) == ["train.txt", "val.txt"]
    assert sorted(json.loads((root / "synthetic.json").read_text())["splits"]) == ["train", "val"]
    for name in names:
        record = write_saliency_variant(root, tmp_path / name, **{f"{name}_rate": 1.0})
        assert record["rates"] == {f"{other}_rate": float(other == name) for other in names}
        train = record["splits"]["train"]
        assert train[name] > 0 and [train[other] for other in names if other != name] == [0, 0], (name, train)
