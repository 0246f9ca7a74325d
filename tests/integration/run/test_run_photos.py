"""Issue 32 items 2, 3 and 9: `epspp run` end to end on real photos (scikit-image's, tiny), with the photos preset,
a random-weight backbone and a budget of 2 steps per fit; then a rerun that does nothing and a changed option
that reruns only what depends on it.  The run is one `epspp run` process (its stages are processes too)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.cli import REPO, in_process, run_epspp
from fixtures.helpers import read_png, split_ids, write_photo_set
from PIL import Image

COUNT, LONG_SIDE, NEW = 8, 72, 2  # 6 photos + 2 side-by-side composites, 72 px long (144 the composites)
# a narrow ResNet-10 instead of the preset's ResNet-50, on 64-px crops (the photos are 72 px)
TINY = [
    "--model.init_args.backbone",
    "resnet10t",
    "--model.init_args.backbone_kwargs",
    "{channels: [8, 16, 32, 64], stem_width: 8}",
    "--data.crop_size",
    "64",
    "--data.resize_long",
    "[56, 80]",
    "--data.eval_size",
    "144",
    "--data.num_workers",
    "0",
    "--data.batch_size",
    "4",
]
STAGES = ("dataset", "stage 1", "pseudo-masks", "stage 3", "masks", "predictions")
FOLDERS = {
    "dataset": "dataset",
    "stage 1": "localization",
    "pseudo-masks": "pseudo_masks",
    "stage 3": "segmentation_wsss",
    "masks": "masks",
    "predictions": "predictions",
}


def _run(base: Path, paths: dict[str, Path], predict: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_epspp(
        [
            "run",
            "--images",
            paths["images"],
            "--labels",
            paths["labels"],
            "--saliency",
            paths["saliency"],
            "--predict",
            predict,
            "--out",
            base / "run",
            "--max-steps",
            "2",
            "--no-pretrained",
            "--",
            *TINY,
        ],
        cwd=base,
        check=check,
    )


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime in ns) of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], subprocess.CompletedProcess]:
    """One `epspp run` of 8 photos and 2 new ones: (its base folder, the photo set's paths, the process)."""
    base = tmp_path_factory.mktemp("photos")
    paths = write_photo_set(base / "mine", count=COUNT, long_side=LONG_SIDE, num_new=NEW)
    return base, paths, _run(base, paths, paths["new_photos"])


def test_run_writes_every_stage_and_a_report(
    photo_run: tuple[Path, dict[str, Path], subprocess.CompletedProcess],
) -> None:
    base, paths, result = photo_run
    out = base / "run"
    for name in STAGES:  # each stage said with its time and its folder
        assert f"[run] {name}: finished in " in result.stdout
        assert f"its files are in {out / FOLDERS[name]}" in result.stdout
        assert json.loads((out / FOLDERS[name] / "stage.json").read_text())["stage"] == name
    root = out / "dataset" / "root"
    ids = sorted(p.stem for p in paths["images"].iterdir())
    assert len(ids) == COUNT and "cat+cup" in ids and "cat flip" not in ids  # 6 full photos and 2 composites
    # val: round(0.2 * 8) = 2 photos (the preset's share), and the note that says it is small
    assert len(split_ids(root, "val")) == 2 and len(split_ids(root, "train")) == 6
    assert "[run] note: the val split holds 2 of 8 photos" in result.stdout

    # stage 1's budget and warm-ups scaled to 2 steps: ird 10 * 2/100 -> 0, validation 25 * 2/100 -> 1, logs 1
    command = json.loads((out / "localization" / "stage.json").read_text())["command"]
    scaled = command[command.index("--trainer.max_steps") :]
    assert scaled[:8] == [
        "--trainer.max_steps",
        "2",
        "--model.init_args.ird_warmup_steps",
        "0",
        "--trainer.val_check_interval",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    ]
    assert ["--model.init_args.pretrained", "false"] == scaled[8:10]
    for fit in ("localization", "segmentation_wsss"):
        checkpoint = torch.load(out / fit / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert checkpoint["global_step"] == 2 and checkpoint["hyper_parameters"]["pretrained"] is False

    # pseudo-masks and stage 3's masks of every photo, at the photo's size, values 0..5 (5 classes)
    names = json.loads((root / "classes.json").read_text())["names"]
    assert names == ["background", "cat", "cup", "motorcycle", "person", "rocket"]
    for folder in ("pseudo_masks", "masks"):
        assert sorted(p.stem for p in (out / folder).glob("*.png") if p.name != "overview.png") == ids
        for image_id in ids:
            mask = read_png(out / folder / f"{image_id}.png")
            with Image.open(next(paths["images"].glob(f"{image_id}.*"))) as photo:
                assert mask.shape == (photo.height, photo.width)
            assert set(np.unique(mask)) <= set(range(len(names)))
    # the new photos' masks and overlays (a legend band below the photo: taller than it)
    new = sorted(paths["new_photos"].iterdir())
    assert len(new) == NEW
    for photo_path in new:
        with Image.open(photo_path) as photo:
            size = (photo.height, photo.width)
        assert read_png(out / "predictions" / f"{photo_path.stem}.png").shape == size
        with Image.open(out / "predictions" / "overlays" / f"{photo_path.stem}.png") as overlay:
            assert overlay.width >= size[1] and overlay.height > size[0]

    # the report: its text and its picture (4 columns of 192 px, 4 px apart: 780 px wide)
    report = (out / "report.md").read_text()
    assert "8 photos of" in report and "(train 6, val 2)" in report and "random weights (--no-pretrained)" in report
    for name in STAGES:
        assert f"| {name} | " in report
    assert "segmentation_wsss/checkpoints/last.ckpt" in report and "![photo, saliency, pseudo-mask, mask]" in report
    with Image.open(out / "report.png") as picture:
        assert picture.width == 780 and picture.text.get("Software") == "epspp run"
        assert picture.height > (COUNT + NEW) * 100  # a row per photo, 8 of the dataset and 2 new ones


def test_rerun_skips_everything_and_a_changed_option_reruns_what_depends_on_it(
    photo_run: tuple[Path, dict[str, Path], subprocess.CompletedProcess],
) -> None:
    base, paths, _ = photo_run
    out = base / "run"
    before = _state(out)
    again = _run(base, paths, paths["new_photos"])
    assert f"[run] {len(STAGES)} stages, 0 to run" in again.stdout
    assert all(f"[run] {name}: done before, skipping" in again.stdout for name in STAGES)
    assert _state(out) == before  # no file rewritten, the report included

    # another --predict folder: only the predictions run again (the old ones kept aside) and the report is redrawn
    other = base / "other_photos"
    other.mkdir()
    os.link(sorted(paths["new_photos"].iterdir())[0], other / "one more.jpg")
    changed = _run(base, paths, other)
    assert "[run] predictions: its command changed; running it again" in changed.stdout
    assert all(f"[run] {name}: done before, skipping" in changed.stdout for name in STAGES[:-1])
    assert [p.name for p in (out / "predictions").glob("*.png") if p.name != "overview.png"] == ["one more.png"]
    assert (out / "predictions.previous" / "stage.json").is_file()
    after = _state(out)
    assert all(after[path] == before[path] for path in before if path.startswith(("localization/", "masks/")))
    assert after["report.png"] != before["report.png"]


def test_predict_loads_no_initial_backbone_weights(
    photo_run: tuple[Path, dict[str, Path], subprocess.CompletedProcess], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """A stage-1 checkpoint trained from `pretrained: true` (timm's download) and a `pretrained_path` gone since:
    its prediction reads neither (offline here: a download would fail)."""
    base, _, _ = photo_run
    checkpoint = torch.load(
        base / "run" / "localization" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    checkpoint["hyper_parameters"] |= {"pretrained": True, "pretrained_path": str(tmp_path / "gone.pth")}
    torch.save(checkpoint, tmp_path / "pretrained.ckpt")
    in_process(
        capfd,
        "predict",
        "--config",
        REPO / "configs" / "photos" / "pseudo_masks.yaml",
        "--data.root",
        base / "run" / "dataset" / "root",
        "--data.predict_split",
        "val",
        "--data.num_workers",
        "0",
        "--ckpt_path",
        tmp_path / "pretrained.ckpt",
        "--pseudo_masks.output_dir",
        tmp_path / "masks",
        check=True,
    )
    written = sorted(p.stem for p in (tmp_path / "masks").glob("*.png") if p.name != "overview.png")
    assert written == sorted(split_ids(base / "run" / "dataset" / "root", "val")) and len(written) == 2


def test_without_saliency_maps_the_saliency_stage_makes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """No --saliency: `epspp saliency` (a tiny ONNX model of U²-Net's signature, offline) makes the maps that `epspp
    prepare folder` links; both run for real, the Trainer stages are faked (their commands recorded)."""
    if importlib.util.find_spec("rembg") is None:
        pytest.skip("needs the saliency extra (rembg)")
    pytest.importorskip("onnx")
    from fixtures.saliency_model import expected_u2net_map, write_u2net_like_onnx

    from epspp import chain, run, run_report

    paths = write_photo_set(tmp_path / "mine", count=3, long_side=40, num_new=0)
    model = write_u2net_like_onnx(tmp_path / "u2net.onnx")
    faked: list[list[str]] = []
    real = chain.run_command

    def run_command(argv, log, env, poll, poll_s):  # noqa: ANN001, ANN202 - chain.run_command's signature
        if argv[3] in ("saliency", "prepare"):
            return real(argv, log, env, poll, poll_s)
        faked.append(list(argv[3:]))
        return 0

    monkeypatch.setattr(chain, "run_command", run_command)
    monkeypatch.setattr(run_report, "write_run_report", lambda *args: {"report": None, "picture": None})
    run.run_own_data(
        paths["images"], paths["labels"], tmp_path / "run", saliency_model_path=model, max_steps=2, pretrained=False
    )
    printed = capfd.readouterr().out
    assert (
        f"[run] saliency: epspp saliency --images {paths['images']} --out {tmp_path / 'run' / 'saliency' / 'maps'}"
        f" --model-path {model}" in printed
    )
    root = tmp_path / "run" / "dataset" / "root"
    for photo in sorted(paths["images"].iterdir()):
        linked = root / "saliency" / f"{photo.stem}.png"
        assert linked.resolve() == (tmp_path / "run" / "saliency" / "maps" / f"{photo.stem}.png").resolve()
        np.testing.assert_array_equal(read_png(linked), expected_u2net_map(photo))
    assert [command[0] for command in faked] == ["fit", "predict", "fit", "predict"]  # stage 1 .. masks
