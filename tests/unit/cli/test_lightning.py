"""``epspp.cli.lightning`` without a Trainer: Lightning's refusals said after the flag they name, the oversubscription
warning at its exact boundary, the checkpoint checks before a run, and which options a checkpoint's
hyper-parameters may not replace."""

from __future__ import annotations

import contextlib
import json
import sys
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


# The CLI's hooks, called on a bare EPSCLI (no parser, no Trainer): what each does to the config and the trainer.


def _bare_cli(subcommand: str | None, config: Any = None) -> EPSCLI:
    instance = object.__new__(EPSCLI)  # the hooks without LightningCLI's __init__ (which would run the command)
    instance.subcommand = subcommand
    instance.config = config
    instance.config_init = config
    instance.start_over = False
    return instance


def test_a_users_error_inside_jsonargparses_wrapping_is_raised_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_lightning.cli import LightningCLI

    from epspp.cli.lightning import _user_error
    from epspp.errors import DatasetError

    inner = DatasetError("weights file w.pth is truncated")
    try:
        try:
            raise inner
        except DatasetError as error:
            raise KeyError("wrapped") from error
    except KeyError as error:
        try:
            raise ValueError("Does not validate against any of the Union subtypes")  # noqa: TRY301
        except ValueError as outer:
            wrapped = outer
        wrapped.__context__ = error
    assert _user_error(wrapped) is inner
    looped = ValueError("a")
    looped.__context__ = KeyError("b")
    looped.__context__.__context__ = looped  # a cycle ends the search
    assert _user_error(looped) is None and _user_error(None) is None

    def instantiate(self: Any) -> None:
        raise wrapped

    monkeypatch.setattr(LightningCLI, "instantiate_classes", instantiate)
    with pytest.raises(DatasetError) as raised:
        _bare_cli("fit").instantiate_classes()
    assert raised.value is inner and raised.value.__suppress_context__
    monkeypatch.setattr(LightningCLI, "instantiate_classes", lambda self: (_ for _ in ()).throw(looped))
    with pytest.raises(ValueError, match="^a$"):  # no error of the user's inside: jsonargparse's own
        _bare_cli("fit").instantiate_classes()


def test_the_trainer_gets_the_sync_batchnorm_and_atomic_checkpoint_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    from jsonargparse import Namespace
    from pytorch_lightning.cli import LightningCLI
    from pytorch_lightning.plugins import TorchCheckpointIO, TorchSyncBatchNorm

    from epspp.nets.sync_bn import TimmSyncBatchNorm
    from epspp.tasks.checkpoint import AtomicCheckpointIO

    monkeypatch.setattr(LightningCLI, "instantiate_trainer", lambda self, **kwargs: kwargs)

    def plugins(trainer: dict, **kwargs: Any) -> list[type]:
        config = Namespace(fit=Namespace(trainer=Namespace(**trainer)))
        return [type(p) for p in _bare_cli("fit", config).instantiate_trainer(**kwargs)["plugins"]]

    assert plugins({}) == [AtomicCheckpointIO]
    assert plugins({"sync_batchnorm": True}) == [TimmSyncBatchNorm, AtomicCheckpointIO]
    assert plugins({"sync_batchnorm": True, "plugins": TorchSyncBatchNorm()}) == [
        TorchSyncBatchNorm,
        AtomicCheckpointIO,
    ]
    assert plugins({"plugins": [TorchCheckpointIO()]}) == [TorchCheckpointIO]
    assert _bare_cli("fit", Namespace(fit=Namespace(trainer=Namespace()))).instantiate_trainer(plugins=[]) == {
        "plugins": []
    }


def test_a_refused_trainer_setting_is_one_line_naming_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from jsonargparse import Namespace
    from pytorch_lightning.cli import LightningCLI
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    from epspp.errors import DatasetError

    def refuse(self: Any, **kwargs: Any) -> None:
        raise MisconfigurationException("`max_steps` must be\n   a positive integer")

    monkeypatch.setattr(LightningCLI, "instantiate_trainer", refuse)
    config = Namespace(fit=Namespace(trainer=Namespace(max_steps=-5, callbacks=[])))
    with pytest.raises(ConfigError) as error:
        _bare_cli("fit", config).instantiate_trainer()
    assert str(error.value) == "--trainer.max_steps -5: `max_steps` must be a positive integer"
    ours = DatasetError("x")
    monkeypatch.setattr(LightningCLI, "instantiate_trainer", lambda self, **kwargs: (_ for _ in ()).throw(ours))
    with pytest.raises(DatasetError) as raised:  # an EPSError (a ValueError) is already the user's one line
        _bare_cli("fit", config).instantiate_trainer()
    assert raised.value is ours


def _parsed(monkeypatch: pytest.MonkeyPatch, subcommand: str, **config: Any) -> EPSCLI:
    from jsonargparse import Namespace
    from pytorch_lightning.cli import LightningCLI

    instance = _bare_cli(subcommand)

    def parse(self: Any, parser: Any, args: Any) -> None:
        self.config = Namespace(subcommand=subcommand, **{subcommand: Namespace(**config)})

    monkeypatch.setattr(LightningCLI, "parse_arguments", parse)
    instance.parse_arguments(None, None)
    return instance


def test_ckpt_path_last_and_best_outside_fit_become_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jsonargparse import Namespace

    def ns(**kwargs: Any) -> Namespace:
        return Namespace(**kwargs)

    callbacks = [ns(class_path="ModelCheckpoint", init_args=ns(dirpath="ck", monitor="val/mIoU", filename="best"))]
    trainer = ns(default_root_dir=str(tmp_path), callbacks=callbacks)
    with pytest.raises(ConfigError) as error:
        _parsed(monkeypatch, "validate", ckpt_path="best", trainer=trainer, weights_only=None)
    assert str(error.value) == (
        f"--ckpt_path best: no best checkpoint in {tmp_path / 'ck'} (the config's ModelCheckpoint folders): pass "
        "the checkpoint file, e.g. --ckpt_path RUN/checkpoints/last.ckpt"
    )
    (tmp_path / "ck").mkdir()
    torch.save({"state_dict": {}}, tmp_path / "ck" / "best.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "ck" / "last.ckpt")
    parsed = _parsed(monkeypatch, "test", ckpt_path="best", trainer=trainer, weights_only=None)
    assert parsed.config.test.ckpt_path == str(tmp_path / "ck" / "best.ckpt")
    assert parsed.config.test.weights_only is True  # None (Lightning's default) becomes true
    assert parsed.inference_options == {}  # no model
    fit = _parsed(monkeypatch, "fit", ckpt_path="last", trainer=trainer, weights_only=False)
    assert (fit.config.fit.ckpt_path, fit.config.fit.weights_only) == ("last", False)  # Lightning resolves it
    model = ns(
        class_path="epspp.tasks.segmentation.SegmentationModule",
        init_args=ns(tta_scales=[1.0, 0.75], crf=True, lr=0.01, channels_last=True),
    )
    parsed = _parsed(monkeypatch, "predict", ckpt_path=None, trainer=trainer, model=model)
    assert parsed.inference_options == {"tta_scales": [1.0, 0.75], "crf": True, "channels_last": True}
    assert "weights_only" not in parsed.config.predict  # an option the subcommand lacks is not added


def test_after_instantiation_the_mask_writer_knows_the_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from jsonargparse import Namespace
    from pytorch_lightning.cli import LightningCLI

    from epspp.callbacks.mask_writer import MaskWriter

    monkeypatch.setattr(LightningCLI, "after_instantiate_classes", lambda self: None)
    for name in ("LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    writer = MaskWriter(output_dir="out")
    instance = _bare_cli("predict", Namespace(predict=Namespace(ckpt_path="run/last.ckpt", trainer=Namespace())))
    instance.trainer = types.SimpleNamespace(callbacks=[object(), writer])
    instance.after_instantiate_classes()
    assert writer.checkpoint_path == "run/last.ckpt"
    model = Namespace(init_args=Namespace(saliency_loss="ird", ird_warmup_steps=100))
    config = Namespace(fit=Namespace(ckpt_path=None, trainer=Namespace(max_steps=50), model=model))
    instance = _bare_cli("fit", config)
    instance.trainer = types.SimpleNamespace(callbacks=[MaskWriter()])
    instance.after_instantiate_classes()
    assert instance.trainer.callbacks[0].checkpoint_path is None  # no --ckpt_path: none
    assert capsys.readouterr().err == (
        "[epspp] --model.init_args.ird_warmup_steps 100 >= --trainer.max_steps 50: IRD never drops a pixel (EPS++ "
        "without its inconsistent-region drop) in this run; lower --model.init_args.ird_warmup_steps (e.g. 10) to "
        "train the full loss\n"
    )
    instance = _bare_cli("validate", Namespace(validate=config.fit))  # only a fit trains: no note
    instance.trainer = types.SimpleNamespace(callbacks=[])
    instance.after_instantiate_classes()
    assert capsys.readouterr().err == ""


def test_before_instantiation_predict_needs_a_checkpoint_and_progress_bars_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jsonargparse import Namespace

    calls: list[str] = []
    monkeypatch.setattr(cli, "check_config", lambda config: calls.append("checked"))
    monkeypatch.setattr(cli, "prepare_run", lambda config, subcommand, start_over: calls.append(subcommand))
    monkeypatch.setattr(cli, "is_verbose", lambda: False)

    def config(**trainer: Any) -> Namespace:
        callbacks = [Namespace(class_path=f"x.{name}") for name in ("StepProgressBar", "MaskWriter", "RichProgressBar")]
        return Namespace(ckpt_path=None, trainer=Namespace(callbacks=callbacks, logger=None, **trainer))

    instance = _bare_cli("predict", Namespace(predict=config()))
    instance.inference_options = {}
    with pytest.raises(ConfigError) as error:
        instance.before_instantiate_classes()
    assert str(error.value) == (
        "predict needs the trained network: pass --ckpt_path CKPT (or --allow_random_weights true for the masks of "
        "an untrained network)"
    )
    assert calls == []  # refused before anything
    run = config(enable_progress_bar=False)
    instance = _bare_cli("fit", Namespace(fit=run))
    instance.inference_options = {}
    instance.before_instantiate_classes()
    assert [c.class_path for c in run.trainer.callbacks] == ["x.MaskWriter"]
    assert run.trainer.enable_model_summary is False and calls == ["checked", "fit"]
    kept = config(enable_progress_bar=None, enable_model_summary=True)
    instance = _bare_cli("predict", Namespace(predict=kept))
    instance.inference_options = {}
    kept.allow_random_weights = True
    instance.before_instantiate_classes()
    assert len(kept.trainer.callbacks) == 3 and kept.trainer.enable_model_summary is True


def test_the_config_dump_starts_with_its_mark_and_keeps_a_users_file(tmp_path: Path) -> None:
    from epspp.cli.lightning import RunConfigDump

    def dump(global_zero: bool) -> RunConfigDump:
        callback = object.__new__(RunConfigDump)
        callback.parser = types.SimpleNamespace(dump=lambda config, skip_none: "seed: 7\n")
        callback.config, callback.config_filename, callback.already_saved = None, "config.yaml", False
        trainer = types.SimpleNamespace(
            log_dir=str(tmp_path), is_global_zero=global_zero, strategy=types.SimpleNamespace(broadcast=lambda x: True)
        )
        callback.setup(trainer, None, "validate")
        return callback

    mark = (
        "# epspp validate: this run's configuration as Lightning dumps it (each validate in this folder rewrites it)\n"
    )
    dump(global_zero=False)
    assert list(tmp_path.iterdir()) == []  # rank 0 writes it
    assert dump(global_zero=True).already_saved is True
    assert (tmp_path / "config.yaml").read_text() == mark + "seed: 7\n"
    (tmp_path / "config.yaml").write_text("mine\n")
    dump(global_zero=True)
    assert (tmp_path / "config.yaml").read_text() == "mine\n"
    assert (tmp_path / "config.validate.yaml").read_text() == mark + "seed: 7\n"


class _Run:
    """A W&B run that records how it was finished."""

    def __init__(self) -> None:
        self.finished: list[int] = []

    def finish(self, exit_code: int) -> None:
        self.finished.append(exit_code)


@pytest.mark.parametrize("fails", [False, True])
def test_the_wandb_run_a_command_starts_is_finished_with_its_exit_code(
    fails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = types.SimpleNamespace(run=None)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    started = _Run()
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with cli.wandb_run_finished():
            wandb.run = started
            if fails:
                raise RuntimeError("the fit failed")
    assert started.finished == [1 if fails else 0]


def test_a_callers_wandb_run_is_left_open_and_wandb_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    callers = _Run()
    wandb = types.SimpleNamespace(run=callers)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    with cli.wandb_run_finished():
        pass  # the command's logger logged into the caller's run
    assert callers.finished == []
    with cli.wandb_run_finished():
        wandb.run = started = _Run()  # the caller's run ended and the command started its own
    assert callers.finished == [] and started.finished == [0]
    monkeypatch.delitem(sys.modules, "wandb")
    with cli.wandb_run_finished():
        pass
    assert "wandb" not in sys.modules
