"""`epspp saliency` as a user runs it, on real photos, offline (a tiny ONNX model of U²-Net's signature), and its
maps handed to `epspp prepare folder` and `epspp check` (ids and sizes as they expect)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.cli import in_process, run_epspp
from PIL import Image

if importlib.util.find_spec("rembg") is None:  # not imported here: epspp.saliency imports it without numba's
    pytest.skip("needs the saliency extra (rembg)", allow_module_level=True)  # compile of pymatting
pytest.importorskip("onnx")
pytest.importorskip("skimage")

from fixtures.saliency_model import expected_u2net_map, write_photos, write_u2net_like_onnx  # noqa: E402


def test_saliency_maps_of_photos_feed_prepare_folder(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    photos = write_photos(tmp_path / "photos")
    model = write_u2net_like_onnx(tmp_path / "u2net.onnx")
    args = ["saliency", "--images", tmp_path / "photos", "--out", tmp_path / "saliency", "--model-path", model]
    first = run_epspp(args, cwd=tmp_path)
    assert first.stdout.splitlines()[-1].startswith(
        f"[epspp saliency] 3 saliency maps in {tmp_path / 'saliency'} (3 written, 0 already there)"
    )
    for image_id, path in photos.items():
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "saliency" / f"{image_id}.png")), expected_u2net_map(path)
        )
    again = in_process(capfd, *args, check=True)
    assert "(0 written, 3 already there)" in again.stdout
    labels = tmp_path / "labels.csv"
    labels.write_text("id,classes\ncat.jpg,cat\ncoffee cup,cup\ncameraman,person\n")
    root = tmp_path / "data"
    in_process(
        capfd,
        "prepare",
        "folder",
        "--images",
        tmp_path / "photos",
        "--labels",
        labels,
        "--saliency",
        tmp_path / "saliency",
        "--out",
        root,
        "--val-fraction",
        "0.34",
        check=True,
    )
    assert sorted(p.name for p in (root / "saliency").iterdir()) == ["cameraman.png", "cat.png", "coffee cup.png"]
    in_process(capfd, "check", "--data.root", root, check=True)
    assert json.loads((tmp_path / "saliency" / "saliency.json").read_text())["count"] == 3
