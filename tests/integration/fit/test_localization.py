"""Stage 1 through the CLI: `epspp fit` for each saliency loss writes checkpoints and logged metrics.

The module's fits start together (``fits``: the cores are shared) and each test waits for its own."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fixtures.cli import CONFIGS, SCRATCH_EPSPP, TINY_FIT, Started, in_process, start_epspp

METHODS = {"none": "localization_cam.yaml", "eps": "localization_eps.yaml", "ird": "localization_eps++.yaml"}


def logged(run_dir: Path) -> list[dict[str, str]]:
    (metrics,) = run_dir.glob("csv/version_*/metrics.csv")
    return list(csv.DictReader(metrics.open()))


@pytest.fixture(scope="module")
def fits(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Started, Path]]]:
    """name -> (the started ``epspp fit``, its run folder): one per saliency loss, and the bf16 run."""
    started = {}
    for saliency_loss in sorted(METHODS):
        tmp_path = tmp_path_factory.mktemp(f"fit_{saliency_loss}")
        run_dir = tmp_path / "run"
        started[saliency_loss] = (
            start_epspp(
                [
                    "fit",
                    "--config",
                    CONFIGS / "demo" / "scratch" / METHODS[saliency_loss],
                    "--data.root",
                    synthetic_root,
                    "--trainer.default_root_dir",
                    run_dir,
                    "--trainer.max_steps",
                    "3",
                    "--trainer.val_check_interval",
                    "3",
                    "--trainer.check_val_every_n_epoch",
                    "1",
                    "--trainer.log_every_n_steps",
                    "1",
                    *TINY_FIT[2:],
                    *(["--model.init_args.ird_warmup_steps", "1"] if saliency_loss == "ird" else []),
                ],
                cwd=tmp_path,
            ),
            run_dir,
        )
    tmp_path = tmp_path_factory.mktemp("fit_bf16")
    run_dir = tmp_path / "run"
    started["bf16"] = (
        start_epspp(
            [
                "fit",
                "--config",
                SCRATCH_EPSPP,
                "--data.root",
                synthetic_root,
                "--trainer.default_root_dir",
                run_dir,
                "--trainer.precision",
                "bf16-mixed",
                "--trainer.logger",
                "false",
                "--trainer.limit_val_batches",
                "1",
                "--trainer.enable_progress_bar",
                "false",
                *TINY_FIT,
            ],
            cwd=tmp_path,
        ),
        run_dir,
    )
    yield started
    for run, _ in started.values():
        if run.process.poll() is None:
            run.process.kill()
        run.wait(check=False)


@pytest.mark.parametrize("saliency_loss", sorted(METHODS))
def test_fit_each_method_writes_checkpoints_and_metrics(saliency_loss: str, fits: dict) -> None:
    run, run_dir = fits[saliency_loss]
    run.wait()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 3
    assert checkpoint["hyper_parameters"]["saliency_loss"] == saliency_loss
    assert checkpoint["hyper_parameters"]["num_classes"] == 5  # read from the dataset, not the config
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    rows = logged(run_dir)
    columns = set(rows[0])
    assert {"train/loss", "train/loss_cls", "train/loss_sal", "val/mIoU", "val/mAP", "val/F1"} <= columns
    telemetry = (
        "train/inconsistent",
        "train/inconsistent_salient",
        "train/inconsistent_background",
        "train/fg_salient",
    )
    assert all((key in columns) == (saliency_loss == "ird") for key in telemetry)
    if saliency_loss == "ird":  # IRD's telemetry at every step, in the warm-up (step 0) and after it (1, 2)
        steps = [r for r in rows if r.get("train/loss")]
        assert len(steps) == 3
        assert all(0.0 <= float(r[key]) <= 1.0 for r in steps for key in telemetry)
        # and every step, whatever log_every_n_steps, in the run folder's record (with B()'s map on both sides)
        record = list(csv.DictReader((run_dir / "ird_telemetry.csv").open()))
        assert [int(r["step"]) for r in record] == [0, 1, 2]
        assert all(
            0.0 <= float(r[key]) <= 1.0
            for r in record
            for key in ("inconsistent_salient", "threshold_map_salient", "threshold_map_background")
        )
    else:
        assert not (run_dir / "ird_telemetry.csv").exists()
    losses = [(float(r["train/loss_cls"]), float(r["train/loss_sal"])) for r in rows if r.get("train/loss_sal")]
    assert losses, "training losses were logged"
    if saliency_loss == "none":
        assert all(sal == 0.0 for _, sal in losses)
    else:
        assert any(sal > 0.0 for _, sal in losses)
    miou = [float(r["val/mIoU"]) for r in rows if r.get("val/mIoU")]
    assert miou and all(0.0 <= v <= 1.0 for v in miou)
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B ran offline"


def test_fit_bf16_mixed_on_cpu_without_progress_bar(fits: dict) -> None:
    """bf16 autocast on the CPU; ``enable_progress_bar false`` drops the config's RichProgressBar."""
    run, run_dir = fits["bf16"]
    result = run.wait()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "Epoch 0" not in result.stdout + result.stderr


def test_missing_dataset_tells_the_prepare_command(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    result = in_process(
        capfd,
        "fit",
        "--config",
        SCRATCH_EPSPP,
        "--data.root",
        tmp_path / "nowhere",
        "--data.prepare_synthetic",
        "false",
    )
    assert result.returncode == 2
    assert "epspp prepare synthetic --root" in result.stderr and "Traceback" not in result.stderr
