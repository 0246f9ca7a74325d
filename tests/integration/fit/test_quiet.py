"""Issue 32 item 6: a default ``epspp fit`` prints epspp's lines and no library noise (Lightning's tips, the W&B
banner, the model table with "Total FLOPs: 0", unactionable warnings); ``--verbose`` brings them back; a
prediction starts no W&B run. Output in a file (not a terminal): the plain progress lines (item 5)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.cli import SCRATCH_EPSPP, TINY_FIT, in_process
from fixtures.helpers import saliency_with_errors

from epspp.runs.progress import PROGRESS_FILE

#: TINY_FIT without its "--trainer.enable_model_summary false": the default summary is what is checked
FIT = [
    arg
    for pair in zip(TINY_FIT[::2], TINY_FIT[1::2], strict=True)
    if pair[0] != "--trainer.enable_model_summary"
    for arg in pair
]
NOISE = ("Tip", "FLOPs", "wandb:", "UserWarning", "LeafSpec", "logging interval", "TPU available")


def fit_args(root: Path, run: Path) -> list[str | Path]:
    """A 2-step fit with the config's own loggers (W&B offline and CSV)."""
    return ["fit", "--config", SCRATCH_EPSPP, "--data.root", root, "--trainer.default_root_dir", run, *FIT]


def test_a_default_fit_prints_epspps_lines_and_no_library_noise(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    # with the saliency's error flags (issue 36): N against them in the telemetry, and no noise either
    saliency_with_errors(synthetic_root, tmp_path / "saliency")
    errors = ["--data.saliency_errors", "true", "--data.saliency_dir", tmp_path / "saliency"]
    result = in_process(capfd, *fit_args(synthetic_root, run), *errors, check=True)
    # under pytest, Lightning's console log lines go to caplog; caplog also holds W&B's internal debug records (its
    # debug.log, never printed), so only Lightning's records count there
    lightning = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in ("pytorch_lightning", "lightning", "lightning_fabric")
    )
    output = result.stdout + result.stderr + lightning
    assert "GPU available" in lightning  # (a line that is kept: the capture works)
    assert [needle for needle in NOISE if needle in output] == [], output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[fit] LocalizationModule: ") and lines[0].endswith(" M trainable)")
    assert "[fit] step 1/2 (50%)  loss " in result.stdout  # stdout is not a terminal here: plain lines
    assert [line for line in lines if line.startswith("[fit] done: step 2/2 in ")]
    assert list(run.glob("wandb/offline-run-*/run-*.wandb"))  # W&B still records, offline, in the run folder
    telemetry = list(csv.DictReader((run / "ird_telemetry.csv").open()))
    assert [row["step"] for row in telemetry] == ["0", "1"]
    ratios = [row[key] for row in telemetry for key in ("error_precision", "error_recall", "correct_dropped")]
    assert all(value == "" or 0.0 <= float(value) <= 1.0 for value in ratios) and any(ratios)
    record = json.loads((run / PROGRESS_FILE).read_text())
    assert (record["stage"], record["step"], record["max_steps"], record["done"], record["eta_s"]) == (
        "fit",
        2,
        2,
        True,
        0.0,
    )


def test_verbose_brings_the_libraries_lines_back(synthetic_root: Path, tmp_path: Path) -> None:
    """In a process of its own (W&B sets up its terminal once per process); the environment has no WANDB_SILENT."""
    env = {key: value for key, value in os.environ.items() if key not in ("WANDB_SILENT", "PYTHONWARNINGS")}
    result = subprocess.run(
        [sys.executable, "-m", "epspp", *map(str, fit_args(synthetic_root, tmp_path / "run")), "--verbose"],
        cwd=tmp_path,
        env=env | {"WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "💡 Tip" in result.stderr and "Total FLOPs: 0" in result.stdout
    assert [line for line in result.stderr.splitlines() if line.startswith("wandb:")]


def test_epspp_verbose_in_the_environment_shows_the_tips_and_the_table(
    synthetic_root: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EPSPP_VERBOSE", "1")
    result = in_process(capfd, *fit_args(synthetic_root, tmp_path / "run"), "--trainer.logger", "false", check=True)
    assert "💡 Tip" in caplog.text and "Total FLOPs" in result.stdout


def test_predict_starts_no_wandb_run(
    synthetic_root: Path,
    localization_checkpoint: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "masks"
    # a training config (W&B and CSV loggers) used to predict
    result = in_process(
        capfd,
        "predict",
        "--config",
        SCRATCH_EPSPP,
        "--data.root",
        synthetic_root,
        "--ckpt_path",
        localization_checkpoint,
        "--pseudo_masks.output_dir",
        out,
        "--data.predict_split",
        "labeled_10pct",
        "--data.num_workers",
        "0",
        check=True,
    )
    assert not list(tmp_path.rglob("wandb")) and not list(tmp_path.rglob("*.wandb"))
    assert len(list(out.glob("*.png"))) == 2 and list(out.glob("csv/version_*"))  # the CSV logger is kept
    assert "[predict] batch 1/2 (50%)" in result.stdout and "[predict] done: 2 batches in " in result.stdout
    assert not [needle for needle in NOISE if needle in result.stdout + result.stderr + caplog.text]
