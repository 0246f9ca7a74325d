"""A prediction writes only into its own output folder (its configuration and logs too), never over a user's file
and never into the dataset root (issue 27's probe, in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.cli import QUIET, SCRATCH_EPSPP, clean_error, in_process, ok, predict_args
from fixtures.helpers import snapshot

from epspp.runs.folder import dump_mark

SMALL = ("--data.predict_split", "labeled_10pct")  # 2 images
CSV_ONLY = "{class_path: pytorch_lightning.loggers.CSVLogger, init_args: {save_dir: '.', name: csv}}"


def test_predict_writes_its_configuration_and_logs_in_the_output_folder_not_the_training_run(
    synthetic_root: Path, training_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    before = snapshot(training_run)
    out = tmp_path / "masks"
    # the training config (loggers, checkpoints, its own run folder) pointed at the training run
    result = ok(
        in_process(
            capfd,
            "predict",
            "--config",
            SCRATCH_EPSPP,
            "--data.root",
            synthetic_root,
            "--ckpt_path",
            training_run / "checkpoints" / "last.ckpt",
            "--pseudo_masks.output_dir",
            out,
            "--trainer.default_root_dir",
            training_run,
            "--trainer.logger",
            CSV_ONLY,
            "--trainer.callbacks",
            "[]",
            "--data.num_workers",
            "0",
            *SMALL,
            *QUIET,
        )
    )
    assert f"predict writes its configuration and logs in --pseudo_masks.output_dir {out}" in result.stderr
    assert snapshot(training_run) == before  # the fit's config.yaml is its record: kept, and nothing added
    dumps = list(out.rglob("config.yaml"))  # in the CSV logger's version folder
    assert len(dumps) == 1 and dumps[0].read_text().startswith(dump_mark("predict"))
    assert list(out.glob("csv/version_*/metrics.csv")) and len(list(out.glob("*.png"))) == 2


@pytest.mark.parametrize("users", ["manifest.json", "provenance.json", "scores/a.npy"])
def test_predict_never_replaces_a_users_file_in_its_output_folder(
    synthetic_root: Path, localization_checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture, users: str
) -> None:
    out = tmp_path / "out"
    (out / users).parent.mkdir(parents=True)
    (out / users).write_text('{"mine": true}')
    result = in_process(
        capfd, *predict_args(synthetic_root, localization_checkpoint, out, *SMALL, "--pseudo_masks.save_scores", "true")
    )
    clean_error(result, "epspp: error:", str(out / users), "--pseudo_masks.overwrite true")
    assert (out / users).read_text() == '{"mine": true}' and not list(out.glob("*.png"))


def test_predict_never_writes_into_the_dataset_root(
    synthetic_copy: Path, localization_checkpoint: Path, capfd: pytest.CaptureFixture
) -> None:
    before = snapshot(synthetic_copy)
    for out in (synthetic_copy, synthetic_copy / "pseudo_masks"):
        result = in_process(capfd, *predict_args(synthetic_copy, localization_checkpoint, out, *SMALL))
        clean_error(
            result, f"--pseudo_masks.output_dir {out} is inside the dataset's root folder", "choose a folder of its own"
        )
    assert snapshot(synthetic_copy) == before
