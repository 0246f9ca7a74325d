"""``epspp.cli.lightning`` without a Trainer: Lightning's refusals said after the flag they name, the oversubscription
warning at its exact boundary, the checkpoint checks before a run, and which options a checkpoint's
hyper-parameters may not replace."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from epspp.cli import lightning as cli
from epspp.cli.lightning import EPSCLI, check_checkpoint, lightning_error, warn_oversubscription
from epspp.errors import CheckpointMismatchError, ConfigError


@pytest.mark.parametrize(
    ("message", "trainer", "said"),
    [
        # a setting named in the message, whitespace collapsed to one line
        (
            "`max_steps` must be\n  >= -1",
            {"max_steps": -5, "accelerator": "cpu"},
            "--trainer.max_steps -5: `max_steps` must be >= -1",
        ),
        # else a setting whose value the message quotes
        ("Device 'gpu' is not available", {"max_steps": 3, "accelerator": "gpu"}, "--trainer.accelerator gpu: "),
        # a value inside a longer number or word is not a quote of it; a bool never is; callbacks and None are skipped
        (
            "precision 1.5 or 10 unknown, True",
            {"devices": 1, "benchmark": True, "callbacks": "precision", "num_nodes": None},
            "precision 1.5 or 10 unknown, True (a --trainer.* setting)",
        ),
        ("strategy ddp_spawn needs devices", {"devices": 4, "strategy": "ddp"}, "--trainer.devices 4: "),
        ("bad value 4.", {"devices": 4}, "--trainer.devices 4: bad value 4."),
    ],
)
def test_lightning_error(message: str, trainer: dict, said: str) -> None:
    assert lightning_error(ValueError(message), trainer).startswith(said)
    if said.endswith("setting)"):
        assert lightning_error(ValueError(message), trainer) == said


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(cli.torch.cuda, "is_available", lambda: False)
    for name in ("LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize(
    ("accelerator", "devices", "warns"),
    [
        ("cpu", 2, False),  # exactly the cores
        ("cpu", 3, True),
        ("cpu", "3", True),
        ("auto", 3, True),  # auto without a GPU runs on the CPU
        (None, 3, True),
        ("gpu", 3, False),
        ("cpu", "auto", False),
        ("cpu", [0, 1, 2], False),
    ],
)
def test_oversubscription_boundary(accelerator: Any, devices: Any, warns: bool, capsys: pytest.CaptureFixture) -> None:
    warn_oversubscription(accelerator, devices)
    err = capsys.readouterr().err
    assert err == (
        "[epspp] warning: --trainer.devices 3 starts 3 processes on 2 CPU cores: they compete for the cores and "
        "run slower than fewer would\n"
        if warns
        else ""
    )


@pytest.mark.usefixtures("two_cores")
def test_oversubscription_said_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP child parses the same command line again
    warn_oversubscription("cpu", 3)
    assert capsys.readouterr().err == ""


def _checkpoint(path: Path, **hyper_parameters: Any) -> str:
    torch.save({"state_dict": {}, "hyper_parameters": hyper_parameters}, path)
    return str(path)


LOCALIZATION = types.SimpleNamespace(class_path="epspp.tasks.localization.LocalizationTask")


def test_check_checkpoint(tmp_path: Path) -> None:
    for keyword in ("last", "best", "hpc", None, ""):
        check_checkpoint({"ckpt_path": keyword}, LOCALIZATION)  # Lightning resolves these (or there is none)
    with pytest.raises(ConfigError, match=rf"^--ckpt_path {tmp_path / 'no.ckpt'} does not exist$"):
        check_checkpoint({"ckpt_path": str(tmp_path / "no.ckpt")}, LOCALIZATION)
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": 1}, plain)
    with pytest.raises(CheckpointMismatchError, match="is not a Lightning checkpoint"):
        check_checkpoint({"ckpt_path": str(plain)}, LOCALIZATION)
    (tmp_path / "text.ckpt").write_text("not a zip")
    with pytest.raises(CheckpointMismatchError, match=r"^cannot read checkpoint .*text.ckpt \("):
        check_checkpoint({"ckpt_path": str(tmp_path / "text.ckpt")}, LOCALIZATION)
    # the stage is compared by class name: epspp.models.X and epspp.tasks.X are the same class
    same = _checkpoint(tmp_path / "same.ckpt", _class_path="epspp.models.LocalizationTask")
    check_checkpoint({"ckpt_path": same}, LOCALIZATION)
    other = _checkpoint(tmp_path / "other.ckpt", _class_path="epspp.tasks.segmentation.SegmentationTask")
    with pytest.raises(
        CheckpointMismatchError, match="is a checkpoint of SegmentationTask, but this config runs LocalizationTask"
    ):
        check_checkpoint({"ckpt_path": other}, LOCALIZATION)
    check_checkpoint({"ckpt_path": other}, None)  # no model class to compare with
    # a keyword's file (ckpt_path "last" resolved by the caller) is checked too
    with pytest.raises(CheckpointMismatchError, match="is a checkpoint of SegmentationTask"):
        check_checkpoint({"ckpt_path": "last"}, LOCALIZATION, other)


def test_check_checkpoint_classes_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "classes.json").write_text(json.dumps({"names": ["background", "cat", "dog"]}))
    two = _checkpoint(tmp_path / "two.ckpt", num_classes=2, class_names=["background", "cat", "dog"])
    check_checkpoint({"ckpt_path": two, "data": {"root": str(root)}}, LOCALIZATION)
    three = _checkpoint(tmp_path / "three.ckpt", num_classes=3)
    with pytest.raises(CheckpointMismatchError, match="trained for 3 object classes but the dataset has 2"):
        check_checkpoint({"ckpt_path": three, "data": {"root": str(root)}}, LOCALIZATION)
    swapped = _checkpoint(tmp_path / "swapped.ckpt", num_classes=2, class_names=["background", "dog", "cat"])
    with pytest.raises(CheckpointMismatchError, match="in this order"):
        check_checkpoint({"ckpt_path": swapped, "data": {"root": str(root)}}, LOCALIZATION)
    check_checkpoint({"ckpt_path": three, "data": {"root": str(tmp_path)}}, LOCALIZATION)  # no classes.json there


def _keep(subcommand: str, options: dict, init_args: dict, ckpt_path: str | None) -> dict:
    cli_ = types.SimpleNamespace(subcommand=subcommand, inference_options=options)
    config = {"model": types.SimpleNamespace(init_args=init_args), "ckpt_path": ckpt_path}
    EPSCLI.keep_inference_options(cli_, config)  # type: ignore[arg-type]
    return init_args


def test_keep_inference_options() -> None:
    checkpoint_args = {"scales": [1.0], "flip": False, "pretrained": True, "pretrained_path": "stage0.ckpt", "lr": 0.1}
    kept = {"scales": [1.0, 0.5], "flip": True}
    assert _keep("predict", kept, dict(checkpoint_args), "last.ckpt") == {
        "scales": [1.0, 0.5],
        "flip": True,
        "pretrained": False,  # the checkpoint's weights replace the backbone's initial ones
        "pretrained_path": None,
        "lr": 0.1,
    }
    fit = _keep("fit", kept, dict(checkpoint_args), "last.ckpt")  # a resumed fit keeps its initial weights' options
    assert (fit["pretrained"], fit["pretrained_path"], fit["scales"]) == (True, "stage0.ckpt", [1.0, 0.5])
    random = _keep("predict", {}, dict(checkpoint_args), None)  # --allow_random_weights: no checkpoint
    assert random == checkpoint_args
    assert _keep("validate", {}, {"lr": 0.1}, "x.ckpt") == {"lr": 0.1}  # keys a model lacks are not added
