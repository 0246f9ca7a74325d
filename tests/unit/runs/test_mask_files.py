"""Which files of a mask folder are masks: overview.png (render's, the writer's) and overlays/ never are, for every
reader of a mask folder (the listing itself, epspp evaluate, epspp check)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import split_ids

from epspp.cli.check import check_main
from epspp.cli.evaluate import evaluate_main
from epspp.data.check import check_sample
from epspp.data.io import write_mask_png
from epspp.render import render
from epspp.runs.mask_files import is_overview, mask_files


@pytest.fixture
def pictured(synthetic_root: Path, tmp_path: Path) -> Path:
    """The ground truth of split train as a prediction folder, with render's overview.png and an overlays/ folder
    beside the masks (as ``--pseudo_masks.save_overlays true`` leaves them)."""
    pred = Path(shutil.copytree(synthetic_root / "SegmentationClassAug", tmp_path / "pred"))
    render(pred, synthetic_root, num=2, panel=32)
    (pred / "overlays").mkdir()
    for image_id in split_ids(synthetic_root, "train")[:3]:
        shutil.copy(synthetic_root / "JPEGImages" / f"{image_id}.jpg", pred / "overlays" / f"{image_id}.png")
    return pred


def test_mask_files_lists_masks_only(synthetic_root: Path, pictured: Path) -> None:
    ids = sorted(p.stem for p in (synthetic_root / "SegmentationClassAug").glob("*.png"))
    (pictured / ".x.123.tmp.png").write_bytes(b"half")
    assert is_overview(pictured / "overview.png")
    assert list(mask_files(pictured)) == ids  # not overview.png, the overlays or a temporary file
    # the mask of an image named "overview" is a mask (the writer's palette PNG carries no overview tag)
    (pictured / "overview.png").unlink()
    write_mask_png(pictured / "overview.png", np.zeros((2, 2), np.uint8))
    assert not is_overview(pictured / "overview.png") and "overview" in mask_files(pictured)
    assert mask_files(pictured / "missing") == {}


def test_evaluate_ignores_overview_and_overlays(
    synthetic_root: Path, pictured: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--root", str(synthetic_root), "--split", "train"]
    assert evaluate_main(["--pred-dir", str(pictured), *args]) == 0
    # the ground truth against itself: every class present scores 100, over the split's 20 masks
    out = capsys.readouterr().out
    assert "(20 masks, 0 ids without ground truth skipped)" in out and "pixel accuracy 100.00%" in out


def test_evaluate_refuses_an_overview_as_the_mask_of_an_image_named_overview(
    synthetic_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    split = synthetic_copy / "ImageSets" / "Segmentation" / "one.txt"
    split.write_text("overview\n")
    write_mask_png(synthetic_copy / "SegmentationClassAug" / "overview.png", np.zeros((48, 48), np.uint8))
    shutil.copy(synthetic_copy / "JPEGImages" / "train_000000.jpg", synthetic_copy / "JPEGImages" / "overview.jpg")
    pred = tmp_path / "pred"
    pred.mkdir()
    write_mask_png(pred / "x.png", np.zeros((48, 48), np.uint8))
    shutil.copy(synthetic_copy / "JPEGImages" / "train_000000.jpg", synthetic_copy / "JPEGImages" / "x.jpg")
    render(pred, synthetic_copy, panel=32)  # pred/overview.png is render's picture, not the mask of "overview"
    assert evaluate_main(["--pred-dir", str(pred), "--root", str(synthetic_copy), "--split", "one"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{pred / 'overview.png'} is the overview picture drawn by `epspp render`" in err


def test_check_of_a_mask_folder_ignores_overview_and_overlays(
    synthetic_root: Path, pictured: Path, capsys: pytest.CaptureFixture
) -> None:
    assert check_main(["--data.root", str(synthetic_root), "--data.mask_dir", str(pictured), "--splits", "train"]) == 0
    assert "split 'train': 20 of 20 samples good; 0 without a saliency map, 0 without a mask" in capsys.readouterr().out
    reason = check_sample(
        (str(synthetic_root / "JPEGImages" / "train_000000.jpg"), None, str(pictured / "overview.png"), 6)
    )
    assert reason is not None and "is the overview picture drawn by `epspp render`" in reason
