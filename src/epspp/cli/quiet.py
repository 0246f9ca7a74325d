"""Quiet by default: what ``epspp fit|validate|test|predict`` hides of its libraries, and ``--verbose``.

Hidden unless ``--verbose`` (or ``EPSPP_VERBOSE=1``): Lightning's "💡 Tip" lines and TPU line, the W&B banner
(``WANDB_SILENT``; W&B still records offline), the model summary table (the progress callback prints the
parameter count in one line) and the library warnings of ``epspp.cli.UNACTIONABLE_WARNINGS``.
"""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "EPSPP_VERBOSE"
VERBOSE_FLAG = "--verbose"
#: the starts of Lightning's info lines that tell an epspp user nothing they can act on
QUIET_LINES = ("💡 Tip:", "TPU available", "HPU available")
#: Lightning's loggers of ``rank_zero_info`` (Lightning and Fabric each point it at their own)
LIGHTNING_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


def is_verbose() -> bool:
    """Whether the libraries' own lines are wanted (``--verbose`` was given, or ``EPSPP_VERBOSE`` is 1/true/yes)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def take_verbose_flag(args: list[str]) -> list[str]:
    """``args`` without ``--verbose``; when it was there, ``EPSPP_VERBOSE=1`` is set (DDP children and the
    stages a command starts inherit it)."""
    if VERBOSE_FLAG not in args:
        return args
    os.environ[VERBOSE_ENV] = "1"
    return [arg for arg in args if arg != VERBOSE_FLAG]


class QuietLines(logging.Filter):
    """Drops the records that start with one of ``QUIET_LINES`` unless ``is_verbose()`` (asked at each record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record (True) unless it is one of the quiet lines of a quiet run."""
        return is_verbose() or not str(record.getMessage()).startswith(QUIET_LINES)


def quiet_libraries() -> None:
    """Hide Lightning's tips and the W&B banner (unless verbose); the filter is installed once per process."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, QuietLines) for existing in logger.filters):
            logger.addFilter(QuietLines())
    if not is_verbose() and "WANDB_SILENT" not in os.environ:  # a user's own WANDB_SILENT wins
        os.environ["WANDB_SILENT"] = "true"


def quiet_wandb_settings() -> None:
    """Silence W&B's terminal before its first run is set up (unless verbose): ``WANDB_SILENT`` only applies once
    the settings are read, after they warned that Lightning's ``anonymous`` setting "has no effect"."""
    if is_verbose() or os.environ.get("WANDB_SILENT", "").lower() not in ("true", "1"):
        return
    try:
        from wandb.errors import term
    except ImportError:
        return
    if hasattr(term, "_silent"):
        term._silent = True  # what wandb sets itself from WANDB_SILENT when a run starts
