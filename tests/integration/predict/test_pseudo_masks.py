"""Stage 2 as a user runs it: `epspp fit` a tiny localization network, `epspp predict` pseudo-masks,
`epspp evaluate` them; resume, overwrite, images of different sizes, PAMR, score maps, bad input.

One 2-step checkpoint is trained per session (tests/conftest.py) and shared by every test; the main
`predict` runs as a subprocess, the other commands mostly in-process (``in_process``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fixtures.cli import CONFIGS, clean_error, in_process, ok, predict_args, run_epspp
from PIL import Image

from epspp.data.classes import read_classes, voc_palette, write_classes
from epspp.data.io import write_mask_png
from epspp.evaluate import evaluate_folder, scores_to_json

DEMO = CONFIGS / "demo" / "scratch"
SPLITS = Path("ImageSets") / "Segmentation"


def epspp(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m epspp ARGS`` in a subprocess, as a user runs it (the result is checked by the caller)."""
    return run_epspp(list(args), cwd=cwd, check=False)


def predict(root: Path, ckpt: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return epspp(*predict_args(root, ckpt, out, *extra), cwd=out.parent)


def split_ids(root: Path, split: str) -> list[str]:
    return (root / SPLITS / f"{split}.txt").read_text().split()


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def pngs(out: Path) -> set[str]:
    return {p.stem for p in out.glob("*.png")}


def copy_root(root: Path, dest: Path) -> Path:
    return Path(shutil.copytree(root, dest, ignore=shutil.ignore_patterns(".cache")))


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def checkpoint(localization_checkpoint: Path) -> Path:
    """The session's 2-step EPS++ localization checkpoint (tests/conftest.py)."""
    return localization_checkpoint


@pytest.fixture(scope="module")
def predicted(synthetic_root: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Pseudo-masks of the train split, and the predict run's output."""
    out = tmp_path_factory.mktemp("pseudo") / "masks"
    return out, ok(predict(synthetic_root, checkpoint, out, "--trainer.deterministic", "true"))


# ----------------------------------------------------------- the main run
def test_one_png_per_train_id_with_the_image_size(synthetic_root: Path, predicted: tuple) -> None:
    out, _ = predicted
    ids = split_ids(synthetic_root, "train")
    assert pngs(out) == set(ids)
    num_classes = len(read_classes(synthetic_root))
    for image_id in ids:
        with Image.open(out / f"{image_id}.png") as image:
            assert image.mode == "P"
            assert image.getpalette() == voc_palette().ravel().tolist()
            assert image.size == image_size(synthetic_root / "JPEGImages" / f"{image_id}.jpg")
            values = np.unique(np.array(image))
        assert values.max() < num_classes
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [], "temporary files left behind"
    # Lightning's record of the run goes beside the masks, not into the working directory
    assert (out / "config.yaml").is_file() and not (out.parent / "config.yaml").exists()


def printed_iou_rows(stdout: str) -> dict[str, str]:
    """The `name value` rows of the IoU table a command printed."""
    return dict(line.split() for line in stdout.splitlines() if len(line.split()) == 2)


def test_manifest_records_checkpoint_counts_and_miou(synthetic_root: Path, checkpoint: Path, predicted: tuple) -> None:
    out, result = predicted
    info = manifest(out)
    ids = split_ids(synthetic_root, "train")
    assert info["split"] == "train"
    assert info["count"] == info["split_size"] == len(ids) == 20
    assert info["evaluated"] == 20
    assert info["written_this_run"] == 20
    assert info["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert Path(info["checkpoint"]).resolve() == checkpoint.resolve()
    assert info["config"]["model"]["num_classes"] == 5
    assert info["config"]["data"]["root"] == str(synthetic_root)
    assert info["config"]["writer"]["output_dir"] == str(out)
    names = read_classes(synthetic_root)
    assert list(info["per_class_iou"]) == names
    # the same numbers as scoring the folder afterwards
    expected = scores_to_json(evaluate_folder(out, synthetic_root, "train")["metric"].compute(), names)
    assert info["miou"] == expected["miou"]
    assert info["per_class_iou"] == expected["per_class_iou"]
    # ... and printed as a table (2 decimals there, 3 in the manifest)
    rows = printed_iou_rows(result.stdout)
    assert float(rows["mIoU"]) == pytest.approx(info["miou"], abs=0.006)
    for name in names:
        assert name in rows


# ------------------------------------------------------------ epspp evaluate
def test_evaluate_cli_prints_the_same_table(
    synthetic_root: Path, predicted: tuple, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out, _ = predicted
    scores = tmp_path / "scores.json"
    result = ok(
        in_process(
            capfd,
            "evaluate",
            "--pred-dir",
            out,
            "--root",
            synthetic_root,
            "--split",
            "train",
            "--json",
            scores,
            "--bg-thresholds",
            "0.2",
            "0.5",
        )
    )
    info = manifest(out)
    saved = json.loads(scores.read_text())
    assert saved["miou"] == info["miou"]
    # the demo config saves the score maps: swept at the prediction's own threshold they give its masks
    assert info["config"]["model"]["bg_threshold"] == 0.2
    assert saved["bg_threshold_sweep"]["0.2"] == pytest.approx(info["miou"], abs=0.5)  # float16 scores
    assert "background threshold sweep" in result.stdout
    rows = printed_iou_rows(result.stdout)
    assert float(rows["mIoU"]) == pytest.approx(info["miou"], abs=0.006)
    for name, iou in info["per_class_iou"].items():  # the table rounds to 2 decimals, the JSON to 3
        assert rows[name] == "n/a" if iou is None else float(rows[name]) == pytest.approx(iou, abs=0.006)


def test_evaluate_cli_missing_and_mis_sized_predictions(
    synthetic_root: Path, predicted: tuple, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out, _ = predicted
    folder = Path(shutil.copytree(out, tmp_path / "preds"))
    ids = split_ids(synthetic_root, "train")
    args = ("--root", synthetic_root, "--split", "train")

    missing = folder / f"{ids[3]}.png"
    missing.unlink()
    clean_error(in_process(capfd, "evaluate", "--pred-dir", folder, *args), str(missing))
    shutil.copy(out / missing.name, missing)

    wrong = folder / f"{ids[5]}.png"
    write_mask_png(wrong, np.zeros((10, 13), np.uint8))
    clean_error(in_process(capfd, "evaluate", "--pred-dir", folder, *args), str(wrong), "13x10")

    clean_error(in_process(capfd, "evaluate", "--pred-dir", tmp_path / "nowhere", *args), "nowhere")


# ----------------------------------------------------------- resume / overwrite
def test_resume_writes_only_the_missing_masks_and_overwrite_rewrites(
    synthetic_root: Path, checkpoint: Path, predicted: tuple, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = Path(shutil.copytree(predicted[0], tmp_path / "masks"))  # a finished run of the train split
    ids = split_ids(synthetic_root, "train")
    first = manifest(out)

    deleted = ids[:3]
    for image_id in deleted:
        (out / f"{image_id}.png").unlink()
    (out / "manifest.json").unlink()
    kept = {i: (out / f"{i}.png").stat() for i in ids[3:]}
    kept_bytes = {i: (out / f"{i}.png").read_bytes() for i in ids[3:]}

    result = ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out)))
    assert "predicting the 3 missing" in result.stdout
    assert pngs(out) == set(ids)
    for image_id, stat in kept.items():
        now = (out / f"{image_id}.png").stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), f"{image_id} was rewritten"
        assert (out / f"{image_id}.png").read_bytes() == kept_bytes[image_id]
    for image_id in deleted:  # the same network gives the same masks
        assert np.array_equal(read_png(out / f"{image_id}.png"), read_png(predicted[0] / f"{image_id}.png"))
    info = manifest(out)
    assert info["written_this_run"] == 3
    assert info["count"] == info["split_size"] == len(ids)
    assert info["miou"] == first["miou"]

    # nothing left to do: no mask is touched, the manifest is still written
    (out / "manifest.json").unlink()
    stats = {i: (out / f"{i}.png").stat().st_mtime_ns for i in ids}
    ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out)))
    assert {i: (out / f"{i}.png").stat().st_mtime_ns for i in ids} == stats
    info = manifest(out)
    assert info["written_this_run"] == 0 and info["count"] == len(ids)
    assert info["miou"] == first["miou"]

    # overwrite: true rewrites every mask of the predicted split (here the 2 ids of labeled_10pct)
    labeled = split_ids(synthetic_root, "labeled_10pct")
    ok(
        in_process(
            capfd,
            *predict_args(
                synthetic_root,
                checkpoint,
                out,
                "--data.predict_split",
                "labeled_10pct",
                "--pseudo_masks.overwrite",
                "true",
            ),
        )
    )
    for image_id in ids:
        changed = (out / f"{image_id}.png").stat().st_mtime_ns != stats[image_id]
        assert changed == (image_id in labeled), image_id
    assert manifest(out)["written_this_run"] == len(labeled)


# ------------------------------------ images of different sizes, no label, no ground truth
def _mixed_tree(source: Path, dest: Path) -> tuple[Path, list[str]]:
    """A VOC-layout root (labels in cls_labels.npy) of three images of the synthetic train split:

    0: resized to 56x40 (WxH), with ground truth; 1: resized to 40x56, without ground truth;
    2: 48x48 with nothing labelled (label all zero, ground truth all background).
    """
    ids = split_ids(source, "train")[:3]
    for folder in ("JPEGImages", "SegmentationClassAug", str(SPLITS)):
        (dest / folder).mkdir(parents=True)
    write_classes(dest, read_classes(source))
    labels = {}
    for index, (image_id, size) in enumerate(zip(ids, [(56, 40), (40, 56), (48, 48)], strict=True)):
        with Image.open(source / "JPEGImages" / f"{image_id}.jpg") as image:
            image.convert("RGB").resize(size, Image.BILINEAR).save(dest / "JPEGImages" / f"{image_id}.jpg")
        mask = read_png(source / "SegmentationClassAug" / f"{image_id}.png")
        if index == 2:
            mask = np.zeros_like(mask)
        label = np.zeros(len(read_classes(source)) - 1, np.float32)
        label[[v - 1 for v in np.unique(mask) if 0 < v < 255]] = 1.0
        labels[image_id] = label
        if index != 1:
            small = Image.fromarray(mask).resize(size, Image.NEAREST)
            write_mask_png(dest / "SegmentationClassAug" / f"{image_id}.png", np.array(small))
    np.save(dest / "cls_labels.npy", labels, allow_pickle=True)
    (dest / SPLITS / "train.txt").write_text("\n".join(ids) + "\n")
    return dest, ids


def test_resume_with_save_scores_predicts_the_ids_without_a_score_map(
    synthetic_root: Path, checkpoint: Path, predicted: tuple, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = Path(shutil.copytree(predicted[0], tmp_path / "masks"))
    ids = split_ids(synthetic_root, "train")
    assert {p.stem for p in (out / "scores").glob("*.npy")} == set(ids)
    for image_id in ids[:2]:
        (out / "scores" / f"{image_id}.npy").unlink()
    result = ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out)))
    assert "predicting the 2 missing" in result.stdout
    assert {p.stem for p in (out / "scores").glob("*.npy")} == set(ids)
    for image_id in ids[:2]:  # the same network gives the same masks
        assert np.array_equal(read_png(out / f"{image_id}.png"), read_png(predicted[0] / f"{image_id}.png"))
    assert manifest(out)["written_this_run"] == 2


def test_sizes_missing_ground_truth_and_unlabelled_image(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    root, ids = _mixed_tree(synthetic_root, tmp_path / "mixed")
    out = tmp_path / "out"
    result = ok(in_process(capfd, *predict_args(root, checkpoint, out)))
    assert [image_size(out / f"{i}.png") for i in ids] == [(56, 40), (40, 56), (48, 48)]  # never resized
    assert (read_png(out / f"{ids[2]}.png") == 0).all()  # nothing labelled: all background
    info = manifest(out)
    assert info["count"] == info["split_size"] == 3
    assert info["evaluated"] == 2  # the second image has no ground truth
    assert info["no_label_all_background"] == 1
    assert "miou" in info
    assert "no labelled class" in result.stdout


# ---------------------------------------------------------- PAMR and scores
@pytest.fixture(scope="module")
def refined(synthetic_root: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pamr") / "masks"
    ok(
        predict(
            synthetic_root,
            checkpoint,
            out,
            "--data.predict_split",
            "labeled_10pct",
            "--model.init_args.refine",
            "pamr",
            "--model.init_args.scales",
            "[1.0]",
            "--model.init_args.bg_threshold",
            "0.3",
            "--pseudo_masks.save_scores",
            "true",
        )
    )
    return out


def test_pamr_refinement_and_float16_scores(synthetic_root: Path, refined: Path, capfd: pytest.CaptureFixture) -> None:
    ids = split_ids(synthetic_root, "labeled_10pct")
    assert pngs(refined) == set(ids)
    labels = {i: np.unique(read_png(synthetic_root / "SegmentationClassAug" / f"{i}.png")) for i in ids}
    for image_id in ids:
        mask = read_png(refined / f"{image_id}.png")
        assert mask.shape == read_png(synthetic_root / "SegmentationClassAug" / f"{image_id}.png").shape
        present = [int(v) for v in labels[image_id] if 0 < v < 255]
        assert set(np.unique(mask).tolist()) <= {0, *present}  # background or a labelled class
        scores = np.load(refined / "scores" / f"{image_id}.npy")
        assert scores.dtype == np.float16
        assert scores.shape == (1 + len(present), *mask.shape)  # background first, then the labelled classes
        assert np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1.001
    assert manifest(refined)["count"] == len(ids)
    # PAMR refined the background channel too: a threshold sweep over these scores is refused
    swept = in_process(
        capfd,
        "evaluate",
        "--pred-dir",
        refined,
        "--root",
        synthetic_root,
        "--split",
        "labeled_10pct",
        "--bg-thresholds",
        "0.2",
        "0.4",
    )
    clean_error(swept, "refined with pamr", "refine none")


def test_inference_options_of_the_command_line_win_over_the_checkpoint(refined: Path) -> None:
    """The network comes from the checkpoint, the inference options from the config and the command line."""
    config = manifest(refined)["config"]["model"]
    assert (config["refine"], config["scales"], config["bg_threshold"]) == ("pamr", [1.0], 0.3)
    assert config["backbone_kwargs"] == {"channels": [8, 16, 32, 64], "stem_width": 8}  # from the checkpoint


# --------------------------------------------------------------- bad input
def _existing_mask(out: Path) -> bytes:
    out.mkdir(parents=True, exist_ok=True)
    write_mask_png(out / "train_000000.png", np.ones((48, 48), np.uint8))
    return (out / "train_000000.png").read_bytes()


def test_checkpoint_of_another_class_count(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    root = copy_root(synthetic_root, tmp_path / "four")
    write_classes(root, read_classes(root)[:-1])  # drop the last class: 4 object classes
    for path in (root / "SegmentationClassAug").glob("*.png"):
        mask = read_png(path)
        mask[mask == 5] = 0
        write_mask_png(path, mask)
    out = tmp_path / "out"
    before = _existing_mask(out)
    clean_error(in_process(capfd, *predict_args(root, checkpoint, out)), "epspp: error:", "5 object classes", "has 4")
    assert (out / "train_000000.png").read_bytes() == before
    assert pngs(out) == {"train_000000"}


def test_output_dir_that_is_a_file(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    clean_error(
        in_process(capfd, *predict_args(synthetic_root, checkpoint, out)), "epspp: error:", str(out), "is a file"
    )
    assert out.read_bytes() == b"precious"


def test_split_with_ids_without_image(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    root = copy_root(synthetic_root, tmp_path / "data")
    (root / SPLITS / "ghosts.txt").write_text("train_000000\nghost_0042\n")
    out = tmp_path / "out"
    before = _existing_mask(out)
    result = in_process(capfd, *predict_args(root, checkpoint, out, "--data.predict_split", "ghosts"))
    clean_error(result, "epspp: error:", "ghost_0042", "ghosts.txt")
    assert (out / "train_000000.png").read_bytes() == before


# ---------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_ddp_two_ranks_write_each_mask_once(synthetic_root: Path, checkpoint: Path, tmp_path: Path) -> None:
    root = copy_root(synthetic_root, tmp_path / "data")
    ids = split_ids(root, "val")[:5]  # odd: the ranks get 3 and 2
    (root / SPLITS / "five.txt").write_text("\n".join(ids) + "\n")
    out = tmp_path / "out"
    ok(
        predict(
            root,
            checkpoint,
            out,
            "--data.predict_split",
            "five",
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
        )
    )
    assert pngs(out) == set(ids)
    info = manifest(out)
    assert info["count"] == info["evaluated"] == 5
    expected = scores_to_json(evaluate_folder(out, root, "five")["metric"].compute(), read_classes(root))
    assert info["miou"] == expected["miou"]


def test_manifest_miou_matches_a_numpy_confusion_matrix(synthetic_root: Path, predicted: tuple) -> None:
    """Issue 21: the manifest's scores against a plain count written here, not the package's metric."""
    out, _ = predicted
    info = manifest(out)
    k = len(read_classes(synthetic_root))
    confusion = np.zeros((k, k + 1), np.int64)  # last column: predictions that are no class (misses)
    for image_id in split_ids(synthetic_root, "train"):
        target = read_png(synthetic_root / "SegmentationClassAug" / f"{image_id}.png").astype(np.int64).ravel()
        pred = read_png(out / f"{image_id}.png").astype(np.int64).ravel()
        keep = target != 255
        pred = np.where(pred < k, pred, k)
        np.add.at(confusion, (target[keep], pred[keep]), 1)
    hits = np.diag(confusion[:, :k])
    union = confusion.sum(1) + confusion[:, :k].sum(0) - hits
    iou = [100 * hits[c] / union[c] if union[c] else None for c in range(k)]
    assert info["miou"] == pytest.approx(np.mean([v for v in iou if v is not None]), abs=6e-4)
    for value, expected in zip(info["per_class_iou"].values(), iou, strict=True):
        assert (value is None) == (expected is None) and (value is None or value == pytest.approx(expected, abs=6e-4))
