"""Errors that the ``epspp`` command reports as one line (``epspp: error: ...``, exit code 2), and ``reading``,
which turns a damaged input file's exception into one of them (writes: ``epspp.files``)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class EPSError(ValueError):
    """Base class: bad input from the user (a file, a config value, a checkpoint); the message says what to do."""


class DatasetError(EPSError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


class ConfigError(EPSError):
    """A combination of settings that cannot work."""


class CheckpointMismatchError(EPSError):
    """The checkpoint was trained for another dataset or network."""


class OutputError(EPSError):
    """An output file cannot be written (full disk, read-only folder, a name too long); earlier outputs are kept.

    ``reason``: the system's words for it (``No space left on device``), for a caller that names the file its own
    way.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


#: what decoding a damaged file raises: truncated or unreadable (OSError, EOFError), not what it claims to be
#: (ValueError: JSON, numpy's header, a pickle refused), a zip that is not one (BadZipFile)
DAMAGED_FILE_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, ValueError, zipfile.BadZipFile)


@contextmanager
def reading(path: str | Path, what: str = "file", advice: str = "") -> Iterator[None]:
    """Turn an exception of reading or decoding ``path`` inside the block into one ``DatasetError`` naming it.

    ``with reading(path, "score map"): array = np.load(path)``: a truncated, empty or foreign file reaches the
    user as ``cannot read score map PATH: <why>[: advice]`` instead of a traceback.
    """
    try:
        yield
    except EPSError:
        raise
    except DAMAGED_FILE_ERRORS as error:
        reason = (error.strerror if isinstance(error, OSError) else None) or " ".join(str(error).split())
        hint = f": {advice}" if advice else ""
        raise DatasetError(f"cannot read {what} {path}: {reason or type(error).__name__}{hint}") from None
