"""The real-photo set of the own-data tests and of scripts/photo_demo_data.py (issue 32 item 9)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import border_contrast_saliency, read_png, write_photo_set
from PIL import Image

pytest.importorskip("skimage")
REPO = Path(__file__).resolve().parents[3]


def test_border_contrast_saliency_of_a_square_on_a_plain_ground() -> None:
    image = np.full((60, 80, 3), 40, np.uint8)
    image[20:40, 30:50] = (220, 40, 40)
    saliency = border_contrast_saliency(image)
    assert saliency.shape == (60, 80) and saliency.dtype == np.uint8
    assert saliency[30, 40] == 255 and saliency[0, 0] == 0 and saliency[:5].max() == 0  # border: the ground's colour


def test_twenty_photos_with_labels_composites_and_new_photos(tmp_path: Path) -> None:
    paths = write_photo_set(tmp_path / "set", count=20, long_side=32, num_new=4)
    with open(paths["labels"], newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "classes"] and len(rows) == 21
    labels = dict(rows[1:])
    # 6 photos x 3 variants = 18, then the 2 composites with both labels (sorted)
    assert labels["cat"] == "cat" and labels["cameraman crop"] == "person" and labels["motorcycle flip"] == "motorcycle"
    assert labels["cat+cup"] == "cat;cup" and labels["cameraman+motorcycle"] == "motorcycle;person"
    photos = sorted(paths["images"].iterdir())
    assert len(photos) == 20 and {p.suffix for p in photos} == {".jpg", ".png"}  # the grey cameraman as PNG
    for photo in photos:
        with Image.open(photo) as image:
            size = image.size
        assert max(size) == (64 if "+" in photo.stem else 32)  # composites: two photos side by side
        assert read_png(paths["saliency"] / f"{photo.stem}.png").shape == (size[1], size[0])
    assert sorted(p.stem for p in paths["new_photos"].iterdir()) == [
        "new cameraman",
        "new cat",
        "new cup",
        "new rocket",
    ]


def test_script_refuses_a_folder_with_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("photo_demo_data", REPO / "scripts" / "photo_demo_data.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "a.txt").write_text("mine")
    assert script.main(["--out", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err == (
        f"photo_demo_data: error: --out {tmp_path / 'taken'} exists and is not an empty folder: choose a new one\n"
    )
    assert script.main(["--out", str(tmp_path / "new"), "--count", "3", "--long-side", "24"]) == 0
    assert len(list((tmp_path / "new" / "photos").iterdir())) == 3
