"""The one progress bar every stage uses: tqdm on a terminal, plain lines in a log.

A CI log or a file gets no carriage-return runs: one line each time another ``LOG_STEP_PERCENT``
of the work is done (``preprocess: 30% (12/40 img, 2.1 s)``), so the lines a stage prints after
its bar (ais_bench's performance summary) start on a line of their own.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Iterable

LOG_STEP_PERCENT = 10


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str,
                 enabled: bool = True, file: IO | None = None, leave: bool = True):
    """A tqdm-like bar over ``iterable`` (or updated by hand): update(n), close(), ``total``, a context."""
    from tqdm import tqdm

    file = file or sys.stderr
    if enabled and not is_terminal(file):
        return LogProgress(iterable, total=total, desc=desc, unit=unit, file=file)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=file, leave=leave, disable=not enabled)


class LogProgress:
    """Progress as whole lines, one per ``step`` percent of ``total`` (which may grow while it runs)."""

    def __init__(self, iterable=None, *, total: int | None = None, desc: str, unit: str, file: IO,
                 step: int = LOG_STEP_PERCENT):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total or 0
        self.n = 0
        self.desc, self.unit, self.file, self.step = desc, unit, file, step
        self._started = time.perf_counter()
        self._reported_percent = 0
        self._reported_n = 0
        self._closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total <= 0:
            return
        percent = min(100, self.n * 100 // self.total)
        if percent >= self._reported_percent + self.step or (percent == 100 and self._reported_percent < 100):
            self._line(percent - percent % self.step if percent < 100 else 100)

    def close(self) -> None:
        """A last line when the count moved since the last one (e.g. an interrupted or unsized run)."""
        if self._closed:
            return
        self._closed = True
        if self.n != self._reported_n:
            self._line(min(100, self.n * 100 // self.total) if self.total > 0 else None)

    def _line(self, percent: int | None) -> None:
        self._reported_percent = percent if percent is not None else self._reported_percent
        self._reported_n = self.n
        done = f"{self.n}/{self.total}" if self.total > 0 else str(self.n)
        head = f"{percent}% " if percent is not None else ""
        seconds = time.perf_counter() - self._started
        print(f"{self.desc}: {head}({done} {self.unit}, {seconds:.1f} s)", file=self.file, flush=True)
