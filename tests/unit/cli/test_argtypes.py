"""argparse types of the tools' numbers: the bounds, open or closed, and values that are not finite numbers."""

from __future__ import annotations

import argparse

import pytest

from epspp.cli.argtypes import open_unit_interval, range_type, unit_interval


def test_closed_interval_keeps_its_bounds() -> None:
    assert [unit_interval(text) for text in ("0", "1", "0.25", "1e-3")] == [0.0, 1.0, 0.25, 0.001]


def test_open_interval_refuses_its_bounds_naming_the_interval() -> None:
    assert open_unit_interval("0.5") == 0.5
    for text in ("0", "1", "1.0"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^{text} is not in \(0, 1\)$"):
            open_unit_interval(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-0.01", "1.5"])
def test_values_outside_or_not_finite_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{text} is not in \[0, 1\]$"):
        unit_interval(text)


def test_text_that_is_not_a_number_is_named() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'half' is not a number$"):
        range_type(2, 8)("half")
    assert range_type(2, 8)("8") == 8.0


def test_an_argparse_error_names_the_flag_and_the_interval(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--rate", type=unit_interval)
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate", "2"])
    assert "tool: error: argument --rate: 2 is not in [0, 1]" in capsys.readouterr().err
