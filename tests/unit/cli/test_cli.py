"""The `epspp` command itself: its overview, unknown commands, and the Lightning warnings it hides."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from epspp import __version__
from epspp.cli import (
    LIGHTNING_COMMANDS,
    TOOLS,
    check_config_files,
    one_line,
    packaged_configs,
    quiet_unactionable_warnings,
    run_command_line,
    run_tool,
)
from epspp.config_files import PACKAGED
from epspp.errors import ConfigError


def epspp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "epspp", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command() -> None:
    result = epspp("--help")
    assert result.returncode == 0
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert sorted(listed) == sorted([*LIGHTNING_COMMANDS, *TOOLS])


@pytest.mark.parametrize(("args", "problem"), [((), "no command given"), (("prepar",), "unknown command 'prepar'")])
def test_missing_or_unknown_command_shows_the_overview(args: tuple[str, ...], problem: str) -> None:
    result = epspp(*args)
    assert result.returncode == 2
    assert "batch-args" in result.stderr and result.stderr.rstrip().endswith(f"epspp: error: {problem}")


def test_version() -> None:
    assert epspp("--version").stdout.strip() == f"epspp {__version__}"


CKPT_CALLBACKS = (
    "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be "
    "provided during `Trainer` instantiation. Please add the following callbacks: [...]"
)
EMPTY_LOADER = "Total length of `DataLoader` across ranks is zero. Please make sure this was your intention."
NO_VALIDATION = "Total length of `list` across ranks is zero. Please make sure this was your intention."


def shown(subcommand: str, message: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_unactionable_warnings(subcommand)
        warnings.warn(message, UserWarning, stacklevel=1)
    return bool(caught)


@pytest.mark.parametrize("subcommand", ["predict", "validate", "test"])
def test_inference_hides_the_training_callback_warning(subcommand: str) -> None:
    assert not shown(subcommand, CKPT_CALLBACKS)


def test_fit_keeps_its_warnings() -> None:
    assert shown("fit", CKPT_CALLBACKS)
    assert shown("fit", EMPTY_LOADER)  # an empty training split is worth a warning


def test_only_a_resumed_predict_hides_the_empty_loader_warning() -> None:
    assert not shown("predict", EMPTY_LOADER)
    assert shown("validate", EMPTY_LOADER)


def test_a_fit_without_validation_split_says_nothing_of_its_empty_list_of_loaders() -> None:
    assert not shown("fit", NO_VALIDATION)
    assert shown("fit", EMPTY_LOADER)


def test_other_warnings_are_untouched() -> None:
    assert shown("predict", "something the user should see")


@pytest.mark.parametrize(("command", "entry"), sorted(TOOLS.items()))
def test_each_tool_names_its_modules_entry_function(command: str, entry: tuple[str, str]) -> None:
    module, function = entry
    assert module == "epspp.cli." + {"batch-args": "batch_args", "convert-weights": "convert"}.get(command, command)
    assert callable(getattr(importlib.import_module(module), function))


def test_a_tools_epspp_error_is_one_line_with_the_tools_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import epspp.cli.configs

    def refuse(args: list[str]) -> int:
        assert args == ["list", "x"]
        raise ConfigError("the disk is full")

    monkeypatch.setattr(epspp.cli.configs, "configs_main", refuse)
    assert run_tool("configs", ["list", "x"]) == 2
    assert capsys.readouterr().err == "epspp configs: error: the disk is full\n"


def test_one_line_takes_the_message_out_of_a_dataloader_workers_traceback() -> None:
    wrapped = (
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n  ...\n"
    )
    assert one_line(ConfigError(wrapped + "epspp.errors.DatasetError: image a.png does not decode\n")) == (
        "image a.png does not decode"
    )
    assert one_line(ConfigError(wrapped + "OSError: [Errno 28] No space left\n")) == "OSError: [Errno 28] No space left"
    assert one_line(ConfigError("plain: kept")) == "plain: kept"


def test_a_config_that_is_not_a_file_is_the_packaged_one_of_that_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("{}")
    args = ["fit", "--config", "voc/pseudo_masks.yaml", "-c", "configs/demo/pretrain.yaml"]
    args += ["--config=coco/pseudo_masks.yaml", "--data.root", "voc/pseudo_masks.yaml", "--config", "mine.yaml"]
    args += ["--config", "no/such.yaml", "--config", "--print_config"]
    assert packaged_configs(args) == [
        "fit",
        "--config",
        str(PACKAGED / "voc" / "pseudo_masks.yaml"),
        "-c",
        str(PACKAGED / "demo" / "pretrain.yaml"),
        "--config=" + str(PACKAGED / "coco" / "pseudo_masks.yaml"),
        "--data.root",
        "voc/pseudo_masks.yaml",  # not a --config value
        "--config",
        "mine.yaml",  # a file here wins
        "--config",
        "no/such.yaml",  # neither: left for the file check to name
        "--config",
        "--print_config",
    ]


@pytest.mark.parametrize(
    ("flag", "text", "message"),
    [
        ("--config", None, "config file {}: No such file or directory"),
        ("-c", "a: 1\nb: c: d\n", "config file {} line 2, column 5 is not valid YAML: mapping values are not allowed"),
        ("--config=", "", "config file {} is empty: expected a mapping of settings"),
        ("--config", "- 1\n- 2\n", "config file {} holds a list: expected a mapping of settings"),
    ],
)
def test_a_config_file_that_is_missing_or_not_a_mapping_is_named(
    tmp_path: Path, flag: str, text: str | None, message: str
) -> None:
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    good = tmp_path / "good.yaml"
    good.write_text("trainer: {max_steps: 1}\n")
    args = [
        "--config",
        str(good),
        f"{flag}{path}" if flag.endswith("=") else flag,
        *([] if flag.endswith("=") else [str(path)]),
    ]
    with pytest.raises(ConfigError) as error:
        check_config_files(args)
    assert str(error.value).startswith(message.format(path))
    check_config_files(["--config", str(good), "-c", str(good), f"--config={good}", "--config", "--print_config"])


@pytest.mark.parametrize(
    ("command", "flag", "start_over"),
    [("fit", "--start_over", True), ("fit", "--start-over", True), ("predict", "--start_over", False)],
)
def test_start_over_is_epspps_flag_of_fit_only(
    monkeypatch: pytest.MonkeyPatch, command: str, flag: str, start_over: bool
) -> None:
    import epspp.cli

    seen = {}
    monkeypatch.setattr(
        epspp.cli, "run_lightning_cli", lambda args, options, over: seen.update(args=args, options=options, over=over)
    )
    monkeypatch.setenv("WANDB_MODE", "")  # empty: as unset
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_command_line([command, flag, "--trainer.max_steps", "3"])
    kept = [] if start_over else [flag]
    assert seen == {
        "args": [command, *kept, "--trainer.max_steps", "3"],
        "options": [*kept, "--trainer.max_steps", "3"],
        "over": start_over,
    }
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    run_command_line([command])
    assert os.environ["WANDB_MODE"] == "online"  # the user's choice
