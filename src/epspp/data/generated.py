"""Generated dataset roots: built under a temporary name, renamed into place, with the list of their files.

``ROOT/generated_files.txt`` lists every file a generator wrote (paths relative to the root, one a line,
itself included). Regenerating a root (``overwrite``) replaces those files and nothing else: files and
folders a user added inside the root, anywhere in it, are moved into the new root unchanged.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath

MANIFEST = "generated_files.txt"


def _non_empty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def write_manifest(root: Path) -> None:
    """List every file under ``root`` (all of them written by the generator) in ``ROOT/generated_files.txt``."""
    files = sorted({p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} | {MANIFEST})
    (root / MANIFEST).write_text("".join(f"{name}\n" for name in files))


def read_manifest(root: Path) -> set[str]:
    """The files listed in ``ROOT/generated_files.txt``; a line that leaves the root is an error."""
    path = root / MANIFEST
    names = {line for line in path.read_text(encoding="utf-8").splitlines() if line}
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise FileExistsError(
                f"{path} lists {name!r}, a path outside {root}: the file was not written by "
                "epspp; delete the folder yourself or choose another root"
            )
    return names


def _user_entries(root: Path, generated: set[str]) -> list[str]:
    """The top-most files and folders under ``root`` that the generator did not write (relative paths)."""
    generated_dirs = {parent.as_posix() for name in generated for parent in PurePosixPath(name).parents}
    found: list[str] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        for entry in sorted(folder.iterdir()):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink() and rel in generated_dirs:
                pending.append(entry)
            elif rel not in generated or not (entry.is_file() and not entry.is_symlink()):
                found.append(rel)
    return sorted(found)


def _replace(root: Path, new: Path, pid: int) -> None:
    """Swap the finished ``new`` root in for ``root``, then move the user's entries of ``root`` into it."""
    generated = read_manifest(root)
    user = _user_entries(root, generated)
    clash = [rel for rel in user if os.path.lexists(new / rel)]
    if clash:
        raise FileExistsError(
            f"{root / clash[0]} was not written by the generator, but the new dataset writes "
            "that path: move it out of the root and rerun"
        )
    old = root.parent / f".{root.name}.old-{pid}"
    os.rename(root, old)
    try:
        os.rename(new, root)
    except BaseException:
        os.rename(old, root)
        raise
    try:
        for rel in user:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(old / rel, root / rel)
    except BaseException:
        print(
            f"[epspp] interrupted while moving your files into the new {root}: the rest are in {old}", file=sys.stderr
        )
        raise
    for rel in generated:
        (old / rel).unlink(missing_ok=True)
    folders = sorted((p for p in old.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for folder in [*folders, old]:
        try:
            folder.rmdir()
        except OSError:  # not empty: something appeared meanwhile; keep it
            print(f"[epspp] kept {folder}: it holds files the generator did not write", file=sys.stderr)
            return


def write_generated_root(
    root: str | Path, marker: str, what: str, write: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Write a generated dataset at ``root``: ``write(folder)`` fills a temporary sibling, renamed into place.

    Args:
        root: dataset root to create, or (``overwrite``) to regenerate.
        marker: file that every root of this generator holds (``synthetic.json``).
        what: the kind of dataset, for messages (``synthetic dataset``).
        write: fills the folder it is given with the whole dataset, ``marker`` included.
        overwrite: regenerate a root holding ``marker``: its listed files are replaced, the user's kept.

    Returns:
        The dataset root.

    Raises:
        FileExistsError: ``root`` is not empty and is not such a dataset, or ``overwrite`` is False, or it does not
            list its files (an older epspp), or a user's file sits where the new dataset writes one.
    """
    root = Path(root)
    if _non_empty(root):
        if not (root / marker).is_file():
            raise FileExistsError(
                f"{root} exists and is not a {what} (no {marker}): choose an empty or new folder "
                "(epspp never replaces other data)"
            )
        if not overwrite:
            raise FileExistsError(
                f"{root} exists and holds a {what}: choose another root, or pass overwrite=True "
                "(--overwrite) to regenerate it"
            )
        if not root.is_symlink() and not (root / MANIFEST).is_file():
            raise FileExistsError(
                f"{root} holds a {what} of an older epspp that did not record its files "
                f"({MANIFEST}): delete it yourself or choose another root"
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    tmp = root.parent / f".{root.name}.partial-{pid}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        write_manifest(tmp)
        if root.is_symlink():  # a link to a generated dataset: replace the link, leave its target alone
            root.unlink()
        if root.exists() and _non_empty(root):
            _replace(root, tmp, pid)
        else:
            if root.exists():
                root.rmdir()
            os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
