"""The one logging setup: the standard library's ``logging``, one format, one verbosity switch.

Library code says what it does through :func:`info` / :func:`warning` / :func:`debug` (logger
``focalinfer``), never through print prefixes. The CLI calls :func:`setup` once per command from
``-v`` / ``--quiet`` (one decorator, ``cli.verbosity_options``); without it (a library user, a test) info and warnings still reach stderr in
the same format. ais_bench's own log lines (its performance summary) are part of the output
contract (docs/contract.md) and are printed as ais_bench prints them, not through here.
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("focalinfer")
FORMAT = "[focalinfer] %(message)s"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return text.replace("[focalinfer] ", "[focalinfer] warning: ", 1)
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (pytest and click swap it per test / invocation)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(_Formatter(FORMAT))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


_HANDLER = _StderrHandler()
LOGGER.addHandler(_HANDLER)
LOGGER.propagate = False
LOGGER.setLevel(logging.INFO)
_progress = True


def setup(verbose: int = 0, progress: bool = True) -> None:
    """``verbose`` ≥ 1 adds the debug lines to the info lines; ``progress`` False (``--quiet``) hides
    the progress bars. The info lines (what ran, what was kept, which backend) always show: they
    are part of what a run reports."""
    global _progress
    _progress = progress
    LOGGER.setLevel(logging.DEBUG if verbose else logging.INFO)


def progress_enabled() -> bool:
    return _progress


def info(message: str) -> None:
    LOGGER.info(message)


def warning(message: str) -> None:
    LOGGER.warning(message)


def debug(message: str) -> None:
    LOGGER.debug(message)
