"""Imports only go downward: a module of src/epspp imports no module of a higher layer (read with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: the layers, bottom first, by module-name prefix; a module no prefix names is a command module (COMMANDS)
LAYERS: list[tuple[str, ...]] = [
    # the bottom: what imports nothing of epspp but errors; the write rule (with the run folder's lock it takes),
    # the mask-file names and provenance of runs/ are here since data/'s prepare and check apply them
    (
        "epspp.errors",
        "epspp.files",
        "epspp.constants",
        "epspp.config_checks",
        "epspp.config_files",
        "epspp.runs.ownership",
        "epspp.runs.lock",
        "epspp.runs.mask_files",
        "epspp.runs.provenance",
    ),
    ("epspp.ops", "epspp.losses", "epspp.metrics"),
    ("epspp.nets",),
    ("epspp.data",),
    (
        "epspp.tasks",
        "epspp.models",
        "epspp.callbacks",
        "epspp.runs",
        "epspp.scoring",
        "epspp.visualize",
        "epspp.panels",
        "epspp.render",
    ),
]

COMMANDS = len(LAYERS)
CLI = COMMANDS + 1
CLI_MODULES = ("epspp.cli", "epspp.__main__")


def layer(module: str) -> int:
    """The layer of a dotted module name of epspp (0 = the bottom)."""
    if module == "epspp":  # the package's root holds only its version
        return 0
    if any(module == m or module.startswith(m + ".") for m in CLI_MODULES):
        return CLI
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return COMMANDS


def module_name(path: Path) -> str:
    """``src/epspp/nets/deeplab.py`` -> ``epspp.nets.deeplab`` (a package's ``__init__`` is the package)."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, package: str) -> set[str]:
    """The epspp modules a module imports, at its top or inside functions (relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from epspp import run_logs`
    return {n for n in names if n == "epspp" or n.startswith("epspp.")}


def sources() -> list[Path]:
    """Every Python file of the package."""
    return sorted((SRC / "epspp").rglob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_downward(path: Path) -> None:
    """A module imports only modules of its own layer or a lower one."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = layer(module)
    upward = sorted(name for name in imported(tree, package) if layer(name) > own and not _is_attribute(name))
    assert not upward, f"{path.relative_to(SRC)} (layer {own}) imports upward: {upward}"


def _is_attribute(name: str) -> bool:
    """Whether ``name`` (from ``from X import Y``) names an attribute of X rather than a module of epspp."""
    path = SRC / Path(*name.split("."))
    return not path.with_suffix(".py").is_file() and not path.is_dir()


def test_layers_know_the_bottom() -> None:
    """The layer table puts the constants below the networks and the networks below the data."""
    assert layer("epspp.constants") < layer("epspp.ops.crf") < layer("epspp.nets.deeplab") < layer("epspp.data.io")
    assert layer("epspp.data.io") < layer("epspp.tasks.localization") < layer("epspp.evaluate") < layer("epspp.cli")
