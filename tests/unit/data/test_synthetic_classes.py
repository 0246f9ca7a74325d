"""The synthetic generator's class count (``--num-classes``, up to VOC's 20) and its record of written files
(``--overwrite`` replaces only those)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import gt_mask, snapshot, split_ids

from epspp.data.classes import SYNTHETIC_CLASSES
from epspp.data.generated import MANIFEST
from epspp.data.prepare import prepare_main
from epspp.data.synthetic import SyntheticConfig, generate_synthetic, render_sample

# sha256 over image, mask, saliency and context of train 0..23 and val 0..5 at the default parameters,
# computed with the generator as it was before --num-classes existed (commit 096746d)
DEFAULT_DIGEST = "644a3f845c32bccc9278ea4ec346b900829113bf99c13a126d5ffd00fb94641b"


def test_default_dataset_is_the_one_before_num_classes() -> None:
    cfg = SyntheticConfig()
    digest = hashlib.sha256()
    for split, count in ((0, 24), (1, 6)):
        for i in range(count):
            sample = render_sample(cfg, np.random.default_rng([cfg.seed, split, i]))
            for array in (sample.image, sample.mask, sample.saliency, sample.context):
                digest.update(array.tobytes())
    assert digest.hexdigest() == DEFAULT_DIGEST


@pytest.fixture(scope="module")
def twenty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("twenty") / "data"
    assert prepare_main(["synthetic", "--root", str(root), "--num-classes", "20", "--num-train", "150",
                         "--num-val", "4", "--image-size", "40"]) == 0
    return root


def test_twenty_classes_all_present_in_train_with_valid_masks(twenty: Path) -> None:
    names = json.loads((twenty / "classes.json").read_text())["names"]
    assert len(names) == 21 and names[:6] == list(SYNTHETIC_CLASSES) and len(set(names)) == 21
    seen: dict[int, int] = {}
    for image_id in split_ids(twenty, "train"):
        mask = gt_mask(twenty, image_id)
        assert mask.shape == (40, 40) and mask.dtype == np.uint8
        values = set(np.unique(mask).tolist())
        assert values <= set(range(21)) and values - {0}  # every image shows an object, no value beyond 20
        for value in values - {0}:
            seen[value] = seen.get(value, 0) + 1
    assert sorted(seen) == list(range(1, 21))
    meta = json.loads((twenty / "synthetic.json").read_text())
    assert meta["params"]["num_classes"] == 20 and meta["classes"] == names
    assert meta["splits"]["train"]["class_images"] == {names[c]: seen[c] for c in range(1, 21)}


def test_context_classes_keep_their_context_among_twenty() -> None:
    cfg = SyntheticConfig(num_classes=20)
    for i in range(120):
        sample = render_sample(cfg, np.random.default_rng([1, 0, i]))
        for cls in (4, 5):  # a train stands on rails, a boat floats on water, whatever the other classes
            if (sample.mask == cls).any():
                assert sample.context.any()


@pytest.mark.parametrize("bad", [0, 21])
def test_num_classes_out_of_range_is_refused(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="num_classes must be within 1..20"):
        generate_synthetic(tmp_path / "x", num_train=2, num_val=1, num_classes=bad)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- --overwrite keeps what the user added
def test_overwrite_keeps_the_users_files_and_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    args = ["synthetic", "--root", str(root), "--num-train", "6", "--num-val", "2", "--image-size", "32"]
    assert prepare_main(args) == 0
    listed = set((root / MANIFEST).read_text().split())
    assert listed == set(snapshot(root))  # every file written, and only those
    (root / "notes.txt").write_text("my notes")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (root / "JPEGImages" / "mine.jpg").write_bytes(b"my photo")
    assert prepare_main(args[:3] + ["--num-train", "3", "--num-val", "1", "--image-size", "32", "--seed", "1",
                                    "--overwrite"]) == 0
    assert (root / "notes.txt").read_text() == "my notes"
    assert (root / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    assert (root / "JPEGImages" / "mine.jpg").read_bytes() == b"my photo"
    assert split_ids(root, "train") == ["train_000000", "train_000001", "train_000002"]
    assert not (root / "JPEGImages" / "train_000005.jpg").exists()  # the old dataset's own files are gone
    user = {"notes.txt", "checkpoints/last.ckpt", "JPEGImages/mine.jpg"}
    assert set(snapshot(root)) == set((root / MANIFEST).read_text().split()) | user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary folder left


def test_overwrite_refuses_a_user_file_where_the_new_dataset_writes(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "data", num_train=2, num_val=1, image_size=32)
    (root / "JPEGImages" / "train_000003.jpg").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="train_000003.jpg was not written by the generator"):
        generate_synthetic(root, num_train=4, num_val=1, image_size=32, overwrite=True)
    assert (root / "JPEGImages" / "train_000003.jpg").read_bytes() == b"mine"
    assert split_ids(root, "train") == ["train_000000", "train_000001"]


def test_overwrite_needs_the_record_of_written_files(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "data", num_train=2, num_val=1, image_size=32)
    (root / MANIFEST).unlink()  # a dataset of an older epspp
    with pytest.raises(FileExistsError, match="did not record its files"):
        generate_synthetic(root, num_train=2, num_val=1, image_size=32, overwrite=True)
    (root / MANIFEST).write_text("classes.json\n../outside.txt\n")
    (tmp_path / "outside.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="outside"):
        generate_synthetic(root, num_train=2, num_val=1, image_size=32, overwrite=True)
    assert (tmp_path / "outside.txt").read_text() == "keep" and (root / "classes.json").is_file()
