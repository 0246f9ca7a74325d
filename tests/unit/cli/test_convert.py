"""``epspp convert-weights``'s command line: source, target and ``--overwrite`` reach ``convert_weights``."""

from __future__ import annotations

import pytest

from epspp.cli import convert as cli


@pytest.mark.parametrize(("options", "overwrite"), [([], False), (["--overwrite"], True)])
def test_the_arguments_reach_the_converter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, options: list[str], overwrite: bool
) -> None:
    seen = []
    monkeypatch.setattr(cli, "convert_weights", lambda *args: seen.append(args) or 7)
    assert cli.convert_main(["w.params", "w.pth", *options]) == 0
    assert seen == [("w.params", "w.pth", overwrite)]
    assert capsys.readouterr().out == (
        "wrote 7 tensors to w.pth (load it with --model.init_args.pretrained_path w.pth)\n"
    )
