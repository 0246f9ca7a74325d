"""Where epspp keeps what it derives from a dataset (pre-flight results, labels from masks): outside the dataset.

A dataset root is an input (the write rule): no command writes into it, and a read-only dataset works.  Its
caches live in the user's cache folder, ``$XDG_CACHE_HOME/epspp`` (else ``~/.cache/epspp``), one folder per
dataset keyed by the root's resolved path.  A ``ROOT/.cache`` of an older epspp is ignored and kept (it is the
user's now).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/epspp``, else ``~/.cache/epspp`` (the XDG base directory rule)."""
    base = os.environ.get("XDG_CACHE_HOME")
    return Path(base if base and os.path.isabs(base) else Path.home() / ".cache") / "epspp"


def dataset_cache(root: str | Path) -> Path:
    """The cache folder of the dataset at ``root``: ``cache_home()/<name>-<hash of the resolved root>``."""
    resolved = Path(root).resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:16]
    return cache_home() / f"{resolved.name or 'root'}-{digest}"
