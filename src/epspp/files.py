"""Files written whole or not at all: a temporary name in the target's folder, then ``os.replace``.

The one place that writes epspp's outputs: a kill leaves the earlier file (or none), never half of one; a full or
read-only disk leaves no temporary file behind and reaches the user as one line naming the target
(``OutputError``: ``epspp CMD: error: cannot write ... PATH: No space left on device``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from epspp.errors import OutputError

# torch's zip writer reports a failed write (a full disk) as a RuntimeError of its C++ stream, without the OSError
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "failed writing")


def temporary_name(path: Path) -> Path:
    """``.<stem>.<tid>.tmp<suffix>`` beside ``path``: hidden, keeping the suffix (PIL and numpy choose the format
    from it), unique to this thread among the machine's live threads (the OS thread id; the main thread's is the
    process id), and at most 17 bytes longer than the name (``data.io.MAX_ID_BYTES``)."""
    return path.with_name(f".{path.stem}.{threading.get_native_id()}.tmp{path.suffix}")


def write_atomic(
    path: str | Path, write: Callable[[Path], Any], action: str = "write", sync: bool = False, advice: str = ""
) -> Path:
    """Call ``write(tmp)`` for a temporary name beside ``path`` and rename it over ``path``.

    Args:
        path: the target; its folder is created.
        write: writes the whole file at the path it is given.
        action: what failed, for the error message ("save checkpoint": "cannot save checkpoint PATH: ...").
        sync: fsync the file before the rename and the folder after it (checkpoints: survive a power cut).
        advice: what the user can do, appended to the error (default: free space or choose another folder).

    Raises:
        OutputError: the folder cannot be made or the file cannot be written (full or read-only disk, a name
            too long); ``path`` is as it was and no temporary file is left. Other exceptions pass unchanged,
            also with the temporary file removed.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        if sync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        _remove(tmp)
        reason = write_failure(error)
        if reason is None:
            raise
        hint = advice or "free space or choose another folder (an earlier file there is kept)"
        raise OutputError(f"cannot {action} {path}: {reason}: {hint}", reason) from None
    if sync:
        _fsync_folder(path.parent)
    return path


def write_text(path: str | Path, text: str, action: str = "write") -> Path:
    """``text`` (UTF-8) at ``path``, atomically (``write_atomic``)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), action)


def write_json(path: str | Path, payload: Any, action: str = "write", indent: int | None = 2) -> Path:
    """``payload`` as JSON at ``path``, atomically (``write_atomic``); serialized before the file is opened."""
    return write_text(path, json.dumps(payload, indent=indent), action)


def write_failure(error: BaseException) -> str | None:
    """Why a write failed, in words, when ``error`` (or one it was raised from or during) is a filesystem error;
    None for any other exception."""
    seen: BaseException | None = error
    for _ in range(4):  # torch raises its RuntimeError during (or from) the OSError of the file's write
        if seen is None:
            break
        if isinstance(seen, OSError):
            return seen.strerror or str(seen) or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, RuntimeError) and any(text in str(error) for text in _TORCH_WRITE_FAILURES):
        return "the write failed (is the disk full?)"
    return None


def _remove(tmp: Path) -> None:
    """Remove a temporary file if it is there (on a read-only disk it never was: unlink fails too)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_folder(folder: Path) -> None:
    """Make the rename survive a power cut; skipped where a folder cannot be opened or synced (some network
    filesystems)."""
    try:
        _fsync(folder)
    except OSError:
        pass
