"""Issue 32 item 7: a fit never discards an earlier fit silently. A fit into a folder with an earlier fit's
last.ckpt and no ``--ckpt_path`` refuses in one line and keeps every file; ``--start_over`` sets the earlier
fit's files aside (``*.previous``) and starts anew; a failed command leaves no empty folder behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from fixtures.cli import SCRATCH_EPSPP, TINY_FIT, in_process
from fixtures.helpers import snapshot

from epspp.runs.ownership import claim_folder


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
        "--trainer.num_sanity_val_steps",
        "0",
        *TINY_FIT,
        *extra,
    ]


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("epspp: error: ") and "Traceback" not in stderr, stderr
    return errors[0]


def test_a_second_fit_refuses_then_continues_or_starts_over(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    in_process(capfd, *fit_args(synthetic_root, run), check=True)
    first = snapshot(run)
    assert "checkpoints/last.ckpt" in first and "progress.json" in first

    refused = in_process(capfd, *fit_args(synthetic_root, run))
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert line == (
        f"epspp: error: --trainer.default_root_dir {run} holds an earlier fit "
        f"({run}/checkpoints/last.ckpt): continue it with --ckpt_path last, or start over with "
        "--start_over (its files are kept as *.previous)"
    )
    assert snapshot(run) == first  # byte for byte, nothing added

    both = in_process(capfd, *fit_args(synthetic_root, run, "--ckpt_path", "last", "--start_over"))
    assert both.returncode == 2 and "give one of them" in one_error_line(both.stderr)
    assert snapshot(run) == first

    # continue: the progress file of the earlier fit does not stand in the way
    in_process(capfd, *fit_args(synthetic_root, run, "--ckpt_path", "last", "--trainer.max_steps", "3"), check=True)
    continued = snapshot(run)

    again = in_process(capfd, *fit_args(synthetic_root, run, "--start_over"), check=True)
    assert "the earlier fit's files are kept as checkpoints.previous" in again.stderr
    after = snapshot(run)
    for name in ("last.ckpt", "best.ckpt"):  # kept aside byte for byte, and a new fit's checkpoints written
        if f"checkpoints/{name}" in continued:
            assert after[f"checkpoints.previous/{name}"] == continued[f"checkpoints/{name}"]
    assert after["progress.previous.json"] == continued["progress.json"]
    assert after["config.previous.yaml"] == continued["config.yaml"]
    assert "checkpoints/last.ckpt" in after and after["checkpoints/last.ckpt"] != continued["checkpoints/last.ckpt"]

    in_process(capfd, *fit_args(synthetic_root, run, "--start_over"), check=True)  # a third fit: nothing replaced
    third = snapshot(run)
    assert third["checkpoints.previous/last.ckpt"] == after["checkpoints.previous/last.ckpt"]
    assert third["checkpoints.previous-2/last.ckpt"] == after["checkpoints/last.ckpt"]


def test_a_failed_fit_leaves_no_empty_folder_that_blocks_the_demo(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    run = tmp_path / "runs" / "demo" / "pretrain"
    result = in_process(capfd, *fit_args(tmp_path / "no-corpus", run))
    assert result.returncode == 2 and "does not exist" in one_error_line(result.stderr)
    assert not (tmp_path / "runs").exists()
    # an empty folder an older epspp left does not block `epspp demo` (it holds no file to replace)
    run.mkdir(parents=True)
    claim_folder(tmp_path / "runs" / "demo", "epspp demo", "--out")
    assert (tmp_path / "runs" / "demo" / "epspp_files.json").is_file()


def test_folders_from_a_config_are_under_the_write_rule(
    synthetic_copy: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """Issue 34 item 1: an absolute checkpoint folder that holds a user's last.ckpt, and a logger folder inside the
    dataset, are refused before anything is written, in one line naming the path and the config key."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "last.ckpt").write_bytes(b"the user's own checkpoint")
    config = tmp_path / "paths.yaml"
    checkpoint = "{class_path: pytorch_lightning.callbacks.ModelCheckpoint, init_args: {dirpath: %s, filename: last}}"
    config.write_text(f"trainer:\n  callbacks:\n    - {checkpoint % mine}\n")
    run = tmp_path / "run"
    before = snapshot(tmp_path)
    refused = in_process(capfd, *fit_args(synthetic_copy, run, "--config", config))
    assert refused.returncode == 2 and one_error_line(refused.stderr) == (
        f"epspp: error: trainer.callbacks[0].init_args.dirpath {mine} holds {mine}/last.ckpt, which this fit would "
        f"replace (the folder is outside --trainer.default_root_dir {run}): choose another folder, or move the "
        "file (to continue a fit from it: --ckpt_path)"
    )
    logger = "{class_path: pytorch_lightning.loggers.CSVLogger, init_args: {save_dir: %s}}"
    config.write_text(f"trainer:\n  logger:\n    - {logger % (synthetic_copy / 'logs')}\n")
    refused = in_process(capfd, *fit_args(synthetic_copy, run, "--config", config))
    assert refused.returncode == 2 and one_error_line(refused.stderr).startswith(
        f"epspp: error: trainer.logger[0].init_args.save_dir {synthetic_copy / 'logs'} is inside the dataset's root "
        f"folder {synthetic_copy}: "
    )
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "paths.yaml"} == {
        k: v for k, v in before.items() if k != "paths.yaml"
    }
    assert not run.exists()


def test_a_fit_into_a_folder_another_run_holds_is_refused(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """Issue 34 item 2: two fits into one run folder at once; the first holds the folder's lock (here: this test),
    the second stops in one line naming the folder and the holder, before it writes anything."""
    run = tmp_path / "run"
    run.mkdir()
    held = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = in_process(capfd, *fit_args(synthetic_root, run))
    finally:
        os.close(held)
    assert refused.returncode == 2 and one_error_line(refused.stderr).startswith(
        f"epspp: error: --trainer.default_root_dir {run} is in use by another run (pid {os.getpid()}: "
    )
    assert sorted(run.iterdir()) == []
