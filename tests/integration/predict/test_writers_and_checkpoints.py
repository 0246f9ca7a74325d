"""Issue 21's probe, run as a user runs it: writers stay in their folder and never replace a file they did not
write, checkpoints match the dataset's classes and are found by keyword, masks resume only on their dataset.

One 2-step localization checkpoint is shared by the module; the commands run in-process (``in_process``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures.cli import CONFIGS, TINY_FIT, clean_error, in_process, ok, predict_args, run_epspp
from fixtures.helpers import snapshot, split_ids

from epspp.runs.folder import dump_mark

DEMO = CONFIGS / "demo" / "scratch"
SMALL = ("--data.predict_split", "labeled_10pct")  # 2 images


@pytest.fixture(scope="module")
def run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fit run folder: RUN/checkpoints/last.ckpt of a 2-step tiny localization network (no best.ckpt)."""
    folder = tmp_path_factory.mktemp("localization")
    ok(
        run_epspp(
            [
                "fit",
                "--config",
                DEMO / "localization_eps++.yaml",
                "--data.root",
                synthetic_root,
                "--trainer.default_root_dir",
                folder,
                "--trainer.logger",
                "false",
                "--trainer.num_sanity_val_steps",
                "0",
                *TINY_FIT,
            ],
            cwd=folder,
            check=False,
        )
    )
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    return folder


@pytest.fixture
def checkpoint(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture
def base(synthetic_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synthetic_root, tmp_path / "base", ignore=shutil.ignore_patterns(".cache")))


def dataset_files(root: Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(root).items() if not k.startswith(".cache/")}


# ------------------------------------------------------------------ item 1
@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlinked_subdir", "symlinked_scores"])
def test_derived_folders_that_leave_the_output_or_enter_the_dataset_are_refused(
    base: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture, case: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    extra = ["--pseudo_masks.save_scores", "true"]
    if case == "dotdot":
        extra += ["--pseudo_masks.mask_subdir", "../escape"]
    elif case == "absolute":
        extra += ["--pseudo_masks.mask_subdir", str(base / "SegmentationClassAug")]
    elif case == "symlinked_subdir":
        (out / "masks").symlink_to(base / "SegmentationClassAug")
        extra += ["--pseudo_masks.mask_subdir", "masks"]
    else:
        (out / "scores").symlink_to(base / "saliency")
    before, outside = dataset_files(base), sorted(p.name for p in tmp_path.iterdir())
    result = in_process(capfd, *predict_args(base, checkpoint, out, *SMALL, *extra))
    option = "save_scores" if case == "symlinked_scores" else "mask_subdir"
    clean_error(result, "epspp: error:", f"--pseudo_masks.{option}", "outside --pseudo_masks.output_dir")
    assert dataset_files(base) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == outside  # no ../escape created
    assert not list(out.glob("*.png"))


def test_a_plain_mask_subdir_still_writes_there(
    base: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    ok(in_process(capfd, *predict_args(base, checkpoint, out, *SMALL, "--pseudo_masks.mask_subdir", "a/b")))
    assert {p.stem for p in (out / "a" / "b").glob("*.png")} == set(split_ids(base, "labeled_10pct"))


# ------------------------------------------------------------------ item 2
def test_a_users_config_yaml_in_the_run_folder_is_never_replaced(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = "# my notes on this experiment\nseed_everything: 7  # the seed I want\n"
    (out / "config.yaml").write_text(mine)
    for _ in range(2):  # the second run rewrites its own dump
        ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out, *SMALL)))
        assert (out / "config.yaml").read_text() == mine
        dump = (out / "config.predict.yaml").read_text()
        assert dump.startswith(dump_mark("predict")) and "predict_split: labeled_10pct" in dump
    # a folder without a file of the user's: the dump is config.yaml, and reruns rewrite it
    fresh = tmp_path / "fresh"
    for seed in ("3", "4"):
        ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, fresh, *SMALL, "--seed_everything", seed)))
        assert f"seed_everything: {seed}" in (fresh / "config.yaml").read_text()
    assert not (fresh / "config.predict.yaml").exists()


# ------------------------------------------------------------------ item 5
def test_checkpoint_of_the_same_classes_in_another_order_is_refused(
    base: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    classes = json.loads((base / "classes.json").read_text())
    names = classes["names"]
    trained = list(names)
    names[1], names[2] = names[2], names[1]
    (base / "classes.json").write_text(json.dumps(classes))
    out = tmp_path / "out"
    message = clean_error(
        in_process(capfd, *predict_args(base, checkpoint, out, *SMALL)), "epspp: error:", str(trained), str(names)
    )
    assert len([line for line in message.splitlines() if "error" in line]) == 1
    assert not list(out.glob("*.png")) if out.exists() else True


# ------------------------------------------------------------------ item 6
def test_masks_of_one_dataset_are_not_completed_from_another_with_the_same_ids(
    synthetic_root: Path, base: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out, *SMALL)))
    record = json.loads((out / "provenance.json").read_text())["dataset"]
    assert record["root"] == str(synthetic_root.resolve()) and len(record["ids_sha256"]) == 64
    (out / f"{split_ids(synthetic_root, 'labeled_10pct')[0]}.png").unlink()  # a half-written folder
    half = snapshot(out)
    clean_error(in_process(capfd, *predict_args(base, checkpoint, out, *SMALL)), "made differently", "dataset.root")
    assert snapshot(out) == half
    ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out, *SMALL)))  # its own dataset resumes


# ------------------------------------------------------------------ item 12
@pytest.mark.parametrize("keyword", ["last", "best"])
def test_ckpt_path_keyword_without_a_checkpoint_is_one_line(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture, keyword: str
) -> None:
    args = predict_args(synthetic_root, Path(keyword), tmp_path / "out", *SMALL)
    clean_error(in_process(capfd, *args), f"--ckpt_path {keyword}: no {keyword} checkpoint in", "pass the checkpoint")


def test_ckpt_path_last_finds_the_runs_checkpoint_and_its_network(
    synthetic_root: Path, run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """Without the tiny network's options on the command line: the network comes from the checkpoint."""
    result = in_process(
        capfd,
        "validate",
        "--config",
        DEMO / "localization_eps++.yaml",
        "--data.root",
        synthetic_root,
        "--ckpt_path",
        "last",
        "--trainer.default_root_dir",
        run,
        "--trainer.logger",
        "false",
        "--data.num_workers",
        "0",
        "--trainer.accelerator",
        "cpu",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
    )
    ok(result)
    assert "val/mIoU" in result.stdout
    clean_error(
        in_process(
            capfd,
            "validate",
            "--config",
            DEMO / "localization_eps++.yaml",
            "--data.root",
            synthetic_root,
            "--ckpt_path",
            "best",
            "--trainer.default_root_dir",
            run,
            "--trainer.logger",
            "false",
        ),
        "--ckpt_path best: no best checkpoint",
    )


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_truncated_checkpoint_reached_through_last_is_one_line(
    synthetic_root: Path, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture, subcommand: str
) -> None:
    (tmp_path / "checkpoints").mkdir()
    cut = tmp_path / "checkpoints" / "last.ckpt"
    cut.write_bytes(checkpoint.read_bytes()[:5000])
    result = in_process(
        capfd,
        subcommand,
        "--config",
        DEMO / "localization_eps++.yaml",
        "--data.root",
        synthetic_root,
        "--ckpt_path",
        "last",
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.logger",
        "false",
        *TINY_FIT,
    )
    clean_error(result, f"cannot read checkpoint {cut}")
    assert cut.stat().st_size == 5000


# ------------------------------------------------------------------ item 13
def test_a_full_disk_while_writing_masks_is_one_line_and_keeps_earlier_masks(
    synthetic_root: Path,
    checkpoint: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import Image

    out = tmp_path / "out"
    ok(in_process(capfd, *predict_args(synthetic_root, checkpoint, out, *SMALL)))
    first, second = split_ids(synthetic_root, "labeled_10pct")
    kept = (out / f"{first}.png").read_bytes()
    (out / f"{second}.png").unlink()

    def full_disk(self, fp, *args, **kwargs):  # the mask's temporary file is half-written, then the disk is full
        Path(fp).write_bytes(b"\x89PNG part")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    clean_error(
        in_process(capfd, *predict_args(synthetic_root, checkpoint, out, *SMALL)),
        f"cannot write the mask of {second} in {out}: No space left on device",
    )
    assert (out / f"{first}.png").read_bytes() == kept
    assert not list(out.glob(".*.tmp.*"))


def test_a_validation_interval_longer_than_an_epoch_is_one_line(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    # the demo's stage-3 configs validate every 125 steps across epochs; per-epoch validation on top of that is
    # Lightning's ValueError (20 train images / 4 = 5 batches an epoch): one line, and how to ask for it
    args = [
        "fit",
        "--config",
        CONFIGS / "demo" / "segmentation_wsss.yaml",
        "--data.root",
        synthetic_root,
        "--data.pseudo_mask_dir",
        "null",
        "--model.init_args.pretrained_path",
        "null",
        "--trainer.default_root_dir",
        tmp_path / "run",
        "--trainer.logger",
        "false",
        "--trainer.check_val_every_n_epoch",
        "1",
        *TINY_FIT,
    ]
    clean_error(in_process(capfd, *args), "val_check_interval", "--trainer.val_check_interval 1.0")
