"""Issue 32 item 7: a fit never discards an earlier fit silently. A fit into a folder with an earlier fit's
last.ckpt and no ``--ckpt_path`` refuses in one line and keeps every file; ``--start_over`` sets the earlier
fit's files aside (``*.previous``) and starts anew; a failed command leaves no empty folder behind."""

from __future__ import annotations

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
