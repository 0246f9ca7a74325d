"""The package's metadata and packaged configs: one version source, Lightning inside the declared range, every
third-party import declared, ``--config NAME`` and ``epspp configs list|copy``."""

from __future__ import annotations

import ast
import importlib
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import epspp
from epspp.cli import TOOLS, main, packaged_configs
from epspp.config_files import PACKAGED, config_folder, copy_configs, list_configs, resolve_config
from epspp.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
#: import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "yaml": "pyyaml",
    "pydensecrf": "pydensecrf2",
    "lightning_fabric": "pytorch-lightning",
}


def requirement(name: str) -> Requirement:
    declared = PYPROJECT["dependencies"] + [
        dep for extra in PYPROJECT["optional-dependencies"].values() for dep in extra
    ]
    return next(req for req in map(Requirement, declared) if canonicalize_name(req.name) == canonicalize_name(name))


def test_installed_lightning_is_in_the_declared_range():
    """epspp.cli.lightning overrides LightningCLI internals: a Lightning outside the range is untested."""
    spec = requirement("pytorch-lightning").specifier
    assert spec.contains(Version(version("pytorch-lightning"))), (version("pytorch-lightning"), str(spec))
    assert any(item.operator == "<" for item in spec), "pytorch-lightning needs an upper bound"


def test_one_version_source():
    assert PYPROJECT["version"] == version("epspp") == epspp.__version__
    assert PYPROJECT["version"] not in (REPO / "src/epspp/__init__.py").read_text(encoding="utf-8")


def test_every_third_party_import_is_declared():
    names = set()
    for path in (REPO / "src/epspp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    third_party = {name for name in names - {"epspp", "__future__"} if name not in sys.stdlib_module_names}
    for name in sorted(third_party):
        requirement(DISTRIBUTIONS.get(name, name))  # StopIteration: not declared in pyproject.toml


def test_config_names_resolve_to_the_packaged_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("voc/localization_eps++.yaml") == str(PACKAGED / "voc/localization_eps++.yaml")
    assert resolve_config("configs/voc/pseudo_masks.yaml") == str(PACKAGED / "voc/pseudo_masks.yaml")
    assert resolve_config("mine.yaml") == "mine.yaml"  # neither a file nor a packaged name: the error names it
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc/localization_eps++.yaml").write_text("trainer: {}\n")
    assert resolve_config("voc/localization_eps++.yaml") == "voc/localization_eps++.yaml"  # a file here wins
    assert packaged_configs(["fit", "-c", "demo/pretrain.yaml", "--config=coco/pseudo_masks.yaml"]) == [
        "fit",
        "-c",
        str(PACKAGED / "demo/pretrain.yaml"),
        f"--config={PACKAGED / 'coco/pseudo_masks.yaml'}",
    ]
    assert config_folder("configs/demo") == PACKAGED / "demo"
    assert config_folder(Path("configs") / "voc") == PACKAGED / "voc"


def test_configs_list_and_copy_never_overwrite(tmp_path, capsys):
    assert "voc/localization_eps++.yaml" in list_configs()
    assert (REPO / "configs").resolve() == PACKAGED  # the documented configs/ paths of the repository
    with pytest.raises(SystemExit) as exit_:
        main(["configs", "list"])
    assert exit_.value.code == 0 and "demo/pretrain.yaml" in capsys.readouterr().out
    written = copy_configs("voc", tmp_path)
    assert (tmp_path / "voc/pseudo_masks.yaml").read_bytes() == (PACKAGED / "voc/pseudo_masks.yaml").read_bytes()
    assert len(written) == len([name for name in list_configs() if name.startswith("voc/")])
    (tmp_path / "voc/pseudo_masks.yaml").write_text("mine\n")
    with pytest.raises(ConfigError, match="never overwrites"):
        copy_configs("all", tmp_path)
    assert (tmp_path / "voc/pseudo_masks.yaml").read_text() == "mine\n"
    assert not (tmp_path / "demo").exists()  # nothing copied
    with pytest.raises(SystemExit) as exit_:
        main(["configs", "copy", "nope.yaml", str(tmp_path)])
    assert exit_.value.code == 2 and "no packaged config 'nope.yaml'" in capsys.readouterr().err


def test_every_tool_is_an_argparse_module_of_epspp_cli():
    for name, (module, function) in TOOLS.items():
        assert module.startswith("epspp.cli."), name
        assert callable(getattr(importlib.import_module(module), function)), name
