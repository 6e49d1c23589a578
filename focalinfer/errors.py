"""Errors that reach the user as one line (the CLI prints them without a traceback)."""


class FocalinferError(Exception):
    """A user-facing failure: the message names the file and the fix."""

    exit_code = 1


class UsageError(FocalinferError):
    """Bad flags or arguments."""

    exit_code = 2


class ToolMissingError(FocalinferError):
    """An external tool (atc, ais_bench) is not available on this machine."""

    exit_code = 2
