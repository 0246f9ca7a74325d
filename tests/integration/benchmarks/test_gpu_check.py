"""benchmarks/gpu/check.py (issue 35 item 5) in its dry mode: the GPU check's driver on the CPU with tiny sizes,
so that the script a later session runs on the lent GPU machine cannot rot."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _driver(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu" / "check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_dry_run_runs_every_stage_without_wandb_and_writes_one_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from epspp.tasks import LocalizationModule

    check = _driver(monkeypatch)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as on the GPU machine: `import wandb` fails
    out = tmp_path / "out" / "gpu_check.json"
    argv = ["--dry-run", "--in-process", "--out", str(out), "--work", str(tmp_path / "work")]
    assert check.main([*argv, "--variants", "fp32", "--predict-precisions", "32-true"]) == 0

    report = json.loads(out.read_text())
    assert set(report) == {
        "device", "device_name", "dry_run", "versions", "commit", "weights", "sizes", "model_options_skipped",
        "prepare", "stages", "timings", "summary", "all_stages_ok", "seconds",
    }  # fmt: skip
    assert report["device"] == "cpu" and report["dry_run"] is True and report["all_stages_ok"] is True
    assert {"python", "torch", "pytorch-lightning", "cuda", "epspp_path"} <= set(report["versions"])
    stages = report["stages"]
    assert list(stages) == ["fit_stage1", "predict_pseudo_masks", "fit_stage3", "predict_stage3", "evaluate"]
    for name, stage in stages.items():
        assert stage["exit"] == 0 and stage["skipped"] is None, (name, stage)
        if stage["argv"][1] == "fit":  # no W&B run: the GPU machine has no wandb
            assert _value(stage["argv"], "--trainer.logger") == "false"
    assert json.loads((tmp_path / "work" / "stages" / "val_miou.json").read_text())  # evaluate's scores
    # the timed fit is one epoch of the timing set's train split
    train_ids = (tmp_path / "work" / "photos" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(train_ids) == (check.DRY.warmup + check.DRY.timed) * check.DRY.batch

    timings = report["timings"]
    assert list(timings) == ["fp32", "pseudo_masks_32-true"]
    sizes = check.DRY
    fit, predict = timings["fp32"], timings["pseudo_masks_32-true"]
    assert fit["exit"] == 0 and predict["exit"] == 0
    # every step after the warm-up timed; the prediction: every image after the first
    assert fit["timing"]["batches"] == sizes.warmup + sizes.timed and fit["timing"]["timed"] == sizes.timed
    assert predict["timing"]["batches"] == sizes.photos and predict["timing"]["timed"] == sizes.photos - 1
    assert fit["timing"]["seconds_per_batch"] > 0 and predict["timing"]["seconds_per_batch"] > 0
    assert (
        _value(fit["argv"], "--trainer.precision") == "32-true" and _value(fit["argv"], "--trainer.logger") == "false"
    )
    per_step, per_image = fit["timing"]["seconds_per_batch"], predict["timing"]["seconds_per_batch"]
    assert report["summary"] == {
        "fp32": {"seconds": per_step, "images_per_second": sizes.batch / per_step},
        "pseudo_masks_32-true": {"seconds": per_image, "images_per_second": 1 / per_image},
    }

    # the model options the installed epspp lacks are named (their variants skipped, never failed)
    parameters = inspect.signature(LocalizationModule.__init__).parameters
    assert set(report["model_options_skipped"]) == {name for name in check.MODEL_OPTIONS if name not in parameters}
