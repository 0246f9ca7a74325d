"""The packaged configs by name (epspp.config_files): what is a name of one, and copies that never overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.config_files import PACKAGED, config_folder, copy_configs, packaged_path
from epspp.errors import ConfigError


def test_only_a_relative_name_inside_the_package_is_a_packaged_config() -> None:
    assert packaged_path("voc/pseudo_masks.yaml") == PACKAGED / "voc" / "pseudo_masks.yaml"
    assert packaged_path("configs/voc") == PACKAGED / "voc"
    for name in (str(PACKAGED / "voc" / "pseudo_masks.yaml"), "voc/../voc/pseudo_masks.yaml", "", "voc/nope.yaml"):
        assert packaged_path(name) is None, name


def test_a_config_folder_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_folder("voc") == PACKAGED / "voc"
    assert config_folder("voc/pseudo_masks.yaml") == Path("voc/pseudo_masks.yaml")  # a packaged file: not a folder
    (tmp_path / "voc").mkdir()
    assert config_folder("voc") == Path("voc")  # a folder here first


def test_one_config_is_copied_alone_and_every_existing_file_is_counted(tmp_path: Path) -> None:
    assert copy_configs("voc/pseudo_masks.yaml", tmp_path) == [tmp_path / "voc" / "pseudo_masks.yaml"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "voc/pseudo_masks.yaml"
    ]
    (tmp_path / "voc" / "segmentation_wsss.yaml").write_text("mine\n")
    with pytest.raises(ConfigError) as error:
        copy_configs("voc", tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'voc' / 'pseudo_masks.yaml'} exists (and 1 more): epspp never overwrites a file; remove it or "
        "copy into another folder"
    )
    with pytest.raises(ConfigError, match=r"^no packaged config '\.\./voc': `epspp configs list` shows their names$"):
        copy_configs("../voc", tmp_path)
