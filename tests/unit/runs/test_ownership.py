"""Issue 27's write rule for the tools, run through their command lines: every command writes only into its
output, never into a dataset or an input folder, and replaces only files it wrote itself; a user's file in the
way is refused in one line naming the path and the flag, and is kept. Ranges are checked when a command starts,
and no choice is silent (duplicate ids, subfolders, blank saliency maps)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import snapshot, split_ids, write_png
from PIL import Image

from epspp.cli.check import check_main
from epspp.cli.convert import convert_main
from epspp.cli.evaluate import evaluate_main
from epspp.cli.prepare import prepare_main
from epspp.cli.render import render_main
from epspp.data.dataset import ImageFolderDataset
from epspp.errors import DatasetError
from epspp.runs.ownership import RECORD

SPLITS = Path("ImageSets") / "Segmentation"


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    """The command's stderr: one line ``... error: ...`` naming every needle."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "error:" in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


@pytest.fixture
def dataset(synthetic_root: Path, tmp_path: Path) -> Path:
    """Another dataset, a user's: a copy of the synthetic one."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "mine", ignore=shutil.ignore_patterns(".cache")))


def folder_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """Two images and their label file (``epspp prepare folder``'s inputs)."""
    images = tmp_path / "photos"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(images / name)
    (tmp_path / "labels.csv").write_text("a,cat\nb,dog\n")
    return images, tmp_path / "labels.csv"


def prepare_args(kind: str, voc: tuple[Path, Path], coco: Path, tmp_path: Path, out: Path) -> list[str]:
    if kind == "voc":
        return ["voc", "--voc-root", str(voc[0]), "--sbd-root", str(voc[1]), "--out", str(out)]
    if kind == "coco":
        return [
            "coco",
            "--image-dir",
            str(coco / "train2014"),
            str(coco / "val2014"),
            "--mask-dir",
            str(coco / "SegmentationClass"),
            "--out",
            str(out),
        ]
    images, labels = folder_inputs(tmp_path)
    return ["folder", "--images", str(images), "--labels", str(labels), "--out", str(out)]


# ------------------------------------------------------------------ prepare voc | coco | folder
@pytest.mark.parametrize("kind", ["voc", "coco", "folder"])
def test_prepare_refuses_to_write_over_another_dataset(
    kind: str,
    voc_tree: tuple[Path, Path],
    coco_tree: Path,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    before = snapshot(dataset)
    assert prepare_main(prepare_args(kind, voc_tree, coco_tree, tmp_path, dataset)) == 2
    one_line_error(
        capsys,
        f"epspp prepare {kind}: error: --out {dataset} holds files that `epspp prepare {kind}` did not write",
        "choose an empty or new --out",
    )
    assert snapshot(dataset) == before


@pytest.mark.parametrize("kind", ["voc", "coco", "folder"])
def test_prepare_refuses_an_out_inside_its_inputs(
    kind: str, voc_tree: tuple[Path, Path], coco_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    inputs = {"voc": voc_tree[0] / "JPEGImages", "coco": coco_tree / "train2014", "folder": tmp_path / "photos"}[kind]
    args = prepare_args(kind, voc_tree, coco_tree, tmp_path, inputs)
    before = snapshot(inputs.parent)
    assert prepare_main(args) == 2
    one_line_error(capsys, f"--out {inputs} is inside the", "choose a folder of its own")
    assert snapshot(inputs.parent) == before


@pytest.mark.parametrize("kind", ["voc", "coco", "folder"])
def test_prepare_reruns_into_its_own_root_but_never_replaces_a_users_file(
    kind: str, voc_tree: tuple[Path, Path], coco_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = prepare_args(kind, voc_tree, coco_tree, tmp_path, out)
    assert prepare_main(args) == 0 and prepare_main(args) == 0  # a rerun completes its own root
    assert (out / RECORD).is_file() and (out / SPLITS / "train.txt").is_file()
    # a file of the user's where the command writes one, that its record does not list
    (out / "classes.json").unlink()
    record = json.loads((out / RECORD).read_text())
    record["files"].remove("classes.json")
    (out / RECORD).write_text(json.dumps(record))
    (out / "classes.json").write_text("my classes")
    capsys.readouterr()
    assert prepare_main(args) == 2
    one_line_error(capsys, f"{out / 'classes.json'} was not written by `epspp prepare {kind}`", "choose another --out")
    assert (out / "classes.json").read_text() == "my classes"
    # the record of another command
    assert prepare_main(prepare_args("coco" if kind != "coco" else "voc", voc_tree, coco_tree, tmp_path, out)) == 2
    one_line_error(capsys, f"was written by `epspp prepare {kind}`")


def test_prepare_completes_a_root_of_an_older_epspp(
    voc_tree: tuple[Path, Path], coco_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = prepare_args("coco", voc_tree, coco_tree, tmp_path, out)
    assert prepare_main(args) == 0
    (out / RECORD).unlink()  # a root made before the record existed: its classes.json names COCO's classes
    (out / SPLITS / "val_1000.txt").unlink()
    assert prepare_main(args) == 0
    assert (out / SPLITS / "val_1000.txt").is_file() and (out / RECORD).is_file()


@pytest.mark.parametrize("kind", ["synthetic", "pretrain-corpus"])
def test_generated_roots_refuse_a_folder_of_the_users(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert prepare_main([kind, "--root", str(root), *extra]) == 2
        one_line_error(capsys, f"{root} exists and is not a", "choose an empty or new folder")
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_prepare_folder_refuses_an_id_with_two_image_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = folder_inputs(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    assert (
        prepare_main(["folder", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "out")]) == 2
    )
    one_line_error(capsys, "image id 'a' has two files", "a.jpg and a.png", "keep one")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("command", "flag", "value", "message"),
    [
        ("folder", "--val-fraction", "1.5", "--val-fraction must be within (0, 1), got 1.5"),
        ("folder", "--val-fraction", "nan", "--val-fraction must be within (0, 1), got nan"),
        ("synthetic", "--missing-part-rate", "nan", "error: --missing-part-rate must be within [0, 1], got nan"),
        ("synthetic", "--labeled-fraction", "-0.1", "error: --labeled-fraction must be within [0, 1], got -0.1"),
        ("synthetic", "--num-train", "0", "error: --num-train and --num-val must be >= 1, got 0, 200"),
        ("pretrain-corpus", "--image-size", "8", "error: --image-size must be in [32, 4096], got 8"),
    ],
)
def test_prepare_checks_rates_and_fractions_before_writing(
    command: str, flag: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = folder_inputs(tmp_path)
    inputs = ["--images", str(images), "--labels", str(labels)] if command == "folder" else []
    assert prepare_main([command, *inputs, "--out" if inputs else "--root", str(tmp_path / "out"), flag, value]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ render, evaluate, convert-weights
@pytest.fixture
def masks(synthetic_root: Path, tmp_path: Path) -> Path:
    """A folder of predicted masks: two ground-truth masks of the synthetic dataset."""
    folder = tmp_path / "pred"
    folder.mkdir()
    for image_id in split_ids(synthetic_root, "train")[:2]:
        shutil.copy(synthetic_root / "SegmentationClassAug" / f"{image_id}.png", folder)
    return folder


def test_render_replaces_only_its_own_overview(
    synthetic_root: Path, masks: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    figure = tmp_path / "figure.png"
    write_png(figure, np.zeros((4, 4)))
    args = ["--pred-dir", str(masks), "--root", str(synthetic_root), "--num", "2"]
    assert render_main([*args, "--out", str(figure)]) == 2
    one_line_error(capsys, f"--out {figure} exists and was not written by `epspp render`", "--overwrite")
    assert np.array(Image.open(figure)).shape == (4, 4)
    assert render_main(args) == 0 and render_main(args) == 0  # PRED_DIR/overview.png, then its rerun
    assert (
        render_main([*args, "--out", str(figure), "--overwrite"]) == 0
        and render_main([*args, "--out", str(figure)]) == 0
    )
    capsys.readouterr()
    inside = synthetic_root / "overview.png"
    assert render_main([*args, "--out", str(inside)]) == 2
    one_line_error(capsys, f"--out {inside} is inside the dataset root")
    assert not inside.exists()


def test_render_of_a_dataset_mask_folder_does_not_write_into_it(
    synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    assert render_main(["--pred-dir", str(synthetic_root / "SegmentationClassAug"), "--root", str(synthetic_root)]) == 2
    one_line_error(capsys, "--out (default PRED_DIR/overview.png)", "is inside the dataset root")
    assert not (synthetic_root / "SegmentationClassAug" / "overview.png").exists()


def test_evaluate_json_replaces_only_its_own_report_and_never_writes_into_the_dataset(
    synthetic_root: Path, masks: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--pred-dir", str(masks), "--root", str(synthetic_root), "--split", "labeled_10pct"]
    for image_id in split_ids(synthetic_root, "labeled_10pct"):
        shutil.copy(synthetic_root / "SegmentationClassAug" / f"{image_id}.png", masks)
    manifest = masks / "manifest.json"
    manifest.write_text('{"count": 2}')
    assert evaluate_main([*args, "--json", str(manifest)]) == 2
    one_line_error(capsys, f"--json {manifest} exists and was not written by `epspp evaluate`", "--overwrite")
    assert manifest.read_text() == '{"count": 2}'
    before = snapshot(synthetic_root)
    classes = synthetic_root / "classes.json"
    assert evaluate_main([*args, "--json", str(classes), "--overwrite"]) == 2
    one_line_error(capsys, f"--json {classes} is inside the dataset root")
    assert snapshot(synthetic_root) == before
    report = tmp_path / "scores.json"
    assert evaluate_main([*args, "--json", str(report)]) == 0 and evaluate_main([*args, "--json", str(report)]) == 0
    assert evaluate_main([*args, "--json", str(manifest), "--overwrite"]) == 0
    assert '"miou"' in manifest.read_text()


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "nan", "0", "1", "inf"])
def test_evaluate_refuses_thresholds_outside_0_1_before_reading(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        evaluate_main(
            [
                "--pred-dir",
                str(tmp_path / "none"),
                "--root",
                str(tmp_path / "none"),
                "--split",
                "train",
                "--bg-thresholds",
                "0.2",
                bad,
            ]
        )
    assert exit_.value.code == 2
    assert f"argument --bg-thresholds: {bad} is not in (0, 1)" in capsys.readouterr().err


def test_convert_weights_never_replaces_its_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "resnet38d.params"
    source.write_bytes(b"weights")
    assert convert_main([str(source), str(tmp_path / "." / "resnet38d.params"), "--overwrite"]) == 2
    one_line_error(capsys, "is the source file", "choose another name")
    assert source.read_bytes() == b"weights"
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"mine")
    assert convert_main([str(source), str(mine)]) == 2
    one_line_error(capsys, f"{mine} exists", "--overwrite")
    assert mine.read_bytes() == b"mine"


# ------------------------------------------------------------------ no silent choice
def test_an_image_folder_names_what_it_does_not_read(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "new"
    (folder / "more").mkdir(parents=True)
    image = Image.open(synthetic_root / "JPEGImages" / "val_000000.jpg").convert("RGB")
    image.save(folder / "a.jpg")
    image.save(folder / "more" / "b.jpg")
    (folder / "notes.txt").write_text("x")
    assert ImageFolderDataset(folder, 5).ids == ["a"]
    err = capsys.readouterr().err
    assert "skipped 1 subfolder(s), e.g. more/ (their images are not read)" in err and "e.g. notes.txt" in err
    image.save(folder / "a.png")
    with pytest.raises(DatasetError, match="image id 'a' has two files .*: a.jpg and a.png: keep one"):
        ImageFolderDataset(folder, 5)


def test_check_notes_saliency_maps_that_are_all_0_or_all_1(dataset: Path, capsys: pytest.CaptureFixture) -> None:
    ids = split_ids(dataset, "val")
    for image_id, value in zip(ids, (0, 0, 255), strict=False):
        path = dataset / "saliency" / f"{image_id}.png"
        write_png(path, np.full(np.array(Image.open(path)).shape, value))
    assert check_main(["--data.root", str(dataset), "--splits", "val"]) == 0
    out = capsys.readouterr().out
    assert f"note: 2 of {len(ids)} saliency maps are all 0 (no salient pixel), e.g. " in out
    assert f"note: 1 of {len(ids)} saliency maps are all 1 (every pixel salient), e.g. " in out


# ------------------------------------------------------------------ OutputRecord and stage markers, called directly
def test_an_output_record_refuses_a_file_another_command_and_an_unreadable_record(tmp_path: Path) -> None:
    from epspp.errors import OutputError
    from epspp.runs.ownership import OutputRecord

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as error:
        OutputRecord.open(tmp_path / "file", "epspp prepare coco", "--out")
    assert str(error.value) == f"--out {tmp_path / 'file'} is a file: give a folder"
    out = tmp_path / "out"
    out.mkdir()
    for text in ("{broken", '{"files": []}', "[1]"):  # not JSON, no command, not an object
        (out / RECORD).write_text(text)
        with pytest.raises(OutputError, match=rf"^cannot read {out / RECORD} \(.*\): it is not a record of epspp; "):
            OutputRecord.open(out, "epspp prepare coco", "--out")
    (out / RECORD).write_text('{"command": "epspp prepare voc", "files": ["a"]}')
    with pytest.raises(OutputError) as error:
        OutputRecord.open(out, "epspp prepare coco", "--out")
    assert str(error.value) == (
        f"--out {out} was written by `epspp prepare voc` ({out / RECORD}), not `epspp prepare coco`: choose "
        "another --out"
    )
    record = OutputRecord.open(out, "epspp prepare voc", "--out")
    assert record.files == {"a"} and not record.adopted
    assert OutputRecord.open(out, "epspp prepare voc", "--out", per_file=False).files is None  # the whole folder
    (out / "a").write_text("mine")
    (out / "b").write_text("not listed")
    record.claim([out / "a"])  # listed: the command's
    with pytest.raises(OutputError) as error:
        record.claim([out / "b"])
    assert str(error.value) == (
        f"{out / 'b'} was not written by `epspp prepare voc` (it is not in {out / RECORD}): move it, or choose "
        "another --out"
    )
    assert json.loads((out / RECORD).read_text()) == {"command": "epspp prepare voc", "files": ["a"]}


def test_a_stage_marker_is_a_stage_json_of_an_epspp_command(tmp_path: Path) -> None:
    from epspp.runs.ownership import holds_stage_marker

    assert not holds_stage_marker(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    for text in ("{broken", '{"command": []}', '{"command": "epspp"}', '{"command": ["python", "fit"]}', "[1]"):
        (tmp_path / "a" / "b" / "stage.json").write_text(text)
        assert not holds_stage_marker(tmp_path), text
    (tmp_path / "a" / "stage.json").write_text('{"command": ["epspp", "fit", "--config", "x.yaml"]}')
    assert holds_stage_marker(tmp_path)  # nested: found, after the unreadable one


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_a_folder_an_older_run_made_is_adopted_and_one_of_empty_folders_is_new(tmp_path: Path) -> None:
    from epspp.errors import OutputError
    from epspp.runs.ownership import OutputRecord

    out = tmp_path / "out"
    (out / "a" / "b").mkdir(parents=True)  # empty folders only (an older epspp's failed run): new
    record = OutputRecord.open(out, "epspp x", "--out")
    assert (record.files, record.adopted) == (set(), False)
    (out / ".hidden").write_text("h")
    (out / "b.txt").write_text("b")
    with pytest.raises(OutputError) as error:  # the example named is a visible entry: hidden ones come last
        OutputRecord.open(out, "epspp x", "--out")
    assert str(error.value) == (
        f"--out {out} holds files that `epspp x` did not write (e.g. {out / 'a'}): choose an empty or new --out "
        "(epspp never replaces other files)"
    )
    with pytest.raises(OutputError):
        OutputRecord.open(out, "epspp x", "--out", legacy=lambda folder: False)
    adopted = OutputRecord.open(out, "epspp x", "--out", legacy=lambda folder: folder == out)
    assert adopted.adopted and adopted.files == set()
    adopted.claim([out / "b.txt"])  # an older run's file: adopted, listed from now on
    assert json.loads((out / RECORD).read_text()) == {"command": "epspp x", "files": ["b.txt"]}
    whole = OutputRecord.open(out, "epspp x", "--out", per_file=False)
    whole.claim()
    assert json.loads((out / RECORD).read_text()) == {"command": "epspp x"}


def test_an_identical_record_is_not_rewritten(tmp_path: Path) -> None:
    import os

    from epspp.runs.ownership import OutputRecord

    record = OutputRecord.open(tmp_path / "out", "epspp x", "--out")
    record.claim([tmp_path / "out" / "f"])
    path = tmp_path / "out" / RECORD
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    record.claim([tmp_path / "out" / "f"])
    assert path.stat().st_mtime_ns == 1_000_000_000
    record.claim([tmp_path / "out" / "g"])
    assert path.stat().st_mtime_ns != 1_000_000_000 and json.loads(path.read_text())["files"] == ["f", "g"]


def test_an_output_file_is_replaced_only_when_ours_or_overwritten(tmp_path: Path) -> None:
    from epspp.errors import OutputError
    from epspp.runs.ownership import check_output_file

    path = tmp_path / "f.png"
    check_output_file(path, "epspp y", "--out", lambda p: False)  # absent: free
    path.write_text("x")
    with pytest.raises(OutputError) as error:
        check_output_file(path, "epspp y", "--out", lambda p: False)
    assert str(error.value) == (
        f"--out {path} exists and was not written by `epspp y`: choose another --out, or pass --overwrite to replace it"
    )
    check_output_file(path, "epspp y", "--out", lambda p: p == path)
    check_output_file(path, "epspp y", "--out", lambda p: False, overwrite=True)
    with pytest.raises(OutputError, match=f"^--out {tmp_path} is a folder: give a file name$"):
        check_output_file(tmp_path, "epspp y", "--out", lambda p: True, overwrite=True)
