"""Context confusion (``epspp.scoring.context_confusion``) by hand, and the study's two readings of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from epspp.data.classes import write_classes
from epspp.data.io import DatasetError, write_mask_png
from epspp.scoring import context_confusion
from epspp.study.runner import train_context_confusion

# two non-square images; context owners: class a (1) and b (2); class c (3) owns no context
OWNERS = {
    "img0": np.array([[0, 1, 1, 0, 2], [0, 1, 1, 0, 2], [0, 0, 0, 0, 0]], np.uint8),  # 3x5
    "img1": np.array([[2, 2, 2, 0], [0, 0, 0, 0]], np.uint8),  # 2x4
}
PREDICTED = {
    # a: (0,1) and (1,1) of 4 are a; (1,2) is b, not its owner. b: (0,4) of 2. Off-context labels do not count.
    "img0": np.array([[0, 1, 0, 0, 2], [3, 1, 2, 0, 0], [1, 1, 1, 1, 1]], np.uint8),
    "img1": np.array([[2, 0, 2, 2], [2, 2, 2, 2]], np.uint8),  # b: 2 of 3
}


def _root(tmp_path: Path, owners: dict[str, np.ndarray]) -> Path:
    root = tmp_path / "data"
    (root / "SegmentationContext").mkdir(parents=True)
    write_classes(root, ["background", "a", "b", "c"])
    for image_id, owner in owners.items():
        write_mask_png(root / "SegmentationContext" / f"{image_id}.png", owner)
    return root


def _labels(*classes: int) -> np.ndarray:
    """Multi-hot labels of the 3 object classes a, b, c."""
    labels = np.zeros(3, np.float32)
    labels[[c - 1 for c in classes]] = 1
    return labels


EVERY = {"img0": _labels(1, 2), "img1": _labels(2)}


def test_pooled_and_per_class_shares_by_hand(tmp_path: Path) -> None:
    root = _root(tmp_path, OWNERS)
    result = context_confusion(PREDICTED.__getitem__, root, ["img0", "img1"], EVERY.__getitem__)
    assert result["context_pixels"] == 4 + 2 + 3
    assert result["context_confusion"] == pytest.approx((2 + 1 + 2) / 9)  # pooled, not the mean of images
    assert result["per_class"] == pytest.approx({"a": 2 / 4, "b": 3 / 5})
    only_first = context_confusion(PREDICTED.__getitem__, root, ["img0"], EVERY.__getitem__)
    assert only_first["per_class"] == pytest.approx({"a": 0.5, "b": 0.5})


def test_only_the_context_of_a_labelled_class_counts(tmp_path: Path) -> None:
    """img0 labelled with a only: its b context (2 pixels, 1 taken for b) is a context without its object and is
    left out; c labels nothing with context."""
    root = _root(tmp_path, OWNERS)
    labels = {"img0": _labels(1, 3), "img1": _labels(2)}
    result = context_confusion(PREDICTED.__getitem__, root, ["img0", "img1"], labels.__getitem__)
    assert result["context_pixels"] == 4 + 3
    assert result["context_confusion"] == pytest.approx((2 + 2) / 7)
    assert result["per_class"] == pytest.approx({"a": 2 / 4, "b": 2 / 3})
    unlabelled = context_confusion(PREDICTED.__getitem__, root, ["img1"], lambda _: _labels(1))
    assert unlabelled == {"context_confusion": None, "per_class": {}, "context_pixels": 0}


def test_no_context_pixel_gives_none_and_a_wrong_size_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path, {"blank": np.zeros((2, 3), np.uint8)})
    result = context_confusion(lambda _: np.ones((2, 3), np.uint8), root, ["blank"], lambda _: _labels(1, 2, 3))
    assert result == {"context_confusion": None, "per_class": {}, "context_pixels": 0}
    with pytest.raises(DatasetError, match="blank is 2x3 .* is 3x2"):
        context_confusion(lambda _: np.ones((3, 2), np.uint8), root, ["blank"], lambda _: _labels(1))


def test_the_study_scores_configured_masks_and_val_chosen_masks_from_the_score_maps(tmp_path: Path) -> None:
    root = _root(tmp_path, {"img0": np.array([[0, 1, 1], [0, 1, 0]], np.uint8)})  # 2x3, context of a
    (root / "SegmentationClassAug").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("img0\n")
    write_mask_png(root / "SegmentationClassAug" / "img0.png", np.array([[1, 0, 0], [1, 0, 0]], np.uint8))
    pred = tmp_path / "masks"
    (pred / "scores").mkdir(parents=True)
    write_mask_png(pred / "img0.png", np.array([[1, 1, 1], [1, 1, 0]], np.uint8))  # every context pixel as a
    scores = np.array([np.full((2, 3), 0.2), [[0.9, 0.5, 0.75], [0.8, 0.125, 0.25]]], np.float16)
    np.save(pred / "scores" / "img0.npy", scores)
    names = ["background", "a", "b", "c"]
    # at 0.5 the context pixels (0,1) = 0.5 (a tie: background), (0,2) = 0.75 (a), (1,1) = 0.125 (background);
    # the values are exact in float16
    result = train_context_confusion(root, pred, 0.5, names)
    assert result == pytest.approx({"context_confusion": 1.0, "context_confusion_val_chosen": 1 / 3})
    assert train_context_confusion(root, pred, 0.05, names)["context_confusion_val_chosen"] == pytest.approx(1.0)
    (root / "SegmentationContext" / "img0.png").unlink()
    (root / "SegmentationContext").rmdir()  # a dataset of an older epspp
    assert train_context_confusion(root, pred, 0.5, names) == {
        "context_confusion": None,
        "context_confusion_val_chosen": None,
    }


def test_the_last_class_may_own_context_and_one_past_it_is_refused(tmp_path: Path) -> None:
    """Classes background, a, b, c: c (id 3) is the last that a context map may name; id 4 is refused in one line
    (labels of a dataset with a fourth class; boundary sweep)."""
    root = _root(tmp_path, {"img0": np.array([[3, 3, 0], [0, 0, 0]], np.uint8)})
    labels = np.ones(4, np.float32)
    result = context_confusion(lambda _: np.full((2, 3), 3, np.uint8), root, ["img0"], lambda _: labels)
    assert result == {"context_confusion": 1.0, "per_class": {"c": 1.0}, "context_pixels": 2}
    write_mask_png(root / "SegmentationContext" / "img0.png", np.array([[4, 3, 0], [0, 0, 0]], np.uint8))
    with pytest.raises(DatasetError, match="name class 4, but it has 4 classes"):
        context_confusion(lambda _: np.full((2, 3), 3, np.uint8), root, ["img0"], lambda _: labels)
