"""`epspp render`: the grid of image | saliency | overlay (a dataset, --root) or image | overlay (a folder of
photos, --images), rows captioned with their ids in order, titles and a legend; its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import split_ids
from PIL import Image

from epspp.cli.render import render_main
from epspp.data.classes import voc_palette
from epspp.data.io import DatasetError, write_mask_png
from epspp.render import render

# panels 64 px wide: text 13 px (the floor), a line of 13 + 6 = 19 px (titles, each row's caption); 4-px gaps;
# a one-line legend 19 + 2 x 19 // 4 = 27 px
LINE, GAP, LEGEND = 19, 4, 27


def _masks(root: Path, dest: Path, count: int) -> list[str]:
    dest.mkdir()
    ids = split_ids(root, "train")[:count]
    for image_id in ids:
        shutil.copy(root / "SegmentationClassAug" / f"{image_id}.png", dest / f"{image_id}.png")
    return ids


def _rows(path: Path) -> list[str]:
    with Image.open(path) as image:
        return json.loads(image.text["epspp:rows"])


def _grown(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((width, height), Image.NEAREST))


def test_overview_of_a_dataset_rows_in_order_with_ids(synthetic_root: Path, tmp_path: Path) -> None:
    ids = _masks(synthetic_root, tmp_path / "pred", 5)
    path = render(tmp_path / "pred", synthetic_root, num=3, panel=64)
    assert path == tmp_path / "pred" / "overview.png"
    assert _rows(path) == [ids[0], ids[2], ids[4]]  # evenly spread over the sorted ids, in order
    picture = np.array(Image.open(path).convert("RGB"))
    # 3 columns of 64 px; titles, then per row its caption, its 48x48 images grown to 64x64 and a gap
    assert picture.shape[1] == 3 * 64 + 2 * GAP
    row_height = LINE + 64 + GAP
    legend_top = LINE + 3 * row_height
    assert picture.shape[0] > legend_top
    for index, image_id in enumerate(_rows(path)):
        top = LINE + index * row_height + LINE
        image = np.array(Image.open(synthetic_root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        np.testing.assert_array_equal(picture[top : top + 64, :64], _grown(image, 64, 64))
        assert not np.array_equal(picture[top : top + 64, 68:132], picture[top : top + 64, :64])  # saliency
        caption = picture[top - LINE : top]
        assert (caption.min(axis=-1) < 128).sum() > 30, f"no caption above row {index}"
    # the legend shows the colours of the object classes in the masks, and no other class colour
    legend = picture[legend_top:]
    present = {int(v) for i in _rows(path) for v in np.unique(np.array(Image.open(tmp_path / "pred" / f"{i}.png")))}
    for c in range(1, 6):
        count = (legend == voc_palette()[c]).all(axis=-1).sum()
        assert count == 11 * 11 if c in present else count == 0, f"class {c}"


def _photos(folder: Path, pred: Path) -> dict[str, np.ndarray]:
    """Two non-square photos (48x32 and 30x40, W x H) and their masks (class 3, bird), with the writer's manifest."""
    folder.mkdir()
    pred.mkdir()
    rng = np.random.default_rng(0)
    photos = {
        "a wide": rng.integers(0, 255, (32, 48, 3), dtype=np.uint8),
        "b tall": rng.integers(0, 255, (40, 30, 3), dtype=np.uint8),
    }
    for name, photo in photos.items():
        Image.fromarray(photo).save(folder / f"{name}.png")
        mask = np.zeros(photo.shape[:2], np.uint8)
        mask[5:20, 5:20] = 3
        write_mask_png(pred / f"{name}.png", mask)
    (pred / "manifest.json").write_text(json.dumps({"class_names": ["background", "aeroplane", "bicycle", "bird"]}))
    return photos


def test_render_images_of_a_folder_outside_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photos = _photos(tmp_path / "photos", tmp_path / "pred")
    assert (
        render_main(["--pred-dir", str(tmp_path / "pred"), "--images", str(tmp_path / "photos"), "--panel", "64"]) == 0
    )
    path = tmp_path / "pred" / "overview.png"
    assert capsys.readouterr().out == f"wrote {path}\n"
    assert _rows(path) == ["a wide", "b tall"]
    picture = np.array(Image.open(path).convert("RGB"))
    # image | mask overlay: 2 x 64 + 4 wide. Row a: 48x32 grown by 64/48 -> 64 x 43 (42.67). Row b: 30x40 grown by
    # min(64/30, 96/40) = 2.133 -> 64 x 85 (85.33). Titles 19 + (19 + 43 + 4) + (19 + 85 + 4) + legend 27 = 220
    assert picture.shape == (LINE + (LINE + 43 + GAP) + (LINE + 85 + GAP) + LEGEND, 2 * 64 + GAP, 3) == (220, 132, 3)
    top_a, top_b = LINE + LINE, LINE + (LINE + 43 + GAP) + LINE
    np.testing.assert_array_equal(picture[top_a : top_a + 43, :64], _grown(photos["a wide"], 64, 43))
    np.testing.assert_array_equal(picture[top_b : top_b + 85, :64], _grown(photos["b tall"], 64, 85))
    # the overlay column: the masked square (rows 5..19 of 32 -> 7..26 of 43) blends bird's colour in
    blended = picture[top_a + 10, 64 + GAP + 10].astype(int)
    photo = _grown(photos["a wide"], 64, 43)[10, 10].astype(int)
    np.testing.assert_allclose(blended, photo * 0.45 + voc_palette()[3] * 0.55, atol=1)
    assert (picture[-LEGEND:] == voc_palette()[3]).all(axis=-1).sum() == 11 * 11  # bird's swatch, from the manifest


def test_render_images_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _photos(tmp_path / "photos", tmp_path / "pred")
    args = ["--pred-dir", str(tmp_path / "pred"), "--images", str(tmp_path / "photos")]
    with pytest.raises(SystemExit):
        render_main(["--pred-dir", str(tmp_path / "pred")])
    assert "give the images: --root ROOT (a dataset) or --images DIR" in capsys.readouterr().err
    write_mask_png(tmp_path / "pred" / "stranger.png", np.zeros((4, 4), np.uint8))
    assert render_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"mask {tmp_path / 'pred' / 'stranger.png'} has no image" in err
    assert "is --images the folder these masks were predicted from?" in err
    (tmp_path / "pred" / "stranger.png").unlink()
    write_mask_png(tmp_path / "pred" / "b tall.png", np.zeros((4, 4), np.uint8))
    assert render_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "b tall.png is 4x4, its image" in err and "b tall.png 30x40" in err
    assert render_main([*args[:2], "--images", str(tmp_path / "nowhere")]) == 2
    assert f"--images {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err
    assert render_main([*args, "--out", str(tmp_path / "photos" / "o.png")]) == 2  # never into the user's images
    assert "is inside the image folder" in capsys.readouterr().err
    assert not (tmp_path / "pred" / "overview.png").exists()


def test_render_errors(synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert render_main(["--pred-dir", str(tmp_path / "empty"), "--root", str(synthetic_root)]) == 2
    assert "no <id>.png mask in" in capsys.readouterr().err
    _masks(synthetic_root, tmp_path / "pred", 2)
    (tmp_path / "pred" / "stranger.png").write_bytes((tmp_path / "pred" / "train_000000.png").read_bytes())
    assert render_main(["--pred-dir", str(tmp_path / "pred"), "--root", str(synthetic_root)]) == 2
    assert "stranger.png has no image" in capsys.readouterr().err
    (tmp_path / "pred" / "stranger.png").unlink()
    assert (
        render_main(["--pred-dir", str(tmp_path / "pred"), "--root", str(synthetic_root), "--out", str(tmp_path)]) == 2
    )
    assert "is a folder" in capsys.readouterr().err
    assert (
        render_main(
            [
                "--pred-dir",
                str(tmp_path / "pred"),
                "--root",
                str(synthetic_root),
                "--out",
                str(tmp_path / "figs" / "o.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "figs" / "o.png").is_file()


def test_one_row_of_16_pixel_panels_and_a_manifest_of_the_background_only(tmp_path: Path) -> None:
    """--num >= 1 and --panel >= 16 pixels, both ends included; with the background as the only class name every
    other id of a mask is drawn as 'class <id>', not refused (boundary sweep)."""
    _photos(tmp_path / "photos", tmp_path / "pred")
    pred, photos = tmp_path / "pred", tmp_path / "photos"
    with pytest.raises(DatasetError, match="--num must be >= 1, got 0"):
        render(pred, images=photos, num=0, panel=16)
    with pytest.raises(DatasetError, match="--panel must be >= 16 pixels, got 15"):
        render(pred, images=photos, num=1, panel=15)
    assert len(_rows(render(pred, images=photos, num=1, panel=16))) == 1
    (pred / "manifest.json").write_text(json.dumps({"class_names": ["background"]}))  # the masks hold class 3
    assert _rows(render(pred, images=photos, panel=16, overwrite=True)) == ["a wide", "b tall"]


def test_image_labels_name_the_object_classes_and_number_the_others(tmp_path: Path) -> None:
    """Labels from cls_labels.npy (multi-hot over the object classes) or a ground-truth mask: the background and
    the ignore value 255 are no label; a class past the names is 'class <id>' (boundary sweep)."""
    from epspp.render import _labels_reader

    root = tmp_path / "root"
    root.mkdir()
    np.save(root / "cls_labels.npy", np.array({"x": np.array([1.0, 1.0, 1.0], np.float32)}, dtype=object))
    assert _labels_reader(root, None, ["background", "a", "b"])("x") == ["a", "b", "class 3"]
    (tmp_path / "truth").mkdir()
    write_mask_png(tmp_path / "truth" / "y.png", np.array([[0, 2, 255], [1, 0, 0]], np.uint8))
    assert _labels_reader(None, tmp_path / "truth", ["background", "a", "b"])("y") == ["a", "b"]
    names = ["background", *(f"c{i}" for i in range(1, 255))]  # 255 names: ids 0..254, and 255 is still ignore
    assert _labels_reader(None, tmp_path / "truth", names)("y") == ["c1", "c2"]


def test_render_refuses_its_options_before_reading(tmp_path: Path) -> None:
    from epspp.errors import DatasetError

    (tmp_path / "masks").mkdir()
    (tmp_path / "file.png").write_bytes(b"x")
    cases = [
        ({"pred_dir": tmp_path / "file.png"}, f"--pred-dir {tmp_path / 'file.png'} is not a folder"),
        ({"num": 0}, "--num must be >= 1, got 0"),
        ({"panel": 15}, "--panel must be >= 16 pixels, got 15"),
        ({"root": None}, "give the images: --root ROOT (a dataset) or --images DIR (a folder of images)"),
    ]
    for options, message in cases:
        with pytest.raises(DatasetError) as error:
            render(**{"pred_dir": tmp_path / "masks", "root": tmp_path, **options})
        assert str(error.value) == message
    with pytest.raises(DatasetError) as error:  # num 1 and panel 16 are allowed: the next check speaks
        render(tmp_path / "masks", tmp_path, num=1, panel=16)
    assert str(error.value) == f"{tmp_path / 'JPEGImages'} not found: is --root {tmp_path} a dataset root?"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.png", "masks"]


def test_the_class_names_and_image_labels_an_overview_is_captioned_with(tmp_path: Path) -> None:
    from epspp.render import _class_names, _labels_reader

    assert _class_names(None, tmp_path) == ["background"]  # no manifest
    (tmp_path / "manifest.json").write_text('{"class_names": ["background", "cat"]}')
    assert _class_names(None, tmp_path) == ["background", "cat"]
    for bad in ('{"class_names": ["background", 3]}', '{"class_names": []}', "[1, 2]", "{broken"):
        (tmp_path / "manifest.json").write_text(bad)
        assert _class_names(None, tmp_path) == ["background"], bad
    names = ["background", "cat", "dog"]
    root = tmp_path / "root"
    (root / "SegmentationClassAug").mkdir(parents=True)
    write_mask_png(root / "SegmentationClassAug" / "m.png", np.array([[0, 2, 2], [255, 0, 2]], np.uint8))  # 2x3
    labels = _labels_reader(root, None, names)
    assert labels("m") == ["dog"] and labels("none") is None  # from the ground truth; an id with nothing
    (root / "cls_labels.json").write_text(json.dumps({"a": ["dog", "cat"], "m": []}))
    labels = _labels_reader(root, None, names)
    assert labels("a") == ["cat", "dog"] and labels("m") == []  # the label file first
    (root / "cls_labels.json").unlink()
    np.save(root / "cls_labels.npy", np.array({"a": np.array([0.0, 1.0, 1.0])}, dtype=object))
    assert _labels_reader(root, None, names)("a") == ["dog", "class 3"]  # beyond the names: its number
    assert _labels_reader(None, None, names)("m") is None  # no root: no labels
    other = tmp_path / "truth"
    other.mkdir()
    write_mask_png(other / "m.png", np.array([[1, 0, 0]], np.uint8))
    assert _labels_reader(None, other, names)("m") == ["cat"]  # --mask-dir
    assert _labels_reader(root, other, names)("m") == ["cat"]  # --mask-dir, not the root's ground truth
