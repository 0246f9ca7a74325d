"""Issue 27's probe for the stages and the pipelines, run as a user runs them (in-process): a run writes only into
its own folder and replaces only what the same subcommand wrote; a user's file in the way is refused in one line
and kept; Lightning's refusals of a trainer setting are one line naming the flag.

Every case fails before a step is trained; the session's 2-step localization checkpoint is shared.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from fixtures.cli import CONFIGS, QUIET, SCRATCH_EPSPP, TINY_FIT, clean_error, in_process, ok, predict_args
from fixtures.helpers import snapshot

from epspp.run_folder import dump_mark

SMALL = ("--data.predict_split", "labeled_10pct")  # 2 images
CSV_ONLY = "{class_path: pytorch_lightning.loggers.CSVLogger, init_args: {save_dir: '.', name: csv}}"
FIT_DUMP = dump_mark("fit") + "# how the checkpoint was trained\n"


@pytest.fixture
def training_run(localization_checkpoint: Path, tmp_path: Path) -> Path:
    """A fit's run folder: its configuration dump and its last.ckpt."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(localization_checkpoint, run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text(FIT_DUMP)
    return run


def fit_args(root: Path, run: Path, *extra: str | Path) -> list[str | Path]:
    return ["fit", "--config", SCRATCH_EPSPP, "--data.root", root, "--trainer.default_root_dir", run,
            "--trainer.logger", "false", *TINY_FIT, *extra]


# ------------------------------------------------------------------ predict
def test_predict_writes_its_configuration_and_logs_in_the_output_folder_not_the_training_run(
    synthetic_root: Path, training_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    before = snapshot(training_run)
    out = tmp_path / "masks"
    # the training config (loggers, checkpoints, its own run folder) pointed at the training run
    result = ok(in_process(capfd, "predict", "--config", SCRATCH_EPSPP, "--data.root", synthetic_root, "--ckpt_path",
                           training_run / "checkpoints" / "last.ckpt", "--pseudo_masks.output_dir", out,
                           "--trainer.default_root_dir", training_run, "--trainer.logger", CSV_ONLY,
                           "--trainer.callbacks", "[]", "--data.num_workers", "0", *SMALL, *QUIET))
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
    result = in_process(capfd, *predict_args(synthetic_root, localization_checkpoint, out, *SMALL,
                                             "--pseudo_masks.save_scores", "true"))
    clean_error(result, "epspp: error:", str(out / users), "--pseudo_masks.overwrite true")
    assert (out / users).read_text() == '{"mine": true}' and not list(out.glob("*.png"))


def test_predict_never_writes_into_the_dataset_root(synthetic_copy: Path, localization_checkpoint: Path,
                                                   capfd: pytest.CaptureFixture) -> None:
    before = snapshot(synthetic_copy)
    for out in (synthetic_copy, synthetic_copy / "pseudo_masks"):
        result = in_process(capfd, *predict_args(synthetic_copy, localization_checkpoint, out, *SMALL))
        clean_error(result, f"--pseudo_masks.output_dir {out} is inside the dataset's root folder",
                    "choose a folder of its own")
    assert snapshot(synthetic_copy) == before


# ------------------------------------------------------------------ fit, validate
@pytest.mark.parametrize("users", ["checkpoints/last.ckpt", "ird_telemetry.csv", "warnings.txt"])
def test_fit_never_replaces_files_that_no_fit_wrote(synthetic_root: Path, tmp_path: Path,
                                                    capfd: pytest.CaptureFixture, users: str) -> None:
    run = tmp_path / "run"
    (run / users).parent.mkdir(parents=True)
    (run / users).write_text("mine")
    clean_error(in_process(capfd, *fit_args(synthetic_root, run)), f"--trainer.default_root_dir {run} holds "
                f"{run / users}, which no `epspp fit` wrote there", "choose another --trainer.default_root_dir")
    assert (run / users).read_text() == "mine" and sorted(p.name for p in run.iterdir()) == [users.split("/")[0]]


def test_fit_never_writes_into_the_dataset(synthetic_copy: Path, capfd: pytest.CaptureFixture) -> None:
    before = snapshot(synthetic_copy)
    for run in (synthetic_copy, synthetic_copy / "runs" / "x"):
        clean_error(in_process(capfd, *fit_args(synthetic_copy, run)),
                    f"--trainer.default_root_dir {run} is inside the dataset's root folder")
    assert snapshot(synthetic_copy) == before


def test_validate_in_a_training_run_keeps_the_fits_configuration(synthetic_root: Path, training_run: Path,
                                                                 capfd: pytest.CaptureFixture) -> None:
    ok(in_process(capfd, "validate", "--config", SCRATCH_EPSPP, "--data.root", synthetic_root, "--ckpt_path", "last",
                  "--trainer.default_root_dir", training_run, "--trainer.logger", "false", "--data.num_workers", "0",
                  "--trainer.limit_val_batches", "1", *QUIET))
    assert (training_run / "config.yaml").read_text() == FIT_DUMP
    assert (training_run / "config.validate.yaml").read_text().startswith(dump_mark("validate"))


# ------------------------------------------------------------------ Lightning's refusals, one line
@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--trainer.max_steps", "-5", "`max_steps` must be a non-negative integer or -1"),
    ("--trainer.max_epochs", "-3", "`max_epochs` must be a non-negative integer or -1"),
    ("--trainer.strategy", "foo", "invalid strategy name"),
    ("--trainer.accelerator", "mps", "can not run on your system"),
    ("--trainer.accelerator", "gpu", "No supported gpu backend found!"),
    ("--trainer.accumulate_grad_batches", "0", "must be an integer >= 1, got 0"),  # Lightning divides by them
    ("--trainer.check_val_every_n_epoch", "0", "must be an integer >= 1, got 0"),
])
def test_trainer_settings_that_lightning_refuses_are_one_line(synthetic_root: Path, tmp_path: Path,
                                                              capfd: pytest.CaptureFixture, flag: str, value: str,
                                                              message: str) -> None:
    if value == "gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = in_process(capfd, *fit_args(synthetic_root, tmp_path / "run", flag, value))
    error = clean_error(result, "epspp: error: ", flag, message)
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------ demo and study
@pytest.mark.parametrize("command", ["demo", "study"])
def test_pipelines_refuse_an_out_of_the_users(synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture,
                                             command: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my report")
    args = ["demo", "--root", synthetic_root, "--pretrain-root", tmp_path / "corpus"] if command == "demo" else [
        "study", "saliency-errors", "--root", synthetic_root, "--seeds", "0"]
    result = in_process(capfd, *args, "--out", out, "--configs", CONFIGS / "demo")
    clean_error(result, f"epspp {command}: error: --out {out} holds files that `epspp {command}` did not write",
                "choose an empty or new --out")
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and not (tmp_path / "corpus").exists()
    result = in_process(capfd, *args, "--out", synthetic_root / "runs", "--configs", CONFIGS / "demo")
    clean_error(result, f"--out {synthetic_root / 'runs'} is inside the dataset root")
    assert not (synthetic_root / "runs").exists()
