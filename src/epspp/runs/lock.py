"""One run at a time in a run folder: an exclusive ``flock`` on the folder itself, held while the command runs.

The lock is taken on the folder's own descriptor (no lock file: the folder stays as the run leaves it, and an
empty new folder of a failed command can still be removed); the kernel releases it when the process ends, however
it ends, so a killed run never leaves a folder stuck.  A second command into a held folder stops with one line
naming the folder and the holder's pid and command (read from ``/proc/locks``).  In a DDP run only the first
process takes it (``first_process``): the other ranks are part of the same run.  Locks are re-entrant within a
process (a demo's stages run in it in the tests) and released by ``release_folders`` when a command ends.

A run that holds a folder (and the write rule gave it) removes the temporaries a killed run left there
(``remove_stale_temporaries``): the
names ``epspp.files.temporary_name`` gives a file before its rename (``.STEM.TID.tmp.SUFFIX``, TID the writing
thread's id, the process id for its main thread) of a thread that no longer runs; any other file is the user's and
stays.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from pathlib import Path

from epspp.errors import OutputError

_held: dict[Path, int] = {}
#: a temporary name of epspp's atomic writes (``epspp.files.temporary_name``): ``.STEM.TID.tmp`` and the file's
#: suffix, if it has one (the thread id in group 1)
TEMPORARY = re.compile(r"\..+?\.(\d+)\.tmp(?:\.[^.]+)?")


def hold_folder(folder: str | Path, option: str) -> None:
    """Create ``folder`` if needed and lock it for this process until ``release_folders`` (or the process's end).

    Raises:
        OutputError: another process holds it (the message names the folder, ``option``, the holder's pid and
            command).
    """
    folder = Path(folder)
    key = folder.resolve()
    if key in _held:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        what = "is a file: give a folder" if folder.is_file() else f"cannot be made or opened ({error.strerror})"
        raise OutputError(f"{option} {folder} {what}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise OutputError(
            f"{option} {folder} is in use by another run ({holder(folder)}): wait for it to end, or choose "
            f"another {option}"
        ) from None
    _held[key] = descriptor


def remove_stale_temporaries_said(folder: Path) -> None:
    """``remove_stale_temporaries`` in a folder this process holds (and the write rule gave it), said in a line."""
    removed = remove_stale_temporaries(folder)
    if removed:
        print(
            f"[epspp] removed {len(removed)} temporary file(s) that a killed run left in {folder}, e.g. {removed[0]}",
            file=sys.stderr,
        )


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries of epspp's atomic writes (``TEMPORARY``) under ``folder`` whose writing thread no
    longer runs; the paths removed."""
    removed = []
    for path in sorted(folder.rglob(".*.tmp*")):
        match = TEMPORARY.fullmatch(path.name)
        if match is None or not path.is_file() or path.is_symlink() or running(int(match[1])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def running(pid: int) -> bool:
    """Whether process (or thread) ``pid`` exists (this one included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def held_folders() -> set[Path]:
    """The folders this process holds now (resolved)."""
    return set(_held)


def release_folders(kept: set[Path] | frozenset[Path] = frozenset()) -> None:
    """Release the folders this process holds, but those of ``kept`` (a command has ended; ``kept``: what the
    command that called it in this process holds, as ``held_folders`` said before)."""
    for key in [key for key in _held if key not in kept]:
        os.close(_held.pop(key))


def holder(folder: Path) -> str:
    """``pid N: COMMAND`` of the process holding ``folder``'s flock (from ``/proc/locks``), else ``pid unknown``."""
    try:
        inode = os.stat(folder).st_ino
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            pids = [
                fields[4]
                for fields in (line.split() for line in handle)
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode)
            ]
        if not pids:
            return "pid unknown"
        command = Path(f"/proc/{pids[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return f"pid {pids[0]}: {command.strip()[:200]}"
    except OSError:
        return "pid unknown"
