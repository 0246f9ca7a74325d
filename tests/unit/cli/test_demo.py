"""``epspp demo``'s command line: each option reaches ``epspp.demo.run_demo`` (the regime's default run folder, the
config folder, the corpus and the overrides), and the report's table is printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from epspp.cli import demo as cli
from epspp.config_files import PACKAGED


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    seen: list[tuple] = []

    def run_demo(*args: Any) -> dict:
        seen.append(args)
        return {"table": "| method | mIoU |"}

    monkeypatch.setattr(cli, "run_demo", run_demo)
    return seen


@pytest.mark.parametrize(("regime", "out"), [("pretrained", "runs/demo"), ("scratch", "runs/demo_scratch")])
def test_each_regime_has_its_own_default_run_folder(
    calls: list, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, regime: str, out: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/demo here: the packaged configs
    assert cli.demo_main(["--regime", regime]) == 0
    assert calls == [(Path("data/synthetic"), Path(out), PACKAGED / "demo", [], regime, Path("data/pretrain"))]
    assert capsys.readouterr().out == "| method | mIoU |\n"


def test_every_option_away_from_its_default(calls: list, tmp_path: Path) -> None:
    argv = ["--root", "d", "--out", "o", "--configs", str(tmp_path), "--pretrain-root", "p", "--", "--a=1", "--b"]
    assert cli.demo_main(["--regime", "scratch", *argv]) == 0
    assert calls == [(Path("d"), Path("o"), tmp_path, ["--a=1", "--b"], "scratch", Path("p"))]
