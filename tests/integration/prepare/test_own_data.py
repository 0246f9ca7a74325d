"""A practitioner's own data, no masks at all, through the `epspp` command: prepare folder -> fit -> predict
-> render -> segmentation fit -> predict on a plain folder of images.  The fits run as processes (their
stderr is checked), predict and render in this process (``in_process``: the same entry point, no start-up)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.cli import CONFIGS, TINY_FIT, in_process, run_epspp
from fixtures.helpers import gt_mask, split_ids
from PIL import Image

from epspp.data.io import read_split

DEMO = CONFIGS / "demo" / "scratch"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
NAMES = ("disc", "square", "triangle", "train", "boat")


def _own_folder(source: Path, dest: Path, count: int = 12) -> tuple[Path, Path, Path]:
    """PNG images named photo_<n>.png, their saliency maps and a CSV of class names; no masks."""
    photos, saliency = dest / "photos", dest / "saliency_maps"
    photos.mkdir(parents=True)
    saliency.mkdir()
    lines = ["id,classes"]
    for n, image_id in enumerate(split_ids(source, "train")[:count]):
        Image.open(source / "JPEGImages" / f"{image_id}.jpg").convert("RGB").save(photos / f"photo {n}.png")
        (saliency / f"photo {n}.png").write_bytes((source / "saliency" / f"{image_id}.png").read_bytes())
        present = [NAMES[c - 1] for c in np.unique(gt_mask(source, image_id)) if 0 < c < 255]
        lines.append(f"photo {n}.png,{';'.join(present)}")
    labels = dest / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return photos, saliency, labels


def _monitor(checkpoint: Path) -> str:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    best = [v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint") and v["monitor"]]
    assert len(best) == 1 and torch.isfinite(best[0]["best_model_score"]), best
    return best[0]["monitor"]


def test_maskless_folder_through_every_stage(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    photos, saliency, labels = _own_folder(synthetic_root, tmp_path / "mine")
    root, runs = tmp_path / "root", tmp_path / "runs"
    prepared = run_epspp(
        [
            "prepare",
            "folder",
            "--images",
            photos,
            "--labels",
            labels,
            "--saliency",
            saliency,
            "--out",
            root,
            "--val-fraction",
            "0.25",
        ],
        cwd=tmp_path,
    )
    assert "12 images (train 9, val 3, all)" in prepared.stdout
    assert json.loads((root / "classes.json").read_text())["names"][0] == "background"
    assert (root / "JPEGImages" / "photo 0.png").resolve() == (photos / "photo 0.png").resolve()  # as it is
    assert not (root / "SegmentationClassAug").exists()

    # stage 1 without ground truth: validation on the labels, best.ckpt selected on val/mAP
    localization = runs / "localization"
    csv_logger = "{class_path: pytorch_lightning.loggers.CSVLogger, init_args: {save_dir: ., name: csv}}"
    fit = run_epspp(
        [
            "fit",
            "--config",
            DEMO / "localization_eps++.yaml",
            "--data.root",
            root,
            *TINY_FIT,
            *QUIET,
            "--trainer.logger",
            csv_logger,
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.default_root_dir",
            localization,
        ],
        cwd=tmp_path,
    )
    assert "best.ckpt is selected on val/mAP" in fit.stderr
    best = localization / "checkpoints" / "best.ckpt"
    assert _monitor(best) == "val/mAP"
    header = next((localization / "csv").glob("version_*/metrics.csv")).read_text().splitlines()[0].split(",")
    assert "val/mAP" in header and "val/mIoU" not in header  # no mIoU of 0 without ground truth

    # stage 2: pseudo-masks of train, no fake mIoU
    pseudo = runs / "pseudo_masks"
    in_process(
        capfd,
        "predict",
        "--config",
        DEMO / "pseudo_masks.yaml",
        "--data.root",
        root,
        "--ckpt_path",
        best,
        "--pseudo_masks.output_dir",
        pseudo,
        "--data.num_workers",
        "0",
        *QUIET,
        check=True,
    )
    train = read_split(root, "train")  # ids with spaces: one per line
    assert {p.stem for p in pseudo.glob("*.png")} == set(train)
    manifest = json.loads((pseudo / "manifest.json").read_text())
    assert manifest["evaluated"] == 0 and "miou" not in manifest and manifest["count"] == 9

    # render: image | saliency | overlay, with titles, each row's id and labels, and a legend
    rendered = in_process(capfd, "render", "--pred-dir", pseudo, "--root", root, "--num", "4", check=True)
    overview = pseudo / "overview.png"
    assert f"wrote {overview}" in rendered.stdout
    width, height = Image.open(overview).size
    assert width == 3 * 256 + 2 * 4 and height > 4 * 256  # 256-px panels, each row captioned with its id

    # stage 3 on the pseudo-masks, without a val mask folder: no validation, best.ckpt on train/loss
    segmentation = runs / "segmentation"
    fit = run_epspp(
        [
            "fit",
            "--config",
            DEMO / "segmentation_wsss.yaml",
            "--data.root",
            root,
            "--data.pseudo_mask_dir",
            pseudo,
            *TINY_FIT,
            *QUIET,
            "--trainer.default_root_dir",
            segmentation,
        ],
        cwd=tmp_path,
    )
    assert "no validation; best.ckpt is selected on train/loss" in fit.stderr
    seg_best = segmentation / "checkpoints" / "best.ckpt"
    assert _monitor(seg_best) == "train/loss"

    # predict the plain folder of images with the segmentation network: masks and overlays
    predictions = runs / "predictions"
    in_process(
        capfd,
        "predict",
        "--config",
        DEMO / "segmentation_wsss.yaml",
        "--data.root",
        root,
        "--ckpt_path",
        seg_best,
        "--data.predict_image_dir",
        photos,
        "--pseudo_masks.output_dir",
        predictions,
        "--pseudo_masks.save_overlays",
        "true",
        "--data.num_workers",
        "0",
        "--trainer.callbacks",
        "[]",
        *QUIET,
        *TINY_FIT[:2],
        check=True,
    )
    ids = {p.stem for p in photos.iterdir()}
    assert {p.stem for p in predictions.glob("*.png")} == ids | {"overview"}  # the masks and their overview
    assert {p.stem for p in (predictions / "overlays").glob("*.png")} == ids
    mask = np.array(Image.open(predictions / "photo 3.png"))
    assert mask.shape == (48, 48) and mask.max() <= 5
    width, height = Image.open(predictions / "overlays" / "photo 3.png").size
    assert width >= 48 and height > 48  # the photo, then the legend of its classes below it
    overview = Image.open(predictions / "overview.png")
    assert overview.width == 2 * 256 + 4 and json.loads(overview.text["epspp:rows"])[0] == sorted(ids)[0]
    assert json.loads((predictions / "manifest.json").read_text())["count"] == 12
