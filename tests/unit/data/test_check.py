"""Pre-flight: a bad file anywhere in a stage's splits fails the stage at set-up, in one line; `epspp check`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import split_ids, write_png

from epspp.cli.check import check_main
from epspp.data.cache import dataset_cache
from epspp.data.check import CACHE, _digest, check_samples, preflight
from epspp.data.datamodule import EPSDataModule
from epspp.data.dataset import VOCLayoutDataset
from epspp.errors import DatasetError


def _module(root: Path, **kwargs) -> EPSDataModule:
    options = {"num_workers": 0, "batch_size": 4, "crop_size": 32, "resize_long": (40, 56), "eval_size": 64}
    return EPSDataModule(root=str(root), **{**options, **kwargs})


def _break_mask(root: Path, image_id: str) -> Path:
    path = root / "SegmentationClassAug" / f"{image_id}.png"
    write_png(path, np.full((48, 48), 77, np.uint8))
    return path


def test_a_bad_val_mask_fails_fit_at_setup(synthetic_copy: Path) -> None:
    """Before: the val mask was read only at the first validation, after a whole training epoch."""
    path = synthetic_copy / "SegmentationClassAug" / f"{split_ids(synthetic_copy, 'val')[4]}.png"
    write_png(path, np.ones((40, 48), np.uint8))  # valid labels, wrong size: found by the pre-flight only
    with pytest.raises(DatasetError, match=r"split 'val' .*1 of 6 samples are bad, first: .* is 48x40 \(WxH\)") as e:
        _module(synthetic_copy).setup("fit")
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_truncated_image_and_mis_sized_saliency_are_found(synthetic_copy: Path) -> None:
    train = split_ids(synthetic_copy, "train")
    image = synthetic_copy / "JPEGImages" / f"{train[2]}.jpg"
    image.write_bytes(image.read_bytes()[:200])
    write_png(synthetic_copy / "saliency" / f"{train[5]}.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(DatasetError, match=r"2 of 20 samples are bad.*and 1 more: `epspp check --data.root"):
        _module(synthetic_copy).setup("fit")


def test_good_samples_are_cached_by_size_and_mtime(synthetic_copy: Path) -> None:
    dataset = VOCLayoutDataset(synthetic_copy, "train", 5)
    assert preflight(synthetic_copy, dataset.files(), "train") == 20
    assert (dataset_cache(synthetic_copy) / CACHE).is_file() and not (synthetic_copy / ".cache").exists()
    assert preflight(synthetic_copy, dataset.files(), "train") == 0  # nothing read again
    path = _break_mask(synthetic_copy, dataset.ids[7])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match="values \\[77\\]"):
        preflight(synthetic_copy, dataset.files(), "train")


def test_preflight_can_be_switched_off(synthetic_copy: Path) -> None:
    path = synthetic_copy / "SegmentationClassAug" / f"{split_ids(synthetic_copy, 'val')[0]}.png"
    write_png(path, np.ones((40, 48), np.uint8))  # mis-sized: found when the sample is read, not at set-up
    module = _module(synthetic_copy, preflight=False)
    module.setup("fit")
    assert len(module.datasets["val"]) == 6


def test_the_pool_gives_the_same_verdicts(synthetic_copy: Path) -> None:
    files = VOCLayoutDataset(synthetic_copy, "train", 5).files()
    _break_mask(synthetic_copy, split_ids(synthetic_copy, "train")[3])
    many = files * 4  # 80 samples: from 64 on, a pool of threads
    pooled = check_samples(many, 2, "test")
    assert pooled == check_samples(many, 1, "test")
    assert sum(r is not None for r in pooled) == 4


def test_check_command(synthetic_copy: Path, capsys: pytest.CaptureFixture) -> None:
    assert check_main(["--data.root", str(synthetic_copy), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "split 'train': 20 of 20 samples good" in out and "split 'val': 6 of 6 samples good" in out
    bad = _break_mask(synthetic_copy, split_ids(synthetic_copy, "val")[1])
    (synthetic_copy / "saliency" / f"{split_ids(synthetic_copy, 'val')[2]}.png").unlink()
    assert check_main(["--data.root", str(synthetic_copy), "--splits", "val", "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert "5 of 6 samples good; 1 without a saliency map, 0 without a mask" in captured.out
    assert str(bad) in captured.out and "1 split(s) have bad" in captured.err
    # the labels are checked too: derived from the masks here, one of which is gone
    (synthetic_copy / "SegmentationClassAug" / f"{split_ids(synthetic_copy, 'train')[0]}.png").unlink()
    assert check_main(["--data.root", str(synthetic_copy), "--splits", "train", "--workers", "1"]) == 2
    assert "labels: image-level labels are derived from the masks" in capsys.readouterr().out


def test_check_notes_images_with_an_exif_orientation(synthetic_copy: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    image_id = split_ids(synthetic_copy, "val")[0]
    path = next((synthetic_copy / "JPEGImages").glob(f"{image_id}.*"))
    with Image.open(path) as image:
        exif = image.getexif()
        exif[0x0112] = 6  # "rotate 90 degrees to display"
        image.save(path, exif=exif)
    assert check_main(["--data.root", str(synthetic_copy), "--splits", "val"]) == 0  # a note, not an error
    out = capsys.readouterr().out
    assert f"1 images carry an EXIF orientation tag, e.g. {path} (6)" in out and "exif_transpose" in out
    from PIL import ImageOps

    from epspp.data.io import read_image

    with Image.open(path) as image:
        as_stored, as_shown = np.asarray(image.convert("RGB")), np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(read_image(path), as_stored) and not np.array_equal(as_stored, as_shown)


def test_check_writes_nothing_into_a_read_only_dataset(synthetic_copy: Path) -> None:
    """The caches go to the user's cache folder (``$XDG_CACHE_HOME/epspp``): no write into the dataset is attempted
    (tests run as root, where chmod -w stops nothing: the tree's files and mtimes are compared instead), and an older
    epspp's ``ROOT/.cache`` is neither trusted nor touched."""
    dataset = VOCLayoutDataset(synthetic_copy, "val", 5)
    broken = _break_mask(synthetic_copy, dataset.ids[1])
    old = synthetic_copy / ".cache" / "preflight.json"  # an older epspp's cache that calls every sample good
    old.parent.mkdir()
    old.write_text(json.dumps({"version": 1, "good": [_digest(sample) for sample in dataset.files()]}))
    before = {path: path.stat().st_mtime_ns for path in synthetic_copy.rglob("*")}
    for path in before:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        assert check_main(["--data.root", str(synthetic_copy), "--splits", "val", "--workers", "1"]) == 2
        with pytest.raises(DatasetError, match="1 of 6 samples are bad"):  # the stages' pre-flight
            preflight(synthetic_copy, dataset.files(), "val", workers=1)
    finally:
        for path in before:
            path.chmod(path.stat().st_mode | 0o200)
    assert {path: path.stat().st_mtime_ns for path in synthetic_copy.rglob("*")} == before, broken
    assert (dataset_cache(synthetic_copy) / CACHE).is_file()


def test_a_sample_found_good_for_more_classes_is_read_again_for_fewer(tmp_path: Path) -> None:
    """The cache key holds the class count: a 4x7 mask with class 2, good for 3 classes (cached), is read again
    and refused for 2."""
    root = tmp_path / "root"
    for folder in ("JPEGImages", "SegmentationClassAug"):
        (root / folder).mkdir(parents=True)
    image, mask = root / "JPEGImages" / "a.png", root / "SegmentationClassAug" / "a.png"
    write_png(image, np.zeros((4, 7, 3), np.uint8), "RGB")
    write_png(mask, np.array([[0, 2, 0, 2, 0, 2, 0]] * 4))
    three, two = (str(image), None, str(mask), 3), (str(image), None, str(mask), 2)
    assert _digest(three) != _digest(two)
    assert preflight(root, [three], "split 'x'", workers=1) == 1
    assert preflight(root, [three], "split 'x'", workers=1) == 0  # found good before: not read
    with pytest.raises(DatasetError, match=r"split 'x': 1 of 1 samples are bad, first: mask .*a\.png has values \[2\]"):
        preflight(root, [two], "split 'x'", workers=1)
