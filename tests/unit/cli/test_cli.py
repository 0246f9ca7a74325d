"""The `epspp` command itself: its overview, unknown commands, and the Lightning warnings it hides."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from epspp import __version__
from epspp.cli import LIGHTNING_COMMANDS, TOOLS, quiet_unactionable_warnings


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
