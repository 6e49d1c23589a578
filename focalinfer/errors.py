"""Errors that reach the user as one line (the CLI prints them without a traceback)."""


class FocalinferError(Exception):
    """A user-facing failure: the message names the file and the fix."""

    exit_code = 1


class UsageError(FocalinferError):
    """Bad flags or arguments."""

    exit_code = 2


class RecordError(FocalinferError):
    """A stage's record (manifest, export report, ATC / infer / precision record) exists but cannot be
    read: every record reader raises this one type; a caller that can do without the record catches it."""


class ToolMissingError(FocalinferError):
    """An external tool (atc, ais_bench) is not available on this machine."""

    exit_code = 2


def first_line(e: BaseException, with_type: bool = False) -> str:
    """An exception's first message line (≤ 200 characters), for one-line error text."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    line = text.splitlines()[0][:200]
    return f"{type(e).__name__}: {line}" if with_type else line


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying what the interrupted command kept: the CLI's one line says exactly that."""

    def __init__(self, kept: str, outputs: int = 0, folder=None):
        super().__init__(kept)
        self.kept, self.outputs, self.folder = kept, outputs, folder
