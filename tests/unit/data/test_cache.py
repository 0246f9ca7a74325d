"""Where a dataset's caches live (``epspp.data.cache``): one folder per dataset however its root is named, the
XDG base directory rule."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from epspp.data.cache import cache_home, dataset_cache


def test_one_dataset_has_one_cache_folder_however_its_root_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "voc"
    root.mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "link").symlink_to(root)
    monkeypatch.chdir(tmp_path / "work")
    expected = cache_home() / f"voc-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]}"
    names: list[str | Path] = [root, "../voc", Path("../work/../voc"), tmp_path / "link", f"{root}/"]
    assert [dataset_cache(name) for name in names] == [expected] * len(names)
    other = tmp_path / "work" / "voc"  # another dataset of the same name: another folder
    assert dataset_cache(other) != expected and dataset_cache(other).name.startswith("voc-")


def test_the_cache_home_follows_an_absolute_xdg_cache_home_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "epspp"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for ignored in ("relative/cache", ""):  # the XDG rule: a relative (or empty) value is ignored
        monkeypatch.setenv("XDG_CACHE_HOME", ignored)
        assert cache_home() == tmp_path / "home" / ".cache" / "epspp"


def test_the_filesystem_root_has_a_named_cache_folder() -> None:
    """``/`` has no name: its folder is ``root-<hash>``, not ``-<hash>`` (a hidden-looking name)."""
    assert dataset_cache("/") == cache_home() / f"root-{hashlib.sha1(b'/').hexdigest()[:16]}"
