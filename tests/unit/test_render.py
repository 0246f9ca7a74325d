"""`epspp render`: the grid of image | saliency | overlay with titles and a legend; its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import split_ids
from PIL import Image

from epspp.data.classes import voc_palette
from epspp.render import render, render_main
from epspp.visualize import fit_panel


def _masks(root: Path, dest: Path, count: int) -> list[str]:
    dest.mkdir()
    ids = split_ids(root, "train")[:count]
    for image_id in ids:
        shutil.copy(root / "SegmentationClassAug" / f"{image_id}.png", dest / f"{image_id}.png")
    return ids


def test_overview_rows_columns_and_legend(synthetic_root: Path, tmp_path: Path) -> None:
    ids = _masks(synthetic_root, tmp_path / "pred", 5)
    path = render(tmp_path / "pred", synthetic_root, num=3, cell=64)
    assert path == tmp_path / "pred" / "overview.png"
    picture = np.array(Image.open(path).convert("RGB"))
    assert picture.shape[1] == 3 * 64 + 2 * 2 and picture.shape[0] > 3 * 64 + 2 * 2
    # below the title band, the first row is the first chosen id's image, saliency heat map and overlay
    image = np.array(Image.open(synthetic_root / "JPEGImages" / f"{ids[0]}.jpg").convert("RGB"))
    np.testing.assert_array_equal(picture[18:18 + 64, :64], fit_panel(image, 64))
    assert not np.array_equal(picture[18:18 + 64, 66:130], picture[18:18 + 64, :64])
    # the legend shows the colours of the classes in the masks
    legend = picture[18 + 3 * 64 + 4:]
    present = {int(v) for i in (ids[0], ids[2], ids[4]) for v in np.unique(np.array(
        Image.open(tmp_path / "pred" / f"{i}.png")))}
    for c in present - {255}:
        colour = voc_palette()[c]
        assert (legend == colour).all(axis=-1).sum() >= 50, f"class {c} missing from the legend"


def test_render_errors(synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert render_main(["--pred-dir", str(tmp_path / "empty"), "--root", str(synthetic_root)]) == 2
    assert "no <id>.png mask in" in capsys.readouterr().err
    _masks(synthetic_root, tmp_path / "pred", 2)
    (tmp_path / "pred" / "stranger.png").write_bytes((tmp_path / "pred" / "train_000000.png").read_bytes())
    assert render_main(["--pred-dir", str(tmp_path / "pred"), "--root", str(synthetic_root)]) == 2
    assert "stranger.png has no image" in capsys.readouterr().err
    (tmp_path / "pred" / "stranger.png").unlink()
    assert render_main(["--pred-dir", str(tmp_path / "pred"), "--root", str(synthetic_root),
                        "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert render_main(["--pred-dir", str(tmp_path / "pred"), "--root", str(synthetic_root),
                        "--out", str(tmp_path / "figs" / "o.png")]) == 0
    assert (tmp_path / "figs" / "o.png").is_file()
