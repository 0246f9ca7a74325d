"""The configs shipped inside the package (``src/epspp/configs``; ``configs/`` of the repository links to it).

A ``--config NAME`` that is not a file names a packaged config (``voc/localization_eps++.yaml``), so the
documented commands work from any folder with an installed wheel; ``epspp configs list|copy`` shows and copies them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from epspp.errors import ConfigError

#: the folder of the packaged configs
PACKAGED = Path(__file__).resolve().parent / "configs"


def resolve_config(value: str) -> str:
    """``value`` itself when it is an existing path (or not a packaged config's name), else the packaged config
    of that name (a leading ``configs/`` is allowed: ``configs/voc/localization_eps++.yaml`` from any folder)."""
    if Path(value).exists():
        return value
    packaged = packaged_path(value)
    return str(packaged) if packaged is not None else value


def packaged_path(name: str | Path) -> Path | None:
    """The packaged config file or folder ``name`` (relative, with or without a leading ``configs/``); None if none."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        return None
    if parts[0] == "configs":
        parts = parts[1:]
    candidate = PACKAGED.joinpath(*parts)
    return candidate if candidate.exists() else None


def config_folder(name: str | Path) -> Path:
    """A folder of configs: ``name`` when it is a folder here, else the packaged one (``demo``, ``configs/voc``)."""
    if Path(name).is_dir():
        return Path(name)
    packaged = packaged_path(name)
    return packaged if packaged is not None and packaged.is_dir() else Path(name)


def list_configs() -> list[str]:
    """The names of the packaged configs (``voc/localization_eps++.yaml``, ...), sorted."""
    return sorted(path.relative_to(PACKAGED).as_posix() for path in PACKAGED.rglob("*.yaml"))


def copy_configs(name: str, dest: Path) -> list[Path]:
    """Copy the packaged config ``name`` (a file or a folder, ``all``: every one) into ``dest``, keeping their
    relative paths; never overwrites a file (one-line error naming it, nothing copied). Returns the written files."""
    if name == "all":
        sources = [PACKAGED / config for config in list_configs()]
    else:
        found = packaged_path(name)
        if found is None:
            raise ConfigError(f"no packaged config '{name}': `epspp configs list` shows their names")
        sources = sorted(found.rglob("*.yaml")) if found.is_dir() else [found]
    pairs = [(source, dest / source.relative_to(PACKAGED)) for source in sources]
    existing = [str(target) for _, target in pairs if target.exists()]
    if existing:
        raise ConfigError(
            f"{existing[0]} exists (and {len(existing) - 1} more): epspp never overwrites a file; "
            "remove it or copy into another folder"
        )
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return [target for _, target in pairs]
