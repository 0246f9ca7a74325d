"""Background-threshold sweep over saved score maps (epspp.evaluate.sweep_bg_threshold) on hand-made files."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from epspp.cli import main
from epspp.cli.evaluate import evaluate_main
from epspp.data.classes import write_classes
from epspp.data.io import DatasetError, write_mask_png
from epspp.evaluate import evaluate_folder, sweep_bg_threshold, sweep_to_json, threshold_choice

# one 2x2 image, classes background / a / b; ground truth [[bg, a], [a, bg]] -> image label {a}
TARGET = np.array([[0, 1], [1, 0]], np.uint8)
SCORES = np.array(
    [
        [[0.2, 0.2], [0.2, 0.2]],  # background channel as written (bg_threshold 0.2)
        [[0.1, 0.5], [0.3, 0.9]],
    ],  # class a
    np.float16,
)
# threshold -> predicted mask -> IoU by hand:
#   0.05: all a               bg 0/2, a 2/4              -> mIoU 1/4
#   0.2 : [[bg, a], [a, a]]   bg 1/2, a 2/3              -> mIoU 7/12
#   0.4 : [[bg, a], [bg, a]]  bg 1/3, a 1/3              -> mIoU 1/3
#   0.95: all background      bg 2/4, a 0/2              -> mIoU 1/4
EXPECTED = {0.05: 1 / 4, 0.2: 7 / 12, 0.4: 1 / 3, 0.95: 1 / 4}


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, out = tmp_path / "data", tmp_path / "masks"
    for folder in (root / "ImageSets" / "Segmentation", root / "SegmentationClassAug", out / "scores"):
        folder.mkdir(parents=True)
    write_classes(root, ["background", "a", "b"])
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("img0\n")
    write_mask_png(root / "SegmentationClassAug" / "img0.png", TARGET)
    write_mask_png(out / "img0.png", np.array([[0, 1], [1, 1]], np.uint8))  # the masks at 0.2
    np.save(out / "scores" / "img0.npy", SCORES)
    return root, out


def test_sweep_matches_hand_computed_miou(tree: tuple[Path, Path]) -> None:
    root, out = tree
    thresholds = list(EXPECTED)
    result = sweep_bg_threshold(out, root, "train", thresholds)
    assert result["evaluated"] == 1
    for threshold, metric in zip(thresholds, result["metrics"], strict=True):
        assert float(metric.compute()["miou"]) == pytest.approx(EXPECTED[threshold]), threshold
    summary = sweep_to_json(thresholds, result["metrics"])
    assert summary == {"0.05": 25.0, "0.2": round(100 * 7 / 12, 3), "0.4": round(100 / 3, 3), "0.95": 25.0}


# a val image whose best threshold is 0.4, not train's 0.2: val ground truth as train's, class-a scores
#   0.05: all a -> 1/4;  0.2: [[a, a], [a, bg]] -> bg 1/2, a 2/3 -> 7/12;  0.4: [[bg, a], [a, bg]] -> 1;  0.95: 1/4
VAL_SCORES = np.array([[[0.2, 0.2], [0.2, 0.2]], [[0.3, 0.5], [0.5, 0.1]]], np.float16)


def add_val(root: Path, tmp_path: Path) -> Path:
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("img1\n")
    write_mask_png(root / "SegmentationClassAug" / "img1.png", TARGET)
    val = tmp_path / "val_masks"
    (val / "scores").mkdir(parents=True)
    write_mask_png(val / "img1.png", np.array([[1, 1], [1, 0]], np.uint8))
    np.save(val / "scores" / "img1.npy", VAL_SCORES)
    return val


def test_the_threshold_is_chosen_on_another_split_and_reported_on_the_scored_one(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, out = tree
    val = add_val(root, tmp_path)
    thresholds = [0.05, 0.2, 0.4, 0.95]
    train = sweep_bg_threshold(out, root, "train", thresholds)
    chooser = sweep_bg_threshold(val, root, "val", thresholds)
    names = ["background", "a", "b"]
    choice = threshold_choice(thresholds, chooser["metrics"], train["metrics"], "val", "train", names)
    assert choice["chosen_bg_threshold"] == 0.4 and choice["chosen_on"] == "val" and not choice["oracle"]
    assert choice["choice_sweep"]["0.4"] == 100.0
    assert choice["chosen_bg_threshold_miou"] == round(100 / 3, 3)  # train at val's choice, not train's best 58.33
    assert choice["chosen_per_class_iou"] == {"background": round(100 / 3, 3), "a": round(100 / 3, 3), "b": None}
    oracle = threshold_choice(thresholds, train["metrics"], train["metrics"], "train", "train", names)
    assert oracle["oracle"] and oracle["chosen_bg_threshold"] == 0.2
    # a tie goes to the lowest threshold: 0.05 and 0.95 both give 1/4 on train; on a sweep of those two, 0.05
    tie = threshold_choice(
        [0.05, 0.95],
        sweep_bg_threshold(out, root, "train", [0.05, 0.95])["metrics"],
        sweep_bg_threshold(out, root, "train", [0.05, 0.95])["metrics"],
        "train",
        "train",
        ["background", "a", "b"],
    )
    assert tie["chosen_bg_threshold"] == 0.05


def test_evaluate_cli_marks_a_choice_on_the_scored_split_as_an_oracle(
    tree: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, out = tree
    scores = tmp_path / "scores.json"
    sweep = ["--pred-dir", str(out), "--root", str(root), "--split", "train", "--bg-thresholds", "0.05", "0.2", "0.4"]
    assert evaluate_main([*sweep, "--json", str(scores)]) == 0
    saved = json.loads(scores.read_text())
    assert saved["miou"] == saved["bg_threshold_sweep"]["0.2"] == round(100 * 7 / 12, 3)  # the PNGs are the 0.2 masks
    assert saved["oracle"] is True and saved["chosen_bg_threshold"] == 0.2
    printed = capsys.readouterr().out
    assert "0.2             58.33  <- ORACLE: chosen on the scored split train itself" in printed
    # chosen on val, reported on train
    val = add_val(root, tmp_path)
    assert evaluate_main([*sweep, "--select-pred-dir", str(val), "--select-split", "val", "--json", str(scores)]) == 0
    saved = json.loads(scores.read_text())
    assert saved["oracle"] is False and saved["chosen_on"] == "val" and saved["chosen_bg_threshold"] == 0.4
    assert "0.4             33.33  <- chosen on val (100.00 there)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate_main(["--pred-dir", str(out), "--root", str(root), "--split", "train", "--select-split", "val"])


def test_refined_or_missing_scores_are_refused(tree: tuple[Path, Path]) -> None:
    root, out = tree
    (out / "manifest.json").write_text(json.dumps({"config": {"model": {"refine": "pamr"}}}))
    with pytest.raises(DatasetError, match="refined with pamr"):
        sweep_bg_threshold(out, root, "train", [0.2])
    (out / "manifest.json").write_text(json.dumps({"config": {"model": {"refine": "none"}}}))
    (out / "scores" / "img0.npy").unlink()
    with pytest.raises(DatasetError, match=r"score map .*img0.npy is missing"):
        sweep_bg_threshold(out, root, "train", [0.2])
    np.save(out / "scores" / "img0.npy", SCORES[:, :1])
    with pytest.raises(DatasetError, match=r"has shape \(2, 1, 2\), expected \(2, 2, 2\)"):
        sweep_bg_threshold(out, root, "train", [0.2])
    (out / "scores" / "img0.npy").unlink()
    (out / "scores").rmdir()
    with pytest.raises(DatasetError, match="save_scores true"):
        sweep_bg_threshold(out, root, "train", [0.2])


def _scored_tree(tmp_path: Path, target: np.ndarray, pred: np.ndarray) -> tuple[Path, Path]:
    root, out = tmp_path / "data", tmp_path / "masks"
    for folder in (root / "ImageSets" / "Segmentation", root / "SegmentationClassAug", out):
        folder.mkdir(parents=True)
    write_classes(root, ["background", "a", "b"])
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("img0\nimg1\n")
    for image_id, t, p in (("img0", target, pred), ("img1", target.T.copy(), pred.T.copy())):
        write_mask_png(root / "SegmentationClassAug" / f"{image_id}.png", t)
        write_mask_png(out / f"{image_id}.png", p)
    return root, out


def test_folder_confusion_by_hand_on_non_square_masks(tmp_path: Path) -> None:
    # 2x3 masks (and their 3x2 transposes as a second id): 255 in the target is not scored, 255 in the
    # prediction is a miss of the target's class (column K)
    target = np.array([[0, 1, 255], [2, 1, 0]], np.uint8)
    pred = np.array([[0, 255, 1], [2, 1, 1]], np.uint8)
    root, out = _scored_tree(tmp_path, target, pred)
    result = evaluate_folder(out, root, "train")
    assert result["evaluated"] == 2
    # per id: row 0 = t0: p0, p1; row 1 = t1: p255 (column 3), p1; row 2 = t2: p2
    expected = 2 * torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]])
    assert torch.equal(result["metric"].confusion, expected)


@pytest.mark.parametrize(
    ("target", "pred", "message"),
    [
        (
            np.array([[0, 3, 1]], np.uint8),
            np.array([[0, 1, 1]], np.uint8),
            r"SegmentationClassAug/img0.png has values \[3\]",
        ),
        (np.array([[0, 1, 1]], np.uint8), np.array([[0, 9, 254]], np.uint8), r"masks/img0.png has values \[9, 254\]"),
        (np.array([[0, 1, 1]], np.uint8), np.array([[0, 1]], np.uint8), r"masks/img0.png is 2x1 but the ground truth"),
    ],
)
def test_folder_refuses_bad_values_and_sizes_naming_the_file(
    tmp_path: Path, target: np.ndarray, pred: np.ndarray, message: str
) -> None:
    root, out = _scored_tree(tmp_path, target, pred)
    with pytest.raises(DatasetError, match=message):
        evaluate_folder(out, root, "train")


def test_a_score_equal_to_the_threshold_goes_to_the_background(tree: tuple[Path, Path]) -> None:
    # at 0.5 the class-a score 0.5 of pixel (0, 1) ties with the background: [[bg, bg], [bg, a]]
    #   bg: 1 right of 3 predicted + 2 true -> 1/4; a: 0/3 -> mIoU 1/8 (a tie to a would give 1/3)
    root, out = tree
    metric = sweep_bg_threshold(out, root, "train", [0.5])["metrics"][0]
    assert float(metric.compute()["miou"]) == pytest.approx(1 / 8)


def test_an_image_without_object_labels_is_all_background_at_every_threshold(tree: tuple[Path, Path]) -> None:
    """Only the background channel is written for it (one channel, not one per class): no object to score, the
    best object score 0 everywhere (boundary sweep: one class listed, the background)."""
    from epspp.evaluate import object_scores

    root, out = tree
    write_mask_png(root / "SegmentationClassAug" / "img0.png", np.zeros((2, 3), np.uint8))  # 3x2, no object
    np.save(out / "scores" / "img0.npy", np.full((1, 2, 3), 0.2, np.float16))
    [(image_id, best, objects, target)] = list(object_scores(out, root, "train", ["background", "a", "b"]))
    assert image_id == "img0" and best.tolist() == [[0.0] * 3] * 2 and objects.tolist() == [[0] * 3] * 2
    assert target.tolist() == [[0] * 3] * 2


def evaluate_sweep(root: Path, out: Path, *extra: str) -> list[str]:
    """``epspp evaluate --bg-thresholds 0.2`` of ``out`` as the console script runs it."""
    return [
        "evaluate",
        "--pred-dir",
        str(out),
        "--root",
        str(root),
        "--split",
        "train",
        "--bg-thresholds",
        "0.2",
        *extra,
    ]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("scores/img0.npy", b"", "No data left in file"),  # empty (a killed writer of an older epspp)
        ("scores/img0.npy", b"\x93NUMPY\x01\x00", "npy"),  # truncated header
        ("scores/img0.npy", b'{"not": "numpy"}', "pickled"),  # another format under the name
        ("manifest.json", b'{"config": {"model": ', "Expecting value"),  # truncated JSON
        ("manifest.json", b"[1, 2]", "not a manifest of the mask writer"),  # valid JSON, not a manifest
    ],
)
def test_a_damaged_score_map_or_manifest_is_one_line_naming_it(
    tree: tuple[Path, Path], capsys: pytest.CaptureFixture, name: str, content: bytes, reason: str
) -> None:
    root, out = tree
    (out / name).write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        main(evaluate_sweep(root, out))
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("epspp evaluate: error: ") and str(out / name) in error and reason in error


def test_a_full_disk_while_writing_json_is_one_line_and_leaves_no_temporary(
    tree: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tree
    report = tmp_path / "reports" / "scores.json"
    report.parent.mkdir()
    real_write = Path.write_text

    def full_disk(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if self.parent == report.parent:  # the device fills up half-way through the file
            real_write(self, text[: len(text) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(SystemExit) as exit_:
        main(evaluate_sweep(root, out, "--json", str(report)))
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error == (
        f"epspp evaluate: error: cannot write --json {report}: No space left on device: free space or "
        "choose another folder (an earlier file there is kept)\n"
    )
    assert list(report.parent.iterdir()) == []  # neither the report nor its temporary file


def test_evaluate_refuses_a_mask_folder_of_another_dataset(
    tree: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, out = tree
    other = tmp_path / "other"
    record = {"dataset": {"root": str(other), "ids_sha256": None}, "checkpoint_sha256": None}
    (out / "provenance.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as exit_:
        main(evaluate_sweep(root, out))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"epspp evaluate: error: --pred-dir {out} holds masks of the dataset {other} (see {out / 'provenance.json'}), "
        f"not of --root {root.resolve()}: predict the masks of {root.resolve()}, or give the folder of its masks\n"
    )
    record["dataset"]["root"] = str(root.resolve())  # type: ignore[index]
    (out / "provenance.json").write_text(json.dumps(record))
    assert evaluate_main(evaluate_sweep(root, out)[1:]) == 0


def test_the_sweep_reads_ground_truth_holding_the_last_class(tree: tuple[Path, Path]) -> None:
    """Class b, the last of background / a / b, is a legal ground truth value (3x2 image, labels {a, b}).

    At threshold 0.5 the objects' argmax gives [[bg, b, b], [a, bg, b]] against [[bg, b, b], [a, bg, bg]]:
    bg 2/3, a 1/1, b 2/3 -> mIoU 7/9."""
    root, out = tree
    write_mask_png(root / "SegmentationClassAug" / "img0.png", np.array([[0, 2, 2], [1, 0, 0]], np.uint8))
    scores = [
        [[0.2] * 3] * 2,  # background
        [[0.1, 0.2, 0.1], [0.8, 0.1, 0.1]],  # a
        [[0.1, 0.6, 0.9], [0.1, 0.1, 0.7]],  # b
    ]
    np.save(out / "scores" / "img0.npy", np.array(scores, np.float16))
    result = sweep_bg_threshold(out, root, "train", [0.5])
    assert result["evaluated"] == 1
    assert float(result["metrics"][0].compute()["miou"]) == pytest.approx(7 / 9)
