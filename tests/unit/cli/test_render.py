"""``epspp render``'s command line: each option reaches its argument of ``epspp.render.render``."""

from __future__ import annotations

from typing import Any

import pytest

from epspp.cli import render as cli


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--root", "r"], ("p", "r", None, 32, 256, False, None)),
        (
            ["--images", "i", "--root", "r", "--num", "3", "--panel", "40", "--out", "o.png", "--overwrite"],
            ("p", "r", "o.png", 3, 40, True, "i"),
        ),
        (["--images", "i"], ("p", None, None, 32, 256, False, "i")),
    ],
)
def test_each_option_reaches_render(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, options: list[str], expected: tuple
) -> None:
    seen: list[tuple] = []

    def render(*args: Any) -> str:
        seen.append(args)
        return "p/overview.png"

    monkeypatch.setattr(cli, "render", render)
    assert cli.render_main(["--pred-dir", "p", *options]) == 0
    assert seen == [expected] and capsys.readouterr().out == "wrote p/overview.png\n"
