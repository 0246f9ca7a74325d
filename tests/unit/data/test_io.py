"""The data readers: split lists (duplicates, byte-order marks, extensions), image bit depths and alpha channels,
and the one-way imports of the readers."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import epspp
from epspp.data.io import (
    DatasetError,
    max_pixels,
    read_image,
    read_mask_pixels,
    read_saliency,
    read_split,
    write_mask_png,
)


def _split(root: Path, name: str, raw: bytes) -> None:
    folder = root / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_bytes(raw)


# ------------------------------------------------------------------ item 7: split lists
@pytest.mark.parametrize("lines", [["a", "b", "a"], ["a", "b", "a.jpg"], ["a.PNG", "b", "a"]])
def test_split_id_listed_twice_is_refused_naming_both_lines(tmp_path: Path, lines: list[str]) -> None:
    _split(tmp_path, "dup", "\n".join(lines).encode())
    with pytest.raises(DatasetError, match=r"dup\.txt line 3: id 'a' is listed twice \(first on line 1\)"):
        read_split(tmp_path, "dup")


def test_split_bom_and_extensions_are_dropped_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _split(tmp_path, "bom", "\ufeffa\nb.jpg\nc\n".encode())
    assert read_split(tmp_path, "bom") == ["a", "b", "c"]
    err = capsys.readouterr().err
    assert "bom.txt: ignored a UTF-8 byte-order mark and the image extension of 1 id(s)" in err
    _split(tmp_path, "plain", b"a\nb\n")
    assert read_split(tmp_path, "plain") == ["a", "b"]
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ item 20: imports of the data readers flow one way
def _epspp_imports(path: Path) -> set[str]:
    """Every ``epspp.*`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("epspp"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("epspp"))
    return found


def test_data_reader_imports_have_no_circle() -> None:
    package = Path(epspp.__file__).parent
    graph = {f"epspp.data.{p.stem}": _epspp_imports(p) for p in (package / "data").glob("*.py")}
    graph |= {f"epspp.{p.stem}": _epspp_imports(p) for p in package.glob("*.py")}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in graph.get(start, ()):
            if module == target or (module not in seen and reaches(module, target, seen | {module})):
                return True
        return False

    for module in ("epspp.data.classes", "epspp.data.io", "epspp.data.labels", "epspp.data.npy_labels"):
        assert not reaches(module, module, {module}), f"{module} imports itself through others"


# ------------------------------------------------------------------ item 10: bit depths and alpha channels
def test_16_bit_grey_image_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (1, 4, 3) and image.dtype == np.uint8
    assert image[0, :, 0].tolist() == [0, 1, 128, 255] and (image == image[..., :1]).all()


def test_float_image_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DatasetError, match=r"image .*float\.tif holds floating-point values \(mode F\)"):
        read_image(tmp_path / "float.tif")


def test_saliency_with_transparency_is_refused_and_opaque_alpha_is_dropped(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:2, :, :3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "opaque.png")
    assert read_saliency(tmp_path / "opaque.png").tolist() == [[1.0] * 4] * 2 + [[0.0] * 4] * 2
    rgba[2:, :, 3] = 0  # a cutout: the saliency is in the alpha channel
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "cutout.png")
    with pytest.raises(DatasetError, match=r"saliency map .*cutout\.png \(RGBA\) has a transparent alpha channel"):
        read_saliency(tmp_path / "cutout.png")
    grey_alpha = np.stack([np.full((4, 4), 200, np.uint8), np.full((4, 4), 10, np.uint8)], axis=2)
    Image.fromarray(grey_alpha, mode="LA").save(tmp_path / "la.png")
    with pytest.raises(DatasetError, match=r"\(LA\) has a transparent alpha channel"):
        read_saliency(tmp_path / "la.png")


def test_the_pixel_limit_admits_an_image_of_exactly_that_many_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(tmp_path / "wide.png")  # 5x3 = 15 pixels
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "15")
    assert read_image(tmp_path / "wide.png").shape == (3, 5, 3)
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "14")
    with pytest.raises(DatasetError, match=r"wide\.png has more than 14 pixels .*\(5x3\)"):
        read_image(tmp_path / "wide.png")


def test_the_pixel_limit_admits_a_mask_of_exactly_that_many_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mask reader's own PNG decoder (palette, unfiltered rows) has the same closed limit (boundary sweep)."""
    write_mask_png(tmp_path / "wide.png", np.ones((3, 5), np.uint8))  # 5x3 = 15 pixels
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "15")
    assert read_mask_pixels(tmp_path / "wide.png").shape == (3, 5)
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "14")
    with pytest.raises(DatasetError, match=r"wide\.png has more than 14 pixels .*\(5x3\)"):
        read_mask_pixels(tmp_path / "wide.png")


def test_a_pixel_limit_of_one_is_positive_and_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """EPSPP_MAX_PIXELS is 'a positive number of pixels': 1 is the least (boundary sweep)."""
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "1")
    assert max_pixels() == 1
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "0")
    with pytest.raises(DatasetError, match=r"EPSPP_MAX_PIXELS='0': expected a positive number of pixels"):
        max_pixels()


def test_files_that_are_missing_damaged_or_of_the_wrong_kind_are_named_in_one_line(tmp_path: Path) -> None:
    from epspp.data.io import exif_orientation, image_files, read_mask_pixels

    _split(tmp_path, "latin", b"caf\xe9\n")
    split = tmp_path / "ImageSets" / "Segmentation" / "latin.txt"
    with pytest.raises(DatasetError, match=rf"^cannot read split file {split}: "):
        read_split(tmp_path, "latin")
    with pytest.raises(DatasetError) as error:
        read_image(tmp_path / "a.jpg", split_file="val.txt")
    assert str(error.value) == f"image {tmp_path / 'a.jpg'} not found (listed in val.txt)"
    with pytest.raises(DatasetError) as error:
        read_saliency(tmp_path / "a.png")
    assert str(error.value) == f"saliency map {tmp_path / 'a.png'} not found"
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(DatasetError, match=rf"^cannot read image {tmp_path / 'broken.jpg'}: "):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(DatasetError, match=rf"^cannot read image {tmp_path / 'broken.jpg'}: "):
        exif_orientation(tmp_path / "broken.jpg")
    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(tmp_path / "upright.png")
    assert exif_orientation(tmp_path / "upright.png") == 1  # no tag: stored upright
    Image.fromarray(np.full((3, 5), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DatasetError) as error:
        read_saliency(tmp_path / "float.tif")
    assert str(error.value) == (
        f"saliency map {tmp_path / 'float.tif'} holds floating-point values (mode F): save it as an 8- or 16-bit "
        "grey PNG (0 = background, max = salient)"
    )
    with pytest.raises(DatasetError) as error:
        read_mask_pixels(tmp_path / "upright.png")
    assert str(error.value) == (
        f"mask {tmp_path / 'upright.png'} has mode RGB: expected a palette or grey PNG of class ids"
    )
    assert image_files(tmp_path / "none") == {}  # no folder: no image
    assert image_files(tmp_path / "upright.png") == {}  # a file is no folder of images


def test_image_files_by_id_skip_hidden_files_and_refuse_two_files_of_one_id(tmp_path: Path) -> None:
    from epspp.data.io import image_files

    for name in ("b.JPG", "a.png", ".c.jpg", "d.txt", "e.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    assert image_files(tmp_path) == {"a": tmp_path / "a.png", "b": tmp_path / "b.JPG", "e": tmp_path / "e.jpeg"}
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError) as error:
        image_files(tmp_path)
    assert str(error.value) == (
        f"image id 'a' has two files in {tmp_path}: a.jpg and a.png: keep one (an id is the file name without its "
        "extension)"
    )


# ------------------------------------------------------------------ variation pass: inputs never varied
def test_the_id_length_limit_counts_utf8_bytes_not_characters() -> None:
    from epspp.data.io import MAX_ID_BYTES, check_id

    assert MAX_ID_BYTES == 223  # 255 (NAME_MAX) - 32 for the temporary name's dot, thread id and suffix
    fits = "é" * 111 + "a"  # 223 bytes in 112 characters
    assert check_id(fits, "here") == fits
    with pytest.raises(DatasetError, match=r"^here: id 'éé.*is 224 bytes long"):
        check_id("é" * 112, "here")  # 112 characters, 224 bytes


def test_a_split_keeps_an_extension_that_is_not_an_image_type(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _split(tmp_path, "dots", b"a.b\nc.txt\nd.JPEG\n2007_000032\n")
    assert read_split(tmp_path, "dots") == ["a.b", "c.txt", "d", "2007_000032"]
    assert "the image extension of 1 id(s)" in capsys.readouterr().err
