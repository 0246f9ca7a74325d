"""``epspp configs list|copy``: the packaged names, and a copy's name and folder reaching ``copy_configs``."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.cli import configs as cli
from epspp.errors import ConfigError


def test_list_prints_one_name_a_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli, "list_configs", lambda: ["demo/pretrain.yaml", "voc/pseudo_masks.yaml"])
    assert cli.configs_main(["list"]) == 0
    assert capsys.readouterr().out == "demo/pretrain.yaml\nvoc/pseudo_masks.yaml\n"


def test_copy_gives_the_name_and_folder(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    seen = []
    monkeypatch.setattr(cli, "copy_configs", lambda name, dest: seen.append((name, dest)) or [dest / "a", dest / "b"])
    assert cli.configs_main(["copy", "voc", "mine"]) == 0
    assert seen == [("voc", Path("mine"))] and capsys.readouterr().out == "copied 2 config(s) into mine\n"

    def refuse(name: str, dest: Path) -> list:
        raise ConfigError("mine/voc/pseudo_masks.yaml exists")

    monkeypatch.setattr(cli, "copy_configs", refuse)
    assert cli.configs_main(["copy", "voc", "mine"]) == 2
    assert capsys.readouterr().err == "epspp configs: error: mine/voc/pseudo_masks.yaml exists\n"
