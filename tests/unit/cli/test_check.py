"""``epspp check``'s options and notes on a hand-made 3-id split (4x7 images): ``--data.saliency_dir`` read instead
of ``ROOT/saliency``, an id without an image, saliency maps all 0 and all 1 noted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epspp.cli.check import check_main


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps({"names": ["background", "a", "b"]}))
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\nc\n")
    mask = np.zeros((4, 7), np.uint8)
    mask[1:3, 2:5] = 1
    for image_id in "abc":
        Image.fromarray(mask).save(root / "SegmentationClassAug" / f"{image_id}.png")
    for image_id in "ab":  # c has a mask, no image
        Image.fromarray(np.full((4, 7, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{image_id}.png")
    mine = tmp_path / "mine"
    mine.mkdir()
    Image.fromarray(np.full((4, 7), 255, np.uint8)).save(mine / "a.png")  # every pixel salient
    Image.fromarray(np.zeros((4, 7), np.uint8)).save(mine / "b.png")  # none
    return root


def test_a_saliency_folder_of_its_own_and_what_check_notes(root: Path, capsys: pytest.CaptureFixture) -> None:
    mine = root.parent / "mine"
    assert check_main(["--data.root", str(root), "--data.saliency_dir", str(mine), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert f"split 'train': 1 ids without an image in {root / 'JPEGImages'}, e.g. ['c']" in lines
    assert "split 'train': 2 of 3 samples good; 0 without a saliency map, 0 without a mask" in lines
    assert any(
        line.startswith(f"  note: 1 of 2 saliency maps are all 0 (no salient pixel), e.g. {mine / 'b.png'}:")
        for line in lines
    )
    assert any(
        line.startswith(f"  note: 1 of 2 saliency maps are all 1 (every pixel salient), e.g. {mine / 'a.png'}:")
        for line in lines
    )
    assert captured.err.endswith("1 split(s) have bad or missing files or labels (listed above): ['train']\n")
    assert check_main(["--data.root", str(root), "--workers", "1"]) == 2  # ROOT/saliency: there is none
    out = capsys.readouterr().out
    assert "split 'train': 2 of 3 samples good; 2 without a saliency map, 0 without a mask" in out
    assert "note:" not in out
