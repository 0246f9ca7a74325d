"""The pipelines (`epspp demo`, `epspp study`) refuse an --out that holds a user's files or lies inside the
dataset root, in one line, before anything runs (issue 27's probe, in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.cli import CONFIGS, clean_error, in_process


@pytest.mark.parametrize("command", ["demo", "study"])
def test_pipelines_refuse_an_out_of_the_users(
    synthetic_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture, command: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my report")
    args = (
        ["demo", "--root", synthetic_root, "--pretrain-root", tmp_path / "corpus"]
        if command == "demo"
        else ["study", "saliency-errors", "--root", synthetic_root, "--seeds", "0"]
    )
    result = in_process(capfd, *args, "--out", out, "--configs", CONFIGS / "demo")
    clean_error(
        result,
        f"epspp {command}: error: --out {out} holds files that `epspp {command}` did not write",
        "choose an empty or new --out",
    )
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and not (tmp_path / "corpus").exists()
    result = in_process(capfd, *args, "--out", synthetic_root / "runs", "--configs", CONFIGS / "demo")
    clean_error(result, f"--out {synthetic_root / 'runs'} is inside the dataset root")
    assert not (synthetic_root / "runs").exists()
