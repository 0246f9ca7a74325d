"""Stage 0's corpus (``epspp prepare pretrain-corpus``): layout, classes, no image of the WSSS dataset,
context not tied to its class, ``--overwrite`` keeping the user's files, help texts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import snapshot, split_ids
from PIL import Image

from epspp.cli.prepare import _parser, prepare_main
from epspp.data.datamodule import EPSDataModule
from epspp.data.generated import MANIFEST
from epspp.data.synthetic import CLASS_NAMES, MAX_CLASSES, generate_synthetic, render_corpus_image
from epspp.errors import DatasetError

NUM_TRAIN, NUM_VAL = 60, 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "pretrain"
    assert (
        prepare_main(
            [
                "pretrain-corpus",
                "--root",
                str(root),
                "--num-images",
                str(NUM_TRAIN),
                "--num-val",
                str(NUM_VAL),
                "--image-size",
                "48",
            ]
        )
        == 0
    )
    return root


def _digests(folder: Path) -> set[str]:
    """sha256 of every decoded image: equal pictures have equal digests whatever their file names."""
    return {
        hashlib.sha256(np.asarray(Image.open(p).convert("RGB")).tobytes()).hexdigest() for p in sorted(folder.iterdir())
    }


def test_layout_labels_and_no_masks(corpus: Path) -> None:
    assert split_ids(corpus, "train") == [f"train_{i:06d}" for i in range(NUM_TRAIN)]
    assert split_ids(corpus, "val") == [f"val_{i:06d}" for i in range(NUM_VAL)]
    ids = split_ids(corpus, "train") + split_ids(corpus, "val")
    assert sorted(p.name for p in (corpus / "JPEGImages").iterdir()) == sorted(f"{i}.jpg" for i in ids)
    assert not (corpus / "SegmentationClassAug").exists() and not (corpus / "saliency").exists()
    names = json.loads((corpus / "classes.json").read_text())["names"]
    assert names[0] == "background" and len(names) - 1 == len(CLASS_NAMES) > MAX_CLASSES
    labels = json.loads((corpus / "cls_labels.json").read_text())
    assert sorted(labels) == sorted(ids) and all(set(v) <= set(names[1:]) for v in labels.values())
    assert all(1 <= len(v) <= 3 for v in labels.values())
    with Image.open(corpus / "JPEGImages" / "val_000000.jpg") as image:
        assert image.size == (48, 48)
    assert set((corpus / MANIFEST).read_text().split()) == set(snapshot(corpus))


def test_the_data_module_serves_it_without_saliency(corpus: Path) -> None:
    data = EPSDataModule(
        str(corpus), with_saliency=False, batch_size=4, num_workers=0, crop_size=48, resize_long=(40, 56), eval_size=48
    )
    data.setup("fit")
    sample = data.datasets["train"][0]
    labels = json.loads((corpus / "cls_labels.json").read_text())
    expected = np.array([name in labels["train_000000"] for name in data.class_names[1:]], np.float32)
    assert "saliency" not in sample and np.array_equal(sample["label"].numpy(), expected)
    assert (data.datasets["val"][0]["mask"] == 255).all()  # no ground truth: ignored everywhere
    with pytest.raises(DatasetError, match="saliency"):  # stage 1 still needs its saliency maps by default
        EPSDataModule(str(corpus), batch_size=4, num_workers=0).setup("fit")
    with pytest.raises(DatasetError, match="prepare pretrain-corpus --root nowhere"):
        EPSDataModule("nowhere", with_saliency=False)


def test_no_image_is_one_of_the_wsss_datasets(corpus: Path, tmp_path: Path) -> None:
    wsss = generate_synthetic(
        tmp_path / "wsss", num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=48, num_classes=MAX_CLASSES
    )  # the same seed (0) and size as the corpus
    corpus_images, wsss_images = _digests(corpus / "JPEGImages"), _digests(wsss / "JPEGImages")
    assert len(corpus_images) == NUM_TRAIN + NUM_VAL and len(wsss_images) == NUM_TRAIN + NUM_VAL
    assert not corpus_images & wsss_images


def test_every_class_and_context_away_from_its_class() -> None:
    seen: set[int] = set()
    boat_without_water = boat_with_water = 0
    for i in range(250):
        image, classes = render_corpus_image(np.random.default_rng([7, i]), 48, len(CLASS_NAMES))
        assert image.shape == (48, 48, 3) and image.dtype == np.uint8 and classes == sorted(set(classes))
        seen.update(classes)
        if 5 in classes:
            blue_bottom = (image[-6:, :, 2].astype(int) - image[-6:, :, 0] > 60).mean() > 0.5  # water: blue band
            boat_with_water += blue_bottom
            boat_without_water += not blue_bottom
    assert seen == set(range(1, len(CLASS_NAMES) + 1))
    assert boat_with_water and boat_without_water  # a boat is not always on water


def test_overwrite_keeps_the_users_files(tmp_path: Path) -> None:
    root = tmp_path / "pretrain"
    args = ["pretrain-corpus", "--root", str(root), "--num-images", "4", "--num-val", "1", "--image-size", "32"]
    assert prepare_main(args) == 0
    assert prepare_main(args) == 2  # an existing corpus is kept unless --overwrite
    (root / "notes.md").write_text("mine")
    (root / "runs").mkdir()
    (root / "runs" / "backbone.pth").write_bytes(b"weights")
    assert prepare_main(args + ["--seed", "3", "--overwrite"]) == 0
    assert (root / "notes.md").read_text() == "mine" and (root / "runs" / "backbone.pth").read_bytes() == b"weights"
    assert json.loads((root / "pretrain_corpus.json").read_text())["params"]["seed"] == 3


def test_every_flag_has_a_help_text() -> None:
    parser = _parser()
    commands = next(a for a in parser._actions if a.dest == "dataset").choices
    for name in ("synthetic", "pretrain-corpus"):
        for action in commands[name]._actions:
            assert action.help and len(action.help) > 10, (name, action.option_strings)


def test_the_closed_ends_of_the_corpus_ranges_are_accepted_and_one_step_beyond_refused() -> None:
    """One image and one val image, 1..28 classes (the 20 WSSS classes and 8 distractor families), sides
    32..4096 (boundary sweep)."""
    from epspp.data.pretrain_corpus import CorpusConfig

    CorpusConfig(num_images=1, num_val=1, num_classes=1, image_size=32)
    CorpusConfig(num_classes=28, image_size=4096)
    with pytest.raises(ValueError, match="num_images and num_val must be >= 1, got 0, 1"):
        CorpusConfig(num_images=0, num_val=1)
    with pytest.raises(ValueError, match="num_classes must be within 1..28, got 0"):
        CorpusConfig(num_classes=0)
    with pytest.raises(ValueError, match="num_classes must be within 1..28, got 29"):
        CorpusConfig(num_classes=29)
    with pytest.raises(ValueError, match=r"image_size must be in \[32, 4096\], got 4097"):
        CorpusConfig(image_size=4097)


def test_the_seed_draws_the_images_and_num_classes_limits_the_classes(tmp_path: Path) -> None:
    from epspp.data.pretrain_corpus import CorpusConfig, generate_pretrain_corpus

    roots = {
        seed: generate_pretrain_corpus(
            tmp_path / f"s{seed}", num_images=3, num_val=1, num_classes=2, image_size=32, seed=seed
        )
        for seed in (0, 1)
    }
    assert _digests(roots[0] / "JPEGImages").isdisjoint(_digests(roots[1] / "JPEGImages"))
    for root in roots.values():
        assert json.loads((root / "classes.json").read_text())["names"] == ["background", "disc", "square"]
        labels = json.loads((root / "cls_labels.json").read_text())
        assert len(labels) == 4 and all(names and set(names) <= {"disc", "square"} for names in labels.values())
    with pytest.raises(ValueError, match="num_images and num_val must be >= 1, got 1, 0"):
        CorpusConfig(num_images=1, num_val=0)
    with pytest.raises(ValueError, match=r"image_size must be in \[32, 4096\], got 31"):
        CorpusConfig(image_size=31)
