"""The numbers of ``epspp run``'s report.md against hand-made run folders: the val split's note, stage 1's last
val/mAP, the pseudo-masks' class shares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from epspp.data.classes import write_classes
from epspp.data.io import write_mask_png
from epspp.run_report import class_shares, stage1_map, val_note


def _splits(root: Path, **splits: list[str]) -> None:
    folder = root / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True)
    for name, ids in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


def test_the_val_note_says_how_few_photos_val_holds(tmp_path: Path) -> None:
    _splits(tmp_path, val=["a", "b"], all=[f"p{i}" for i in range(10)])
    assert val_note(tmp_path, 3) == (
        "the val split holds 2 of 10 photos: stage 1's val/mAP on so few is a rough signal, not a score (more "
        "photos give a better one)"
    )
    assert val_note(tmp_path, 2) is None  # exactly `small`: enough
    assert val_note(tmp_path / "none", 3) is None  # no prepared dataset: no note


def test_stage_1s_map_is_the_last_logged_value(tmp_path: Path) -> None:
    assert stage1_map(tmp_path) is None  # no CSV log
    for version, rows in (("version_0", ["0.5", "", "0.625"]), ("version_1", ["0.75", ""])):
        folder = tmp_path / "csv" / version
        folder.mkdir(parents=True)
        text = "step,val/mAP,train/loss\n" + "".join(f"{n},{value},1.0\n" for n, value in enumerate(rows))
        (folder / "metrics.csv").write_text(text)
    assert stage1_map(tmp_path) == 0.75  # the resumed fit's (version_1) last value; empty cells skipped
    (tmp_path / "csv" / "version_1" / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    assert stage1_map(tmp_path) == 0.625


def test_class_shares_of_the_pseudo_masks_by_hand(tmp_path: Path) -> None:
    """a (cat): 2 of 6 pixels cat; b (cat, dog): 1 cat, 3 dog; c (dog) has no mask: left out.
    cat: 2 photos, (2/6 + 1/6) / 2 = 0.25; dog: 1 photo, 3/6 = 0.5; bird: no photo, 0."""
    root, masks = tmp_path / "data", tmp_path / "masks"
    root.mkdir()
    masks.mkdir()
    write_classes(root, ["background", "cat", "dog", "bird"])
    (root / "cls_labels.json").write_text(json.dumps({"c": ["dog"], "a": ["cat"], "b": ["cat", "dog"]}))
    write_mask_png(masks / "a.png", np.array([[1, 1, 0], [0, 0, 0]], np.uint8))  # 2x3: non-square
    write_mask_png(masks / "b.png", np.array([[1, 2, 2], [2, 0, 0]], np.uint8))
    assert class_shares(root, masks) == [("cat", 2, 0.25), ("dog", 1, 0.5), ("bird", 0, 0.0)]


def test_stage_1s_map_comes_from_the_tenth_version_after_the_ninth(tmp_path: Path) -> None:
    """Resumed ten times: version_10 is the newest log, though it sorts before version_9 as a string."""
    for version, value in ((9, "0.5"), (10, "0.875")):
        folder = tmp_path / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(f"step,val/mAP\n0,{value}\n")
    assert stage1_map(tmp_path) == 0.875
