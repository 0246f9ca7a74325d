"""The `epspp` command hides the Lightning warnings a user cannot act on, and only in the subcommands listed."""

from __future__ import annotations

import warnings

import pytest

from epspp.cli import quiet_unactionable_warnings

CKPT_CALLBACKS = ("Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be "
                  "provided during `Trainer` instantiation. Please add the following callbacks: [...]")
EMPTY_LOADER = "Total length of `DataLoader` across ranks is zero. Please make sure this was your intention."


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


def test_other_warnings_are_untouched() -> None:
    assert shown("predict", "something the user should see")
