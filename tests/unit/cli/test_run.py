"""``epspp run``'s command line: each option reaches its argument of ``epspp.run.run_own_data`` (defaults and values
away from them), and the final line names the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from epspp.cli import run as cli


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple, dict]]:
    seen: list[tuple[tuple, dict]] = []

    def run_own_data(*args: Any, **kwargs: Any) -> dict:
        seen.append((args, kwargs))
        return {"report": Path("o/report/report.md"), "picture": Path("o/report/overview.png")}

    monkeypatch.setattr(cli, "run_own_data", run_own_data)
    return seen


def test_the_defaults(calls: list, capsys: pytest.CaptureFixture) -> None:
    assert cli.run_main(["--images", "i", "--labels", "l.csv", "--out", "o"]) == 0
    ((args, kwargs),) = calls
    assert args == (Path("i"), Path("l.csv"), Path("o"))
    assert kwargs == {
        "saliency": None,
        "preset": "photos",
        "method": "eps++",
        "predict": None,
        "max_steps": None,
        "pretrained": True,
        "saliency_model": None,
        "saliency_model_path": None,
        "overrides": [],
    }
    assert (
        capsys.readouterr().out
        == f"[run] report: {Path('o/report/report.md')} (picture {Path('o/report/overview.png')})\n"
    )


def test_every_option_away_from_its_default(calls: list) -> None:
    argv = ["--images", "i", "--labels", "l.json", "--out", "o", "--saliency", "s", "--preset", "mine"]
    argv += ["--method", "cam", "--predict", "new", "--max-steps", "7", "--no-pretrained", "--saliency-model", "isnet"]
    argv += ["--saliency-model-path", "m.onnx", "--", "--data.num_workers=0", "--x"]
    assert cli.run_main(argv) == 0
    ((_, kwargs),) = calls
    assert kwargs == {
        "saliency": Path("s"),
        "preset": "mine",
        "method": "cam",
        "predict": Path("new"),
        "max_steps": 7,
        "pretrained": False,
        "saliency_model": "isnet",
        "saliency_model_path": Path("m.onnx"),
        "overrides": ["--data.num_workers=0", "--x"],
    }
