"""Where a command may write (docs/architecture.md, "Conventions", the write rule).

A command writes only into its output folder (or file), never into a dataset root or an input folder unless
that is its job, and replaces only files it wrote itself: in this run, or in an earlier run of the same
command, as its own record says. Where the rule bites, the command stops with one line naming the path and
the flag that would allow it, before it writes anything.

* ``refuse_inside``: an output that is, or is inside, one of the command's inputs.
* ``OutputRecord``: ``OUT/epspp_files.json``, the command that owns a folder and the files it wrote there.
* ``check_output_file``: a single output file (a figure, a report) that only its own command may replace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from epspp.errors import OutputError
from epspp.files import write_json
from epspp.runs.lock import hold_folder, remove_stale_temporaries_said

RECORD = "epspp_files.json"


def refuse_inside(output: str | Path, inputs: Mapping[str | Path | None, str], option: str) -> None:
    """Fail when ``output`` is, or is inside, one of the folders of ``inputs`` (folder -> what it is; None skipped).

    ``what`` reads in the message as ``{option} {output} is inside {what} {folder}``, e.g. "the dataset's mask
    folder". Symlinks and ``..`` are resolved first.
    """
    out = Path(output).resolve()
    for folder, what in inputs.items():
        if folder is None:
            continue
        resolved = Path(folder).resolve()
        if out == resolved or resolved in out.parents:
            raise OutputError(
                f"{option} {output} is inside {what} {folder}: writing there would add to or replace "
                "files that are not this command's; choose a folder of its own"
            )


class OutputRecord:
    """The command that owns an output folder, and the files it wrote there (``OUT/epspp_files.json``).

    A folder is the command's when it is new or empty (empty folders inside count as empty), when its record
    names the command, or when ``legacy`` says an older epspp's run of the command made it (its files are then
    adopted). Only files the record lists
    may be replaced; ``files`` None means the whole folder is the command's (``epspp demo``, ``epspp study``:
    each of their stages guards its own files).
    """

    def __init__(self, folder: Path, command: str, option: str, files: set[str] | None, adopted: bool) -> None:
        self.folder, self.command, self.option = folder, command, option
        self.files, self.adopted = files, adopted

    @classmethod
    def open(
        cls,
        folder: str | Path,
        command: str,
        option: str,
        legacy: Callable[[Path], bool] | None = None,
        per_file: bool = True,
    ) -> OutputRecord:
        """The record of ``folder`` for ``command`` (``epspp prepare coco``), given as ``option`` (``--out``).

        Raises:
            OutputError: ``folder`` is a file, holds another command's record, or holds files without a record
                (and ``legacy`` does not recognize it).
        """
        folder = Path(folder)
        path = folder / RECORD
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{option} {folder} is a file: give a folder")
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                owner, listed = record["command"], record.get("files")
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise OutputError(
                    f"cannot read {path} ({error}): it is not a record of epspp; choose another {option}"
                ) from None
            if owner != command:
                raise OutputError(
                    f"{option} {folder} was written by `{owner}` ({path}), not `{command}`: choose another {option}"
                )
            return cls(folder, command, option, set(listed) if per_file and listed is not None else None, False)
        entries = sorted(folder.iterdir(), key=lambda p: (p.name.startswith("."), p.name)) if folder.is_dir() else []
        if entries and holds_no_file(folder):  # empty folders (left by an older epspp's failed run) hold nothing
            entries = []
        if entries and not (legacy and legacy(folder)):
            raise OutputError(
                f"{option} {folder} holds files that `{command}` did not write (e.g. {entries[0]}): "
                f"choose an empty or new {option} (epspp never replaces other files)"
            )
        return cls(folder, command, option, set() if per_file else None, bool(entries))

    def claim(self, paths: Iterable[str | Path] = ()) -> None:
        """Check that every path of ``paths`` (inside the folder) is free or this command's, then record them all
        (the record is saved before the files are written, so a rerun after an interruption finds them listed).

        Raises:
            OutputError: a path exists that this command did not write.
        """
        names = [Path(p).relative_to(self.folder).as_posix() for p in paths]
        if self.files is not None and not self.adopted:
            for name in names:
                if name not in self.files and os.path.lexists(self.folder / name):
                    raise OutputError(
                        f"{self.folder / name} was not written by `{self.command}` (it is not in "
                        f"{self.folder / RECORD}): move it, or choose another {self.option}"
                    )
        if self.files is not None:
            self.files.update(names)
        self.save()

    def save(self) -> None:
        """Write ``OUT/epspp_files.json`` atomically (the folder is created); an identical record is left as it is
        (a rerun that writes nothing else rewrites nothing)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        record: dict = {"command": self.command}
        if self.files is not None:
            record["files"] = sorted(self.files)
        path = self.folder / RECORD
        try:
            if json.loads(path.read_text(encoding="utf-8")) == record:
                return
        except (OSError, ValueError):
            pass
        write_json(path, record, indent=0)


def claim_folder(
    folder: str | Path,
    command: str,
    option: str,
    inputs: Mapping[str | Path | None, str] | None = None,
    legacy: Callable[[Path], bool] | None = None,
) -> None:
    """Make ``folder`` (new, empty, or already the command's, and outside ``inputs``) the output folder of
    ``command`` as a whole (``epspp demo``, ``epspp study``, ``epspp run``), held by this command alone while it runs
    (``epspp.runs.lock``)."""
    refuse_inside(folder, inputs or {}, option)
    record = OutputRecord.open(folder, command, option, legacy, per_file=False)  # (only reads)
    hold_folder(folder, option)
    record.claim()
    remove_stale_temporaries_said(Path(folder))


def holds_no_file(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but (nested) empty folders: no file, no link."""
    return not any(path.is_file() or path.is_symlink() or not path.is_dir() for path in folder.rglob("*"))


def holds_stage_marker(folder: Path) -> bool:
    """Whether ``folder`` holds a ``stage.json`` of an epspp stage (a demo or a study of an older epspp)."""
    for marker in folder.rglob("stage.json"):
        try:
            if str(json.loads(marker.read_text()).get("command", [""])[0]) == "epspp":
                return True
        except (OSError, ValueError, AttributeError, IndexError, TypeError):
            continue
    return False


def check_output_file(
    path: str | Path, command: str, option: str, ours: Callable[[Path], bool], overwrite: bool = False
) -> None:
    """Fail when the file ``path`` exists and ``ours(path)`` says ``command`` did not write it (unless
    ``overwrite``), or when ``path`` is a folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder: give a file name")
    if os.path.lexists(path) and not overwrite and not ours(path):
        raise OutputError(
            f"{option} {path} exists and was not written by `{command}`: choose another {option}, or "
            "pass --overwrite to replace it"
        )
