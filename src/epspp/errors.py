"""Errors that the ``epspp`` command reports as one line (``epspp: error: ...``, exit code 2)."""


class EPSError(ValueError):
    """Base class: bad input from the user (a file, a config value, a checkpoint); the message says what to do."""


class DatasetError(EPSError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


class ConfigError(EPSError):
    """A combination of settings that cannot work."""


class CheckpointMismatchError(EPSError):
    """The checkpoint was trained for another dataset or network."""


class OutputError(EPSError):
    """An output file cannot be written (full disk, read-only folder, a name too long); earlier outputs are kept."""
