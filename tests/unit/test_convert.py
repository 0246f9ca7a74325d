"""``epspp convert-weights``: the refusals that come before any file is read (the conversion itself runs on a real
ResNet-38d weight file in tests/integration/fit/test_paper_configs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.cli.convert import convert_main
from epspp.convert import convert_weights
from epspp.errors import EPSError


def test_the_source_as_target_is_refused_also_with_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "weights.params"
    source.write_bytes(b"not read")
    for overwrite in (False, True):
        with pytest.raises(EPSError, match=r"the target .*weights\.params is the source file"):
            convert_weights(source, tmp_path / "." / "weights.params", overwrite=overwrite)
    assert source.read_bytes() == b"not read"


def test_an_existing_target_needs_overwrite_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "out.pth"
    target.write_bytes(b"mine")
    assert convert_main([str(tmp_path / "weights.params"), str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"epspp convert-weights: error: {target} exists: choose another name or pass --overwrite\n"
    assert target.read_bytes() == b"mine"


def test_a_missing_source_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = convert_main([str(tmp_path / "missing.params"), str(tmp_path / "out.pth")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("epspp convert-weights: error: ") and len(err.splitlines()) == 1
    assert "missing.params" in err and not (tmp_path / "out.pth").exists()
