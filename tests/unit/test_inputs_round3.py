"""Issue 21, silent wrong results: split lists, label files, reruns of `prepare folder`, image bit depths."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.data.io import DatasetError, read_split


def _split(root: Path, name: str, raw: bytes) -> None:
    folder = root / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_bytes(raw)


# ------------------------------------------------------------------ item 7: split lists
@pytest.mark.parametrize("lines", [["a", "b", "a"], ["a", "b", "a.jpg"], ["a.PNG", "b", "a"]])
def test_split_id_listed_twice_is_refused_naming_both_lines(tmp_path: Path, lines: list[str]) -> None:
    _split(tmp_path, "dup", "\n".join(lines).encode())
    with pytest.raises(DatasetError, match=r"dup\.txt line 3: id 'a' is listed twice \(first on line 1\)"):
        read_split(tmp_path, "dup")


def test_split_bom_and_extensions_are_dropped_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _split(tmp_path, "bom", "\ufeffa\nb.jpg\nc\n".encode())
    assert read_split(tmp_path, "bom") == ["a", "b", "c"]
    err = capsys.readouterr().err
    assert "bom.txt: ignored a UTF-8 byte-order mark and the image extension of 1 id(s)" in err
    _split(tmp_path, "plain", b"a\nb\n")
    assert read_split(tmp_path, "plain") == ["a", "b"]
    assert capsys.readouterr().err == ""
