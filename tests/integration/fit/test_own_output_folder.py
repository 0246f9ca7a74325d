"""Issue 27's probe for `epspp fit` and `validate`, run as a user runs them (in-process): a run writes only into its
own folder and replaces only what the same subcommand wrote; a user's file in the way is refused in one line and
kept; Lightning's refusals of a trainer setting are one line naming the flag.

Every case fails before a step is trained; the session's 2-step localization checkpoint is shared.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures.cli import QUIET, SCRATCH_EPSPP, TINY_FIT, clean_error, in_process, ok
from fixtures.helpers import snapshot

from epspp.runs.folder import dump_mark


def fit_args(root: Path, run: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "fit",
        "--config",
        SCRATCH_EPSPP,
        "--data.root",
        root,
        "--trainer.default_root_dir",
        run,
        "--trainer.logger",
        "false",
        *TINY_FIT,
        *extra,
    ]


# ------------------------------------------------------------------ fit, validate
@pytest.mark.parametrize("users", ["checkpoints/last.ckpt", "ird_telemetry.csv", "warnings.txt"])
def test_fit_never_replaces_files_that_no_fit_wrote(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture, users: str
) -> None:
    run = tmp_path / "run"
    (run / users).parent.mkdir(parents=True)
    (run / users).write_text("mine")
    clean_error(
        in_process(capfd, *fit_args(synthetic_root, run)),
        f"--trainer.default_root_dir {run} holds {run / users}, which no `epspp fit` wrote there",
        "choose another --trainer.default_root_dir",
    )
    assert (run / users).read_text() == "mine" and sorted(p.name for p in run.iterdir()) == [users.split("/")[0]]


def test_fit_never_writes_into_the_dataset(synthetic_copy: Path, capfd: pytest.CaptureFixture) -> None:
    before = snapshot(synthetic_copy)
    for run in (synthetic_copy, synthetic_copy / "runs" / "x"):
        clean_error(
            in_process(capfd, *fit_args(synthetic_copy, run)),
            f"--trainer.default_root_dir {run} is inside the dataset's root folder",
        )
    assert snapshot(synthetic_copy) == before


def test_validate_in_a_training_run_keeps_the_fits_configuration(
    synthetic_root: Path, training_run: Path, capfd: pytest.CaptureFixture
) -> None:
    ok(
        in_process(
            capfd,
            "validate",
            "--config",
            SCRATCH_EPSPP,
            "--data.root",
            synthetic_root,
            "--ckpt_path",
            "last",
            "--trainer.default_root_dir",
            training_run,
            "--trainer.logger",
            "false",
            "--data.num_workers",
            "0",
            "--trainer.limit_val_batches",
            "1",
            *QUIET,
        )
    )
    assert (training_run / "config.yaml").read_text() == dump_mark("fit") + "# how the checkpoint was trained\n"
    assert (training_run / "config.validate.yaml").read_text().startswith(dump_mark("validate"))


# ------------------------------------------------------------------ Lightning's refusals, one line
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--trainer.max_steps", "-5", "`max_steps` must be a non-negative integer or -1"),
        ("--trainer.max_epochs", "-3", "`max_epochs` must be a non-negative integer or -1"),
        ("--trainer.strategy", "foo", "invalid strategy name"),
        ("--trainer.accelerator", "mps", "can not run on your system"),
        ("--trainer.accelerator", "gpu", "No supported gpu backend found!"),
        ("--trainer.accumulate_grad_batches", "0", "must be an integer >= 1, got 0"),  # Lightning divides by them
        ("--trainer.check_val_every_n_epoch", "0", "must be an integer >= 1, got 0"),
    ],
)
def test_trainer_settings_that_lightning_refuses_are_one_line(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture, flag: str, value: str, message: str
) -> None:
    if value == "gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = in_process(capfd, *fit_args(synthetic_root, tmp_path / "run", flag, value))
    error = clean_error(result, "epspp: error: ", flag, message)
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "run" / "checkpoints").exists()
