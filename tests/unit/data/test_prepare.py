"""`epspp prepare`: VOC + SBD, COCO (EPS layout) and the command line, on tiny fake trees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fixtures.trees import (
    COCO_TRAIN,
    COCO_VAL,
    SBD_TRAIN,
    TRAIN_AUG,
    VOC_TRAIN,
    VOC_VAL,
    H,
    W,
    mat,
    png,
    sbd_mask,
    voc_mask,
)
from PIL import Image

from epspp.cli.prepare import prepare_main
from epspp.data.classes import COCO_CLASSES, VOC_CLASSES
from epspp.data.io import DatasetError, read_split
from epspp.data.prepare import prepare_coco, prepare_voc, read_sbd_mat


def _split(root: Path, name: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()


def _mask(root: Path, image_id: str) -> np.ndarray:
    image = Image.open(root / "SegmentationClassAug" / f"{image_id}.png")
    assert image.mode == "P"
    return np.asarray(image)


def test_sbd_reader(tmp_path: Path) -> None:
    mask = sbd_mask(15)
    mat(tmp_path / "x.mat", mask)
    np.testing.assert_array_equal(read_sbd_mat(tmp_path / "x.mat"), mask)
    scipy.io.savemat(tmp_path / "bad.mat", {"other": np.zeros(3)})
    with pytest.raises(DatasetError, match="GTcls"):
        read_sbd_mat(tmp_path / "bad.mat")


def test_prepare_voc(voc_tree: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    voc, sbd = voc_tree
    out = tmp_path / "out"
    counts = prepare_voc(voc, sbd, out)
    assert _split(out, "train_aug") == TRAIN_AUG
    assert _split(out, "train") == VOC_TRAIN and _split(out, "val") == VOC_VAL
    assert counts["train_aug"] == 4 and counts["masks_from_voc"] == 4 and counts["masks_from_sbd"] == 2
    np.testing.assert_array_equal(_mask(out, "2007_000002"), voc_mask(7))  # VOC PNG wins over SBD
    np.testing.assert_array_equal(_mask(out, "2008_000010"), sbd_mask(3))
    assert 255 in _mask(out, "2007_000001")
    assert (out / "JPEGImages").is_symlink() and (out / "JPEGImages" / "2008_000011.jpg").is_file()
    assert json.loads((out / "classes.json").read_text())["names"] == list(VOC_CLASSES)
    assert "saliency" in capsys.readouterr().out and not (out / "saliency").exists()
    # a rerun skips the masks already written and links the saliency folder
    (tmp_path / "sal").mkdir()
    again = prepare_voc(voc, sbd, out, saliency_dir=tmp_path / "sal")
    assert again["masks_skipped"] == 6 and again["masks_from_voc"] == again["masks_from_sbd"] == 0
    assert (out / "saliency").resolve() == (tmp_path / "sal").resolve()


def test_prepare_voc_errors(voc_tree: tuple[Path, Path], tmp_path: Path) -> None:
    voc, sbd = voc_tree
    with pytest.raises(FileNotFoundError, match="SBD root"):
        prepare_voc(voc, tmp_path / "nowhere", tmp_path / "out")
    (sbd / "val.txt").rename(sbd / "val.bak")
    with pytest.raises(FileNotFoundError, match="val.txt"):
        prepare_voc(voc, sbd, tmp_path / "out")
    (sbd / "val.bak").rename(sbd / "val.txt")
    with pytest.raises(FileNotFoundError, match="saliency folder"):
        prepare_voc(voc, sbd, tmp_path / "out", saliency_dir=tmp_path / "no_saliency")
    assert not (tmp_path / "out").exists()  # refused before any mask, split or link was written
    mat(sbd / "cls" / "2008_000010.mat", sbd_mask(30))
    with pytest.raises(DatasetError, match=r"2008_000010.mat has values \[30\]"):
        prepare_voc(voc, sbd, tmp_path / "out")
    (sbd / "cls" / "2008_000010.mat").unlink()
    with pytest.raises(DatasetError, match="no mask for 2008_000010"):
        prepare_voc(voc, sbd, tmp_path / "out")


def test_a_voc_mask_holds_ids_0_to_20_and_255() -> None:
    """VOC: the background and 20 classes, ids 0..20, 255 = ignore; 21 is the first id refused (boundary sweep)."""
    from epspp.data.prepare import _check_values

    _check_values(np.array([[0, 20], [255, 1]], np.uint8), 21, Path("m.png"))
    with pytest.raises(DatasetError, match=r"mask m\.png has values \[21\] outside 0\.\.20 \(255 = ignore\)"):
        _check_values(np.array([[0, 21], [255, 20]], np.uint8), 21, Path("m.png"))


def test_prepare_coco(coco_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = prepare_coco(
        [coco_tree / "train2014", coco_tree / "val2014"],
        coco_tree / "SegmentationClass",
        out,
        saliency_dir=coco_tree / "saliency",
    )
    assert _split(out, "train") == COCO_TRAIN[:2] and _split(out, "val") == COCO_VAL
    assert result["images"] == 5 and result["checked"] == 4
    assert result["missing_mask"] == [COCO_TRAIN[2]] and result["missing_saliency"] == [COCO_VAL[1]]
    assert (out / "JPEGImages" / f"{COCO_VAL[0]}.jpg").is_symlink()
    assert _mask(out, COCO_TRAIN[0]).max() == 255 and 80 in _mask(out, COCO_TRAIN[0])
    assert (out / "saliency" / f"{COCO_TRAIN[0]}.png").is_file()
    assert json.loads((out / "classes.json").read_text())["names"] == list(COCO_CLASSES)
    prepare_coco([coco_tree / "train2014", coco_tree / "val2014"], coco_tree / "SegmentationClass", out)  # rerun


def test_prepare_coco_errors(coco_tree: Path, tmp_path: Path) -> None:
    dirs = [coco_tree / "train2014", coco_tree / "val2014"]
    png(coco_tree / "SegmentationClass" / "val2014" / f"{COCO_VAL[0]}.png", np.full((H, W), 90, np.uint8))
    with pytest.raises(DatasetError, match=r"values \[90\] outside 0..80"):
        prepare_coco(dirs, coco_tree / "SegmentationClass", tmp_path / "out")
    prepare_coco(dirs, coco_tree / "SegmentationClass", tmp_path / "out", check=2)  # not checked: accepted
    png(coco_tree / "SegmentationClass" / "val2014" / f"{COCO_VAL[0]}.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match="5x5"):
        prepare_coco(dirs, coco_tree / "SegmentationClass", tmp_path / "out2")
    with pytest.raises(FileNotFoundError, match="mask folder"):
        prepare_coco(dirs, coco_tree / "missing", tmp_path / "out3")


def test_cli_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "synth"
    args = [
        "synthetic",
        "--root",
        str(root),
        "--num-train",
        "12",
        "--num-val",
        "3",
        "--seed",
        "5",
        "--labeled-fraction",
        "0.25",
    ]
    assert prepare_main(args) == 0
    out = capsys.readouterr().out
    assert "train 12" in out and "labeled_25pct 3" in out
    assert len(_split(root, "labeled_25pct")) == 3
    assert prepare_main(args) == 2  # refuses to overwrite
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "overwrite" in err and "Traceback" not in err
    assert prepare_main(args + ["--overwrite", "--difficulty", "hard"]) == 0
    assert json.loads((root / "synthetic.json").read_text())["params"]["difficulty"] == "hard"
    assert (root / "SegmentationContext").is_dir() and (root / "saliency" / "errors").is_dir()
    systematic = json.loads((root / "synthetic.json").read_text())["splits"]["train"]["systematic"]
    said = capsys.readouterr().out  # the hard errors are said too, not only the three independent ones
    assert f"systematic errors: missing class {systematic['missing_class']}, missing part " in said
    assert "systematic" not in out  # the easy dataset above has none


def test_cli_voc_and_coco(
    voc_tree: tuple[Path, Path], coco_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    voc, sbd = voc_tree
    assert prepare_main(["voc", "--voc-root", str(voc), "--sbd-root", str(sbd), "--out", str(tmp_path / "v")]) == 0
    assert "train_aug 4" in capsys.readouterr().out
    code = prepare_main(["voc", "--voc-root", str(tmp_path / "x"), "--sbd-root", str(sbd), "--out", str(tmp_path)])
    assert code == 2 and "VOC 2012 root" in capsys.readouterr().err
    assert (
        prepare_main(
            [
                "coco",
                "--image-dir",
                str(coco_tree / "train2014"),
                str(coco_tree / "val2014"),
                "--mask-dir",
                str(coco_tree / "SegmentationClass"),
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert "5 images" in capsys.readouterr().out
    assert prepare_main([]) == 2 and prepare_main(["--help"]) == 0


def _subprocess(args: list[str]) -> subprocess.CompletedProcess:
    code = f"from epspp.cli.prepare import prepare_main; raise SystemExit(prepare_main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_cli_subprocess(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    done = _subprocess(["synthetic", "--root", str(root), "--num-train", "6", "--num-val", "2"])
    assert done.returncode == 0, done.stderr
    assert "wrote synthetic dataset" in done.stdout and len(_split(root, "train")) == 6
    failed = _subprocess(["synthetic", "--root", str(root), "--num-train", "6", "--num-val", "2"])
    assert failed.returncode == 2 and "Traceback" not in failed.stderr and "exists" in failed.stderr


def test_prepare_voc_refuses_split_ids_that_are_paths(voc_tree: tuple[Path, Path], tmp_path: Path) -> None:
    voc, sbd = voc_tree
    (sbd / "train.txt").write_text(f"{SBD_TRAIN[0]}\n../../escaped\n")
    with pytest.raises(DatasetError, match=r"train.txt line 2: id '../../escaped' is not a plain file name"):
        prepare_voc(voc, sbd, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("escaped*"))


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


def test_prepares_readers_and_links_name_the_file_they_refuse(tmp_path: Path) -> None:
    from PIL import Image

    from epspp.data.prepare import _check_values, _index, _link, _read_png_mask

    (tmp_path / "broken.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match=rf"^cannot read SBD file {tmp_path / 'broken.mat'}: "):
        read_sbd_mat(tmp_path / "broken.mat")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DatasetError, match=rf"^cannot read mask {tmp_path / 'broken.png'}: "):
        _read_png_mask(tmp_path / "broken.png")
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError) as error:
        _read_png_mask(tmp_path / "rgb.png")
    assert str(error.value) == f"mask {tmp_path / 'rgb.png'} has mode RGB: expected a palette or grey PNG of class ids"
    Image.fromarray(np.array([[0, 20, 255]], np.uint8)).save(tmp_path / "grey.png")
    assert _read_png_mask(tmp_path / "grey.png").tolist() == [[0, 20, 255]]
    _check_values(np.array([[0, 20, 255]], np.uint8), 21, tmp_path / "grey.png")  # 20 is VOC's last class
    with pytest.raises(DatasetError) as error:
        _check_values(np.array([[0, 21, 254, 255]], np.uint8), 21, tmp_path / "grey.png")
    assert str(error.value) == f"mask {tmp_path / 'grey.png'} has values [21, 254] outside 0..20 (255 = ignore)"
    folder = tmp_path / "cls"
    (folder / "train").mkdir(parents=True)
    (folder / "a.mat").write_bytes(b"")
    (folder / "train" / "b.mat").write_bytes(b"")
    (folder / "train" / ".c.mat").write_bytes(b"")
    assert _index(folder, ".mat", "SBD mask") == {"a": folder / "a.mat", "b": folder / "train" / "b.mat"}
    (folder / "train" / "a.mat").write_bytes(b"")
    with pytest.raises(DatasetError) as error:
        _index(folder, ".mat", "SBD mask")
    assert str(error.value) == f"SBD mask a found twice: {folder / 'a.mat'} and {folder / 'train' / 'a.mat'}"
    assert _link(tmp_path / "grey.png", tmp_path / "link.png") is True
    assert _link(tmp_path / "grey.png", tmp_path / "link.png") is False  # already there
    with pytest.raises(FileExistsError) as refused:
        _link(tmp_path / "rgb.png", tmp_path / "link.png")
    assert str(refused.value) == (
        f"{tmp_path / 'link.png'} exists and is not a link to {tmp_path / 'rgb.png'}: remove it or choose another --out"
    )
    assert (tmp_path / "link.png").resolve() == tmp_path / "grey.png"


def test_prepare_coco_counts_the_images_of_neither_split_and_the_masks_it_checked(
    coco_tree: Path, tmp_path: Path
) -> None:
    """An image of a third folder (neither train2014 nor val2014) with its mask is linked but in no split
    ("unassigned"); "checked" is the number of masks read: ``check`` when fewer than the masks, 0 below 0."""
    extra = "COCO_test2015_000000000001"
    jpeg = coco_tree / "test2015" / f"{extra}.jpg"
    jpeg.parent.mkdir()
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(jpeg)
    png(coco_tree / "SegmentationClass" / "test2015" / f"{extra}.png", np.zeros((H, W), np.uint8))
    dirs = [coco_tree / "train2014", coco_tree / "val2014", coco_tree / "test2015"]
    for check, checked in ((2, 2), (-1, 0), (50, 5)):
        out = tmp_path / f"out{check}"
        result = prepare_coco(dirs, coco_tree / "SegmentationClass", out, check=check)
        assert (result["images"], result["train"], result["val"], result["unassigned"]) == (6, 2, 2, 1)
        assert result["checked"] == checked
        assert extra not in _split(out, "train") + _split(out, "val") and (out / "JPEGImages" / f"{extra}.jpg").exists()
