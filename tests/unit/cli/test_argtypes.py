"""argparse types of the tools' numbers: the bounds, open or closed, and values that are not finite numbers."""

from __future__ import annotations

import argparse
import re

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


def test_an_integer_range_keeps_its_exact_bounds() -> None:
    from epspp.cli.argtypes import class_count, int_range, processes, seed

    assert [seed("0"), seed("4294967295"), processes("1"), processes("1024"), class_count("254")] == [
        0,
        2**32 - 1,
        1,
        1024,
        254,
    ]
    for parse, text, bounds in (
        (seed, "-1", "[0, 4294967295]"),
        (seed, "4294967296", "[0, 4294967295]"),
        (processes, "0", "[1, 1024]"),
        (processes, "1025", "[1, 1024]"),
        (class_count, "255", "[1, 254]"),  # 8-bit masks: 255 is the ignore label
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^{text} is not in {re.escape(bounds)}$"):
            parse(text)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'2\.5' is not an integer$"):
        int_range(1, 3)("2.5")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["saliency-errors", "--seeds", "0", "-3"], "argument --seeds: -3 is not in [0, 4294967295]"),
        (["readings", "--jobs", "0"], "argument --jobs: 0 is not in [1, 1024]"),
        (["saliency-errors", "--image-size", "100000"], "argument --image-size: 100000 is not in [1, 4096]"),
        (["labeled-fraction", "--num-classes", "291"], "argument --num-classes: 291 is not in [1, 254]"),
    ],
)
def test_study_refuses_a_number_out_of_range_naming_flag_value_and_range(
    capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    from epspp.cli.study import parser

    with pytest.raises(SystemExit) as exit_:  # the parser alone: a study that started would train for hours
        parser().parse_args(args)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("epspp study") and message in error


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["batch-args", "--config", "demo/localization_eps++.yaml", "--devices", "0"], "--devices: 0 is not in"),
        (["batch-args", "--config", "demo/localization_eps++.yaml", "--num-nodes", "-2"], "--num-nodes: -2 is not in"),
        (["batch-args", "--config", "demo/localization_eps++.yaml", "--devices", "5000"], "5000 is not in [1, 1024]"),
        (["check", "--data.root", "x", "--workers", "100000"], "argument --workers: 100000 is not in [1, 1024]"),
    ],
)
def test_the_tools_refuse_a_number_out_of_range_naming_flag_value_and_range(
    capsys: pytest.CaptureFixture, command: list[str], message: str
) -> None:
    from epspp.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"epspp {command[0]}") and message in error
