"""The probe's bad-input commands of issue 13, run as a user runs them: a clear one-line error or the right
result, and nothing outside the root or the output folder touched.

The session's 2-step localization checkpoint is shared (tests/conftest.py); the commands run in-process
(``in_process``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from fixtures.cli import CONFIGS, TINY_FIT, clean_error, in_process, ok, predict_args
from fixtures.helpers import snapshot, split_ids

from epspp.cli.lightning import warn_oversubscription

DEMO = CONFIGS / "demo" / "scratch"


@pytest.fixture(scope="module")
def checkpoint(localization_checkpoint: Path) -> Path:
    """The session's 2-step EPS++ localization checkpoint (tests/conftest.py)."""
    return localization_checkpoint


def dataset_files(root: Path) -> dict[str, str]:
    """Every file of a dataset root but the derived label cache (which building a dataset may add)."""
    return {k: v for k, v in snapshot(root).items() if not k.startswith(".cache/")}


@pytest.fixture
def base(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic set (the probe's ``base``)."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "base", ignore=shutil.ignore_patterns(".cache")))


# ------------------------------------------------------------------ defect 1
@pytest.mark.parametrize("folder", ["SegmentationClassAug", "saliency", "JPEGImages", "SegmentationClassAug/sub"])
def test_stage2_refuses_to_write_into_the_dataset(
    base: Path, checkpoint: Path, folder: str, capfd: pytest.CaptureFixture
) -> None:
    before = dataset_files(base)
    result = in_process(capfd, *predict_args(base, checkpoint, base / folder, "--pseudo_masks.save_scores", "true"))
    clean_error(result, "epspp: error:", "inside the dataset's", "choose a folder of its own")
    assert dataset_files(base) == before


# ------------------------------------------------------------------ defect 2
def test_split_ids_that_escape_are_refused_and_nothing_outside_is_touched(
    base: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "x.png").write_bytes(b"precious")
    (base / "ImageSets" / "Segmentation" / "evil.txt").write_text("train_000000\n../../victim/x\n")
    out = tmp_path / "out"
    result = in_process(
        capfd, *predict_args(base, checkpoint, out, "--data.predict_split", "evil", "--pseudo_masks.overwrite", "true")
    )
    clean_error(result, "evil.txt line 2", "'../../victim/x'", "not a plain file name")
    assert (victim / "x.png").read_bytes() == b"precious" and sorted(victim.iterdir()) == [victim / "x.png"]
    assert not out.exists() or not list(out.glob("*.png"))


# ------------------------------------------------------------------ defect 5
def test_predict_without_a_checkpoint_is_refused(
    base: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = [
        a
        for a in predict_args(base, Path("unused"), out, "--data.predict_split", "labeled_10pct")
        if str(a) not in ("--ckpt_path", "unused")
    ]
    clean_error(in_process(capfd, *args), "--ckpt_path", "--allow_random_weights")
    assert not list(out.glob("*.png"))
    # asked for explicitly, an untrained network's masks are written, and recorded as such
    ok(in_process(capfd, *args, "--allow_random_weights", "true"))
    assert len(list(out.glob("*.png"))) == 2
    assert json.loads((out / "provenance.json").read_text())["checkpoint_sha256"] is None
    # the rerun with the trained network does not keep them under its name
    trained = predict_args(base, checkpoint, out, "--data.predict_split", "labeled_10pct")
    clean_error(in_process(capfd, *trained), "made differently", "checkpoint_sha256: None ->")


# ------------------------------------------------------------------ defect 6
def test_resume_into_a_folder_made_differently_is_refused(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out, "--data.predict_split", "labeled_10pct")))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["inference"]["bg_threshold"] == pytest.approx(0.2) and provenance["checkpoint_sha256"]
    first = snapshot(out)
    (out / f"{split_ids(synthetic_root, 'labeled_10pct')[0]}.png").unlink()  # a half-written folder
    half = snapshot(out)
    other = predict_args(
        synthetic_root,
        checkpoint,
        out,
        "--data.predict_split",
        "labeled_10pct",
        "--model.init_args.bg_threshold",
        "0.4",
    )
    clean_error(in_process(capfd, *other), "made differently", "bg_threshold: 0.2 -> 0.4", "overwrite true")
    assert snapshot(out) == half
    # another checkpoint: refused too
    changed = tmp_path / "other.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["global_step"] = 12345
    torch.save(state, changed)
    args = [
        changed if a == checkpoint else a
        for a in predict_args(synthetic_root, checkpoint, out, "--data.predict_split", "labeled_10pct")
    ]
    clean_error(in_process(capfd, *args), "made differently", "checkpoint_sha256")
    # the same settings resume; overwrite rewrites with the new ones and records them
    ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out, "--data.predict_split", "labeled_10pct")))
    assert snapshot(out).keys() == first.keys()
    ok(in_process(capfd, *other, "--pseudo_masks.overwrite", "true"))
    assert json.loads((out / "provenance.json").read_text())["inference"]["bg_threshold"] == pytest.approx(0.4)


def test_masks_of_unknown_provenance_are_not_completed(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_000000.png").write_bytes((synthetic_root / "SegmentationClassAug" / "train_000000.png").read_bytes())
    clean_error(in_process(capfd, *predict_args(synthetic_root, checkpoint, out)), "unknown provenance")


# ------------------------------------------------------------------ defect 10
def test_mistyped_root_is_an_error_not_a_new_dataset(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    typo = tmp_path / "data" / "synthtic"
    result = in_process(
        capfd,
        "fit",
        "--config",
        DEMO / "localization_eps++.yaml",
        "--data.root",
        typo,
        "--trainer.default_root_dir",
        tmp_path / "run",
        "--trainer.logger",
        "false",
    )
    clean_error(result, f"dataset root {typo} does not exist", "epspp prepare synthetic")
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------ defect 11
def test_more_cpu_processes_than_cores_warns(capsys: pytest.CaptureFixture) -> None:
    cores = len(os.sched_getaffinity(0))
    warn_oversubscription("cpu", cores + 1)
    assert f"--trainer.devices {cores + 1} starts {cores + 1} processes on {cores} CPU cores" in capsys.readouterr().err
    warn_oversubscription("cpu", str(cores))
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ fail early, in one line
class _Payload:
    marker = ""

    def __reduce__(self):  # code that a crafted checkpoint would run on load
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("case", ["truncated", "garbage", "missing", "plain_dict", "other_stage", "pickled_code"])
def test_bad_checkpoints_are_one_line(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture, case: str
) -> None:
    bad = tmp_path / "bad.ckpt"
    data = checkpoint.read_bytes()
    if case == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif case == "garbage":
        bad.write_bytes(b"not a checkpoint at all")
    elif case == "plain_dict":
        torch.save({"weights": torch.zeros(2)}, bad)
    elif case == "other_stage":
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state["hyper_parameters"]["_class_path"] = "epspp.models.SegmentationModule"
        torch.save(state, bad)
    elif case == "pickled_code":
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        payload = _Payload()
        payload.marker = str(tmp_path / "code_ran")
        state["hyper_parameters"]["extra"] = payload
        torch.save(state, bad)
    args = [bad if a == checkpoint else a for a in predict_args(synthetic_root, checkpoint, tmp_path / "out")]
    needle = {
        "truncated": "cannot read checkpoint",
        "garbage": "cannot read checkpoint",
        "missing": "does not exist",
        "plain_dict": "not a Lightning checkpoint",
        "other_stage": "checkpoint of SegmentationModule",
        "pickled_code": "cannot read checkpoint",
    }[case]
    message = clean_error(in_process(capfd, *args), "epspp: error:", str(bad), needle)
    assert len([line for line in message.splitlines() if "error" in line]) == 1
    assert not (tmp_path / "code_ran").exists()


@pytest.mark.parametrize(("flag", "value"), [("batch_size", "0"), ("num_workers", "-1"), ("crop_size", "0")])
def test_bad_data_sizes_are_one_line(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture, flag: str, value: str
) -> None:
    result = in_process(
        capfd,
        "fit",
        "--config",
        DEMO / "localization_eps++.yaml",
        "--data.root",
        synthetic_root,
        f"--data.{flag}",
        value,
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.logger",
        "false",
    )
    clean_error(result, f"--data.{flag} must be", value)


def test_yaml_errors_name_the_file(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("trainer:\n  max_steps: [1\n")
    clean_error(in_process(capfd, "fit", "--config", config), f"config file {config} line", "not valid YAML")


def test_a_dataset_error_in_a_loader_worker_is_one_line(
    base: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    (base / "JPEGImages" / "val_000002.jpg").write_bytes(b"\xff\xd8 broken")  # found only when the worker reads it
    result = in_process(
        capfd,
        "validate",
        "--config",
        DEMO / "localization_eps++.yaml",
        "--data.root",
        base,
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.logger",
        "false",
        *TINY_FIT,
        "--data.num_workers",
        "1",
        "--data.preflight",
        "false",
    )
    message = clean_error(result, "epspp: error: cannot read image", "val_000002.jpg")
    assert "Original Traceback" not in message and "DataLoader worker" not in message


def test_the_preflight_finds_it_before_the_stage_starts(
    base: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    (base / "JPEGImages" / "val_000002.jpg").write_bytes(b"\xff\xd8 broken")
    result = in_process(
        capfd,
        "fit",
        "--config",
        DEMO / "localization_eps++.yaml",
        "--data.root",
        base,
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.logger",
        "false",
        *TINY_FIT,
    )
    clean_error(result, "split 'val'", "1 of 6 samples are bad", "val_000002.jpg")
    assert not (tmp_path / "checkpoints").exists()  # not a single training step
