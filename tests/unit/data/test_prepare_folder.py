"""`epspp prepare folder`: label files in CSV and JSON, classes given or inferred, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epspp.cli.prepare import prepare_main
from epspp.data.io import read_image, read_split
from epspp.data.labels import image_labels
from epspp.data.prepare_folder import prepare_folder, read_label_file
from epspp.errors import DatasetError, OutputError


def _inputs(tmp_path: Path, names: list[str]) -> tuple[Path, Path]:
    images, saliency = tmp_path / "images", tmp_path / "saliency"
    images.mkdir()
    saliency.mkdir()
    for index, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), index * 10, np.uint8)).save(images / name)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(saliency / f"{Path(name).stem}.png")
    return images, saliency


@pytest.mark.parametrize(
    ("text", "suffix"),
    [
        ("id,classes\na.jpg,cat;dog\nb.png,dog\nc.bmp,\n", ".csv"),
        ("a, cat dog\nb,dog\nc\n", ".csv"),
        ("a,cat,dog\nb,dog\nc,\n", ".csv"),
        ('{"a": ["cat", "dog"], "b": "dog", "c": []}', ".json"),
    ],
)
def test_label_files(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"labels{suffix}"
    path.write_text(text)
    labels = read_label_file(path)
    assert {Path(k).stem: v for k, v in labels.items()} == {"a": ["cat", "dog"], "b": ["dog"], "c": []}


def test_prepare_folder_builds_a_maskless_root(tmp_path: Path) -> None:
    images, saliency = _inputs(tmp_path, ["a.jpg", "b.png", "c.bmp", "d e.webp"])
    labels = tmp_path / "labels.csv"
    labels.write_text("id,classes\na.jpg,cat;dog\nb,dog\nc,\nd e,cat\n")
    out = tmp_path / "root"
    counts = prepare_folder(images, labels, out, saliency, val_fraction=0.25)
    assert counts == {"images": 4, "train": 3, "val": 1, "classes": ["background", "cat", "dog"]}
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == ["a.jpg", "b.png", "c.bmp", "d e.webp"]
    assert (out / "JPEGImages" / "b.png").read_bytes() == (images / "b.png").read_bytes()  # never re-encoded
    assert sorted(read_split(out, "all")) == ["a", "b", "c", "d e"]
    assert sorted(read_split(out, "train") + read_split(out, "val")) == ["a", "b", "c", "d e"]
    assert json.loads((out / "classes.json").read_text())["names"] == ["background", "cat", "dog"]
    table = image_labels(out, ["a", "b", "c", "d e"], 2)
    assert {k: v.tolist() for k, v in table.items()} == {"a": [1, 1], "b": [0, 1], "c": [0, 0], "d e": [1, 0]}
    # a rerun with the same inputs is fine (and writes the same)
    assert prepare_folder(images, labels, out, saliency, val_fraction=0.25) == counts


def test_copy_instead_of_links(tmp_path: Path) -> None:
    images, saliency = _inputs(tmp_path, ["a.jpg", "b.png"])
    (tmp_path / "labels.csv").write_text("a,cat\nb,dog\n")
    prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", saliency, val_fraction=0.5, copy=True)
    for path in ((tmp_path / "root" / "JPEGImages" / "b.png"), (tmp_path / "root" / "saliency" / "a.png")):
        assert path.is_file() and not path.is_symlink()
    assert (tmp_path / "root" / "JPEGImages" / "b.png").read_bytes() == (images / "b.png").read_bytes()


def test_classes_given_in_order(tmp_path: Path) -> None:
    images, _ = _inputs(tmp_path, ["a.jpg", "b.jpg"])
    labels = tmp_path / "labels.json"
    labels.write_text('{"a": ["dog"], "b": ["cat"]}')
    counts = prepare_folder(images, labels, tmp_path / "root", classes=["dog", "cat", "bird"])
    assert counts["classes"] == ["background", "dog", "cat", "bird"]
    with pytest.raises(DatasetError, match=r"uses classes \['cat'\] that --classes does not list"):
        prepare_folder(images, labels, tmp_path / "other", classes=["dog"])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("a,cat\n", r"1 images have no line in .*labels.csv, e.g. \['b'\]"),
        ("a,cat\nb,cat\nzz,cat\n", r"labels 1 ids with no image .* \['zz'\]"),
        ("a,cat\na,dog\nb,cat\n", "line 2: id 'a' is listed twice"),
        ("a,background\nb,cat\n", "'background' is class 0"),
    ],
)
def test_label_errors(tmp_path: Path, labels: str, message: str) -> None:
    images, saliency = _inputs(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "labels.csv").write_text(labels)
    with pytest.raises(DatasetError, match=message):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", saliency, val_fraction=0.5)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_the_val_fraction_is_an_open_interval(tmp_path: Path, fraction: float) -> None:
    """--val-fraction within (0, 1): 0 leaves no val image, 1 no train image (boundary sweep)."""
    images, saliency = _inputs(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "labels.csv").write_text("a,cat\nb,cat\n")
    with pytest.raises(DatasetError, match=rf"--val-fraction must be within \(0, 1\), got {fraction}"):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", saliency, val_fraction=fraction)
    assert not (tmp_path / "root").exists()


def test_image_names_that_cannot_be_ids(tmp_path: Path) -> None:
    images, _ = _inputs(tmp_path, ["a.jpg", " b.jpg"])
    (tmp_path / "labels.csv").write_text("a,cat\n b,cat\n")
    with pytest.raises(DatasetError, match=r"id ' b' is not a plain file name"):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", val_fraction=0.5)


def test_saliency_that_is_not_png_and_a_non_empty_out(tmp_path: Path) -> None:
    images, saliency = _inputs(tmp_path, ["a.jpg", "b.jpg"])
    (saliency / "b.png").rename(saliency / "b.jpg")
    (tmp_path / "labels.csv").write_text("a,cat\nb,cat\n")
    with pytest.raises(DatasetError, match=r"1 images have no saliency map .*b.jpg is not a PNG"):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", saliency, val_fraction=0.5)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="holds files that `epspp prepare folder` did not write"):
        prepare_folder(images, tmp_path / "labels.csv", busy, val_fraction=0.5)
    assert sorted(p.name for p in busy.iterdir()) == ["thesis.tex"]


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, saliency = _inputs(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "labels.csv").write_text("a,cat\nb,dog\nc,cat dog\n")
    args = [
        "folder",
        "--images",
        str(images),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--saliency",
        str(saliency),
        "--out",
        str(tmp_path / "root"),
    ]
    assert prepare_main(args) == 0
    assert "3 images (train 2, val 1, all), 2 classes ['cat', 'dog']" in capsys.readouterr().out
    assert prepare_main([*args[:-1], str(tmp_path / "other"), "--val-fraction", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--val-fraction must be within (0, 1)" in err


# ------------------------------------------------------------------ item 8: label files of `prepare folder`
def _folder_inputs(tmp_path: Path, count: int) -> tuple[Path, Path]:
    images, saliency = tmp_path / "images", tmp_path / "saliency"
    images.mkdir(exist_ok=True)
    saliency.mkdir(exist_ok=True)
    for index in range(count):
        Image.fromarray(np.full((8, 8, 3), index, np.uint8)).save(images / f"im{index:02d}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(saliency / f"im{index:02d}.png")
    return images, saliency


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "im00,cat\nim01,Cat\n",
            r"labels\.csv: class 'cat' is listed as 'Cat' and 'cat', names that differ only in case",
        ),
        ("id,classes,split\nim00,cat,train\nim01,dog,val\n", r"labels\.csv line 1: columns \['split'\] are not read"),
        (
            "im00,cat\nim01,dog\nim00.png,dog\n",
            r"labels\.csv: image 'im00' is labelled twice, as 'im00' and 'im00\.png'",
        ),
    ],
)
def test_label_file_ambiguities_are_refused(tmp_path: Path, text: str, error: str) -> None:
    images, saliency = _folder_inputs(tmp_path, 2)
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DatasetError, match=error):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", saliency, val_fraction=0.5)
    assert not (tmp_path / "root").exists()


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


# ------------------------------------------------------------------ item 10: EXIF orientation
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


def test_unreadable_and_empty_label_files_are_refused_in_one_line(tmp_path: Path) -> None:
    def refused(name: str, content: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DatasetError) as error:
            read_label_file(path)
        return str(error.value)

    with pytest.raises(DatasetError, match=rf"^label file {tmp_path / 'none.csv'} not found$"):
        read_label_file(tmp_path / "none.csv")
    assert refused("latin.csv", b"a,caf\xe9\n").startswith(f"cannot read label file {tmp_path / 'latin.csv'}: ")
    assert refused("header.csv", b"id,classes\n\n") == (
        f"{tmp_path / 'header.csv'} lists no image: expected lines 'id,class names' (e.g. 'img001,cat;dog')"
    )
    assert refused("bad.json", b'{"a": [').startswith(f"label file {tmp_path / 'bad.json'} is not valid JSON: ")
    assert (
        refused("list.json", b'[["a", "cat"]]') == f"{tmp_path / 'list.json'} must hold an object {{id: [class names]}}"
    )
    assert refused("number.json", b'{"a": 3}') == (
        f"{tmp_path / 'number.json'}: the classes of 'a' must be a list of names, got 3"
    )
    assert refused("mixed.json", b'{"a": ["cat", 1]}').endswith("got ['cat', 1]")
    (tmp_path / "blank.csv").write_text("a,cat\n\n , \nb,dog\n")  # blank rows are skipped, not ids
    assert read_label_file(tmp_path / "blank.csv") == {"a": ["cat"], "b": ["dog"]}
    (tmp_path / "spaces.json").write_text('{"a": [" cat ", " "]}')
    assert read_label_file(tmp_path / "spaces.json") == {"a": ["cat"]}


def test_prepare_folder_refuses_missing_inputs_and_too_few_images(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("a,cat\n")
    with pytest.raises(DatasetError, match=rf"^image folder {tmp_path / 'none'} not found$"):
        prepare_folder(tmp_path / "none", labels, tmp_path / "root")
    with pytest.raises(DatasetError, match=rf"^image folder {labels} not found$"):  # a file
        prepare_folder(labels, labels, tmp_path / "root")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=rf"^no image in {tmp_path / 'empty'} \(looked for .*\.jpg"):
        prepare_folder(tmp_path / "empty", labels, tmp_path / "root")
    images, _ = _inputs(tmp_path, ["a.jpg"])
    with pytest.raises(DatasetError) as error:
        prepare_folder(images, labels, tmp_path / "root")
    assert str(error.value) == "1 image(s): need at least 2 (one for train, one for val)"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "b.jpg")
    labels.write_text("a,\nb,\n")
    with pytest.raises(DatasetError) as error:
        prepare_folder(images, labels, tmp_path / "root")
    assert str(error.value) == f"{labels} names no class at all"
    labels.write_text("a,cat\nb,\n")
    with pytest.raises(DatasetError) as error:
        prepare_folder(images, labels, tmp_path / "root", tmp_path / "no_saliency")
    assert str(error.value) == f"saliency folder {tmp_path / 'no_saliency'} not found"
    assert not (tmp_path / "root").exists()


def test_a_rerun_says_which_images_left_and_never_replaces_another_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from epspp.data.prepare_folder import _link_or_copy

    images, _ = _inputs(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    labels = tmp_path / "labels.csv"
    labels.write_text("a,cat\nb,cat\nc,cat\nd,cat\n")
    out = tmp_path / "root"
    prepare_folder(images, labels, out, val_fraction=0.5)
    gone = {read_split(out, "train")[0], read_split(out, "val")[0]}  # one of each split
    for image_id in gone:
        (images / f"{image_id}.jpg").unlink()
    kept = sorted({"a", "b", "c", "d"} - gone)
    labels.write_text("".join(f"{i},cat\n" for i in kept))
    capsys.readouterr()
    counts = prepare_folder(images, labels, out, val_fraction=0.5)
    assert capsys.readouterr().err == (
        f"[epspp] 2 image(s) of the earlier splits of {out} are no longer in the image folder: left out of the new "
        "splits\n"
    )
    assert counts["images"] == 2 and sorted(read_split(out, "all")) == kept
    (tmp_path / "x.jpg").write_bytes(b"12345")
    (tmp_path / "y.jpg").write_bytes(b"123")
    (tmp_path / "copy.jpg").write_bytes(b"12345")
    _link_or_copy(tmp_path / "x.jpg", tmp_path / "copy.jpg", copy=True)  # a copy of the same size: kept
    with pytest.raises(DatasetError) as error:
        _link_or_copy(tmp_path / "y.jpg", tmp_path / "copy.jpg", copy=True)
    assert str(error.value) == f"{tmp_path / 'copy.jpg'} exists and is not {tmp_path / 'y.jpg'}: choose an empty --out"
    with pytest.raises(DatasetError, match="exists and is not"):
        _link_or_copy(tmp_path / "x.jpg", tmp_path / "copy.jpg", copy=False)  # a file, not the link
    assert (tmp_path / "copy.jpg").read_bytes() == b"12345"


def test_the_seed_draws_the_val_images(tmp_path: Path) -> None:
    """Half of 8 new images go to val: the first 4 of numpy's permutation for the seed (0 and 1 differ)."""
    ids = [f"im{i}" for i in range(8)]
    images, _ = _inputs(tmp_path, [f"{i}.png" for i in ids])
    (tmp_path / "labels.csv").write_text("".join(f"{i},cat\n" for i in ids))

    def expected(seed: int) -> list[str]:
        return sorted(ids[i] for i in np.random.default_rng(seed).permutation(8)[:4])

    assert expected(0) != expected(1)
    for seed in (0, 1):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / f"root{seed}", val_fraction=0.5, seed=seed)
        assert read_split(tmp_path / f"root{seed}", "val") == expected(seed)
