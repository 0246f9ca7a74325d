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


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def _run_folder(tmp_path: Path, **changes: object):  # noqa: ANN202
    """A finished ``epspp run`` folder by hand: photos a (train) and b (val) of 4x6 pixels, class cat; the options."""
    from PIL import Image

    from epspp.chain import RunLayout
    from epspp.run import RunOptions, dataset_root, masks_folder

    out = tmp_path / "out"
    layout, root = RunLayout(out), dataset_root(RunLayout(out))
    _splits(root, train=["a"], val=["b"], all=["a", "b"])
    write_classes(root, ["background", "cat"])
    (root / "cls_labels.json").write_text(json.dumps({"a": ["cat"], "b": ["cat"]}))
    for folder in ("JPEGImages", "saliency"):
        (root / folder).mkdir()
    mask = np.array([[0, 1, 1, 0, 0, 0]] * 4, np.uint8)  # 8 of 24 pixels cat
    for image_id in "ab":
        Image.fromarray(np.full((4, 6, 3), 100, np.uint8)).save(root / "JPEGImages" / f"{image_id}.png")
        Image.fromarray(np.zeros((4, 6), np.uint8)).save(root / "saliency" / f"{image_id}.png")
        for folder in (layout.pseudo_masks, masks_folder(layout)):
            folder.mkdir(parents=True, exist_ok=True)
            write_mask_png(folder / f"{image_id}.png", mask)
    return RunOptions(tmp_path / "photos", tmp_path / "labels.csv", out, **changes)


def test_the_report_text_follows_each_option(tmp_path: Path) -> None:
    from epspp.chain import Stage
    from epspp.run_report import markdown

    options = _run_folder(tmp_path)
    stages = [Stage("dataset", tmp_path / "out" / "dataset", ("prepare",)), Stage("stage 1", tmp_path / "l", ("fit",))]
    records = {"dataset": {"ran": True, "wall_time_s": 75.0}, "stage 1": {"ran": False}}
    text = markdown(options, stages, records, None, "report.png")
    assert (
        f"2 photos of `{tmp_path / 'photos'}` (train 1, val 1), classes cat; preset `photos`, method `eps++`, "
        f"backbones ImageNet-pretrained, the preset's step budgets; saliency maps by `epspp saliency` "
        f"({tmp_path / 'out' / 'saliency'})." in text
    )
    lines = text.splitlines()
    assert f"| dataset | 1 min 15 s | `{tmp_path / 'out' / 'dataset'}` | ran |" in lines
    assert f"| stage 1 | - | `{tmp_path / 'l'}` | done before |" in lines
    assert "- pseudo-masks, share of a labelled photo's pixels: cat 33% (2 photos)" in lines
    assert "## Notes" not in text and "--predict" not in text and "val/mAP" not in text
    other = _run_folder(
        tmp_path / "2", saliency=tmp_path / "maps", pretrained=False, max_steps=5, method="cam", predict=tmp_path / "n"
    )
    text = markdown(other, stages, records, "few photos", "report.png")
    assert (
        "method `cam`, backbones random weights (--no-pretrained), 5 steps per fit (--max-steps); saliency maps of "
        f"`{tmp_path / 'maps'}`." in text
    )
    assert f"- its masks of `{tmp_path / 'n'}` (`overlays/`): `{tmp_path / '2' / 'out' / 'predictions'}`" in text
    assert text.endswith("## Notes\n\n- few photos\n")


def test_the_report_is_redrawn_only_when_a_stage_ran_or_a_file_is_missing(tmp_path: Path) -> None:
    from epspp.run_report import write_run_report

    options = _run_folder(tmp_path)
    report, picture = tmp_path / "out" / "report.md", tmp_path / "out" / "report.png"
    assert write_run_report(options, [], {"x": {"ran": False}}, None)["written"] is True  # none yet
    assert report.is_file() and picture.is_file()
    report.write_text("kept")
    assert write_run_report(options, [], {"x": {"ran": False}}, None)["written"] is False
    assert report.read_text() == "kept"
    picture.unlink()  # one of the two missing: both again
    assert write_run_report(options, [], {"x": {"ran": False}}, None)["written"] is True
    assert report.read_text() != "kept" and picture.is_file()
    report.write_text("kept")
    assert write_run_report(options, [], {"x": {"ran": False}, "y": {"ran": True}}, None)["written"] is True
    assert report.read_text() != "kept"
