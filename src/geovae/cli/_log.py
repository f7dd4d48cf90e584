"""Messages of a command-line run through Python `logging`: one handler on the ``geovae``
logger prints each record as one line on stderr through rich (colours on a terminal, plain
text in a log file), so a pipeline's log shows what was read and chosen as it happens.

Levels: ``--quiet`` shows warnings and errors only, the default adds notes (INFO), and
``--verbose`` adds debug lines. The library itself only logs; only the CLI adds the handler.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.console import Console
from rich.text import Text

LOGGER = "geovae"
err = Console(stderr=True)
_STYLES = {logging.DEBUG: ("debug: ", "dim"), logging.INFO: ("", ""),
           logging.WARNING: ("warning: ", "yellow"), logging.ERROR: ("error: ", "bold red")}


class StderrHandler(logging.Handler):
    """``HH:MM:SS [level: ]message`` on stderr, never wrapped (one record, one line); a
    `geovae.errors.Note` names the flags of ``command`` (the running one)."""

    def __init__(self, command: Any = None) -> None:
        super().__init__()
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if not record.args:
                from geovae.cli._flags import message as rendered

                message = rendered(record.msg, self.command)
            level = max([lv for lv in _STYLES if lv <= record.levelno] or [logging.DEBUG])
            tag, style = _STYLES[level]
            if getattr(record, "tag", None):
                tag = f"{record.tag}: "  # e.g. "internal error: "
            line = Text.assemble((time.strftime("%H:%M:%S ", time.localtime(record.created)),
                                  "dim"), (tag, style), message)
            err.print(line, soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 - logging must never end a run
            self.handleError(record)


def setup(quiet: bool = False, verbose: bool = False, command: Any = None) -> logging.Logger:
    """Send the ``geovae`` logger's records to stderr at the level the flags ask for
    (replacing the handler of an earlier command in the same process); notes name the flags
    of ``command``."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if isinstance(handler, StderrHandler):
            logger.removeHandler(handler)
    logger.addHandler(StderrHandler(command))
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def error(message: str, tag: str = "error") -> None:
    """One error line, also before the logger is set up (e.g. while options are parsed)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        setup(quiet=True)
    logger.error(message, extra={"tag": tag})
