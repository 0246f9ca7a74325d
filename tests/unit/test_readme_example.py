"""The README's Python API example runs as printed: its ```python block is extracted and executed."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readmes_python_example_runs(capsys) -> None:  # noqa: ANN001 (pytest fixture)
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1, "the README has one ```python example"
    exec(compile(blocks[0], f"{README}:python example", "exec"), {"__name__": "readme_example"})
    assert re.fullmatch(r"EPS \d+\.\d{3}, EPS\+\+ \d+\.\d{3}\n", capsys.readouterr().out)
