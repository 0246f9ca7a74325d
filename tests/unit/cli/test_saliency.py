"""``epspp saliency``'s command line: each option reaches ``epspp.saliency.write_saliency_maps`` (no detector
runs: the library call is recorded)."""

from __future__ import annotations

from typing import Any

import pytest

from epspp.cli import saliency as cli


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ("i", "o", "u2net", None, 50)),
        (
            ["--model", "isnet-general-use", "--model-path", "m.onnx", "--progress-every", "1"],
            ("i", "o", "isnet-general-use", "m.onnx", 1),
        ),
    ],
)
def test_each_option_reaches_the_writer(monkeypatch: pytest.MonkeyPatch, options: list[str], expected: tuple) -> None:
    seen: list[tuple] = []
    monkeypatch.setattr(cli, "write_saliency_maps", lambda *args: seen.append(args))
    assert cli.saliency_main(["--images", "i", "--out", "o", *options]) == 0
    assert seen == [expected]


def test_an_unknown_model_is_refused_by_the_parser(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.saliency_main(["--images", "i", "--out", "o", "--model", "u2"])
    assert exit_.value.code == 2 and "argument --model: invalid choice: 'u2'" in capsys.readouterr().err


def test_a_writers_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def refuse(*args: Any) -> None:
        raise cli.library.SaliencyError("--images i: no such folder")

    monkeypatch.setattr(cli, "write_saliency_maps", refuse)
    assert cli.saliency_main(["--images", "i", "--out", "o"]) == 2
    assert capsys.readouterr().err == "epspp saliency: error: --images i: no such folder\n"
