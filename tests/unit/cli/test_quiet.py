"""Quiet by default: ``--verbose`` is taken off the command line and kept in the environment; Lightning's tips are
dropped unless verbose, asked at each record."""

from __future__ import annotations

import logging

import pytest

from epspp.cli.quiet import VERBOSE_ENV, QuietLines, is_verbose, take_verbose_flag


def test_verbose_flag_is_stripped_and_set_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv, not delenv: monkeypatch restores (removes) a variable it set, but records nothing when delenv finds
    # none, and the flag below would then leave EPSPP_VERBOSE=1 for every later test of this process
    monkeypatch.setenv(VERBOSE_ENV, "")
    assert take_verbose_flag(["fit", "--config", "c.yaml"]) == ["fit", "--config", "c.yaml"] and not is_verbose()
    assert take_verbose_flag(["fit", "--verbose", "--config", "c.yaml"]) == ["fit", "--config", "c.yaml"]
    assert is_verbose()


@pytest.mark.parametrize(("value", "verbose"), [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)])
def test_epspp_verbose_values(monkeypatch: pytest.MonkeyPatch, value: str, verbose: bool) -> None:
    monkeypatch.setenv(VERBOSE_ENV, value)
    assert is_verbose() is verbose


def test_tips_are_dropped_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord(
            "pytorch_lightning.utilities.rank_zero", logging.INFO, __file__, 1, message, None, None
        )

    quiet = QuietLines()
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    assert not quiet.filter(record("💡 Tip: For seamless cloud logging ..."))
    assert not quiet.filter(record("TPU available: False, using: 0 TPU cores"))
    assert quiet.filter(record("GPU available: False, used: False"))
    assert quiet.filter(record("Restoring states from the checkpoint path at x.ckpt"))
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert quiet.filter(record("💡 Tip: For seamless cloud logging ..."))


def test_the_filter_goes_on_each_lightning_logger_once_and_wandb_is_silenced_unless_verbose_or_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from epspp.cli.quiet import LIGHTNING_LOGGERS, quiet_libraries

    for name in LIGHTNING_LOGGERS:  # each logger's filters as they were, after the test
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "filters", [f for f in logger.filters if not isinstance(f, QuietLines)])
    monkeypatch.setenv(VERBOSE_ENV, "")
    monkeypatch.setenv("WANDB_SILENT", "x")
    monkeypatch.delenv("WANDB_SILENT")
    quiet_libraries()
    quiet_libraries()
    assert [sum(isinstance(f, QuietLines) for f in logging.getLogger(n).filters) for n in LIGHTNING_LOGGERS] == [1] * 4
    assert os.environ["WANDB_SILENT"] == "true"
    monkeypatch.setenv("WANDB_SILENT", "false")  # the user's own
    quiet_libraries()
    assert os.environ["WANDB_SILENT"] == "false"
    monkeypatch.delenv("WANDB_SILENT")
    monkeypatch.setenv(VERBOSE_ENV, "1")
    quiet_libraries()
    assert "WANDB_SILENT" not in os.environ


@pytest.mark.parametrize(
    ("verbose", "silent", "set_"), [("", "true", True), ("", "1", True), ("1", "true", False), ("", "false", False)]
)
def test_wandbs_terminal_is_silenced_only_when_quiet_and_wandb_silent(
    monkeypatch: pytest.MonkeyPatch, verbose: str, silent: str, set_: bool
) -> None:
    term = pytest.importorskip("wandb.errors.term")
    from epspp.cli.quiet import quiet_wandb_settings

    monkeypatch.setattr(term, "_silent", False, raising=False)
    monkeypatch.setenv(VERBOSE_ENV, verbose)
    monkeypatch.setenv("WANDB_SILENT", silent)
    quiet_wandb_settings()
    assert term._silent is set_
