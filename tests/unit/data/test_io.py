"""Issue 21, silent wrong results: split lists, label files, reruns of `prepare folder`, image bit depths."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import epspp
from epspp.data.classes import read_classes
from epspp.data.io import DatasetError, read_image, read_saliency, read_split
from epspp.data.prepare_folder import prepare_folder


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


# ------------------------------------------------------------------ item 8: label files of `prepare folder`
def _folder_inputs(tmp_path: Path, count: int) -> tuple[Path, Path]:
    images, saliency = tmp_path / "images", tmp_path / "saliency"
    images.mkdir(exist_ok=True)
    saliency.mkdir(exist_ok=True)
    for index in range(count):
        Image.fromarray(np.full((8, 8, 3), index, np.uint8)).save(images / f"im{index:02d}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(saliency / f"im{index:02d}.png")
    return images, saliency


@pytest.mark.parametrize(("text", "error"), [
    ("im00,cat\nim01,Cat\n", r"labels\.csv: class 'cat' is listed as 'Cat' and 'cat', names that differ only in case"),
    ("id,classes,split\nim00,cat,train\nim01,dog,val\n", r"labels\.csv line 1: columns \['split'\] are not read"),
    ("im00,cat\nim01,dog\nim00.png,dog\n", r"labels\.csv: image 'im00' is labelled twice, as 'im00' and 'im00\.png'"),
])
def test_label_file_ambiguities_are_refused(tmp_path: Path, text: str, error: str) -> None:
    images, saliency = _folder_inputs(tmp_path, 2)
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DatasetError, match=error):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", saliency, val_fraction=0.5)
    assert not (tmp_path / "root").exists()


def test_classes_option_and_classes_json_refuse_case_twins(tmp_path: Path) -> None:
    images, _ = _folder_inputs(tmp_path, 2)
    (tmp_path / "labels.csv").write_text("im00,cat\nim01,dog\n")
    with pytest.raises(DatasetError, match=r"--classes: class 'CAT' is listed as 'cat' and 'CAT'"):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", classes=["cat", "dog", "CAT"])
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["background", "Dog", "dog"]}))
    with pytest.raises(DatasetError, match=r"classes\.json: class 'dog' is listed as 'Dog' and 'dog'"):
        read_classes(tmp_path)


# ------------------------------------------------------------------ item 9: a rerun of `prepare folder` keeps splits
def test_prepare_folder_rerun_keeps_every_earlier_split(tmp_path: Path) -> None:
    images, saliency = _folder_inputs(tmp_path, 10)
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"im{i:02d},{'cat' if i % 2 else 'dog'}\n" for i in range(30)))
    out = tmp_path / "root"
    (tmp_path / "first.csv").write_text("".join(f"im{i:02d},cat\n" for i in range(10)))
    prepare_folder(images, tmp_path / "first.csv", out, saliency, val_fraction=0.3)
    before = {name: read_split(out, name) for name in ("train", "val")}
    _folder_inputs(tmp_path, 30)  # 20 more images
    counts = prepare_folder(images, labels, out, saliency, val_fraction=0.3)
    after = {name: read_split(out, name) for name in ("train", "val")}
    for name in ("train", "val"):
        assert set(before[name]) <= set(after[name]), f"an image left {name}"
    assert sorted(after["train"] + after["val"]) == [f"im{i:02d}" for i in range(30)]
    assert counts["val"] == len(after["val"]) == 9  # 30% of 30, the 3 earlier val images among them
    # a second identical rerun changes nothing
    prepare_folder(images, labels, out, saliency, val_fraction=0.3)
    assert {name: read_split(out, name) for name in ("train", "val")} == after


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


# ------------------------------------------------------------------ item 10: EXIF orientation, bit depths, alpha
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


def test_prepare_folder_refuses_an_image_with_an_exif_rotation(tmp_path: Path) -> None:
    images, saliency = _folder_inputs(tmp_path, 2)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(images / "im01.jpg", exif=exif)
    (images / "im01.png").unlink()
    (tmp_path / "labels.csv").write_text("im00,cat\nim01,dog\n")
    with pytest.raises(DatasetError, match=r"image .*im01\.jpg has an EXIF orientation tag \(6\)"):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", saliency, val_fraction=0.5)
    # the readers take the stored pixels of every file alike (as EPS does, and as VOC/COCO were annotated)
    assert read_image(images / "im01.jpg").shape == (8, 12, 3)


# ------------------------------------------------------------------ item 18: stage-3 scaling resizes masks as PIL does
def _block_mask() -> np.ndarray:
    mask = np.zeros((36, 52), np.uint8)
    mask[3:20, 5:17], mask[11:33, 23:41], mask[25:36, 44:52], mask[0:7, 30:49] = 1, 2, 3, 255
    return mask


@pytest.mark.parametrize("scale", [0.75, 1.25])
def test_scale_augmentation_resizes_the_mask_with_pils_nearest(scale: float) -> None:
    from epspp.data.transforms import train_transform

    mask = _block_mask()
    height, width = int(36 * scale), int(52 * scale)  # deeplab-pytorch: int(h * scale)
    expected = np.asarray(Image.fromarray(mask).resize((width, height), resample=Image.NEAREST))
    cv2_nearest = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    assert (cv2_nearest != expected).mean() > 0.03  # the two filters differ on this mask
    transform = train_transform(80, scales=[scale], color_jitter=0.0)
    image = np.zeros((36, 52, 3), np.uint8)
    for _ in range(4):  # flipped or not
        got = transform(image, mask, None)["mask"].numpy()
        assert got.shape == (80, 80) and (got[height:] == 255).all() and (got[:, width:] == 255).all()
        assert np.array_equal(got[:height, :width], expected) or np.array_equal(got[:height, :width], expected[:, ::-1])


# ------------------------------------------------------------------ item 15: COCO stage 1 validates on a fixed sample
def test_coco_val_subset_is_a_fixed_sample_of_val() -> None:
    from epspp.data.prepare import coco_val_subset

    val = [f"COCO_val2014_{i:012d}" for i in range(0, 120_000, 3)]  # 40,000 ids
    subset = coco_val_subset(val)
    assert len(subset) == len(set(subset)) == 1000 and set(subset) <= set(val) and subset == sorted(subset)
    assert coco_val_subset(list(reversed(val))) == subset  # the order of the folder listing does not matter
    assert coco_val_subset(val[:7]) == sorted(val[:7])


def test_prepare_coco_writes_the_split_the_coco_configs_validate_on(tmp_path: Path) -> None:
    import yaml

    from epspp.data.prepare import COCO_VAL_SUBSET, coco_val_subset, prepare_coco

    ids = [f"COCO_train2014_{i:012d}" for i in (1, 2)] + [f"COCO_val2014_{i:012d}" for i in (3, 4, 5)]
    for image_id in ids:
        split = image_id.split("_")[1]
        (tmp_path / split).mkdir(exist_ok=True)
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / split / f"{image_id}.jpg")
        Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "masks" / f"{image_id}.png")
    prepare_coco([tmp_path / "train2014", tmp_path / "val2014"], tmp_path / "masks", tmp_path / "out")
    assert read_split(tmp_path / "out", COCO_VAL_SUBSET) == coco_val_subset(ids[2:]) == ids[2:]
    configs = Path(__file__).parents[3] / "configs" / "coco"
    for name in ("cam", "eps", "eps++"):
        config = yaml.safe_load((configs / f"localization_{name}.yaml").read_text())
        assert config["data"]["val_split"] == COCO_VAL_SUBSET, name
        assert config["trainer"]["max_steps"] // config["trainer"]["val_check_interval"] == 128
