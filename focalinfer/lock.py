"""One writer per output: a lock file naming the live process, taken over from a dead one.

A stage that writes one output for a long time (export: minutes of tracing before the final
write) holds ``.<output>.lock`` beside it. A second run refuses while the first is alive; after
a ``kill -9`` the lock names a process that is gone, and the next run takes it over — and may
then delete the temp files the dead run left, which no live run is writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from focalinfer.errors import FocalinferError


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.lock")


def _holder(lock: Path) -> dict:
    try:
        data = json.loads(lock.read_text())
    except (OSError, ValueError):  # being written this instant, or torn by a kill: no live holder known
        return {}
    return data if isinstance(data, dict) else {}


def _alive(holder: dict) -> bool:
    pid = holder.get("pid")
    return (isinstance(pid, int) and holder.get("host") == socket.gethostname() and pid != os.getpid()
            and pid_alive(pid))


@contextlib.contextmanager
def output_lock(output: Path, what: str, lock: Path | None = None) -> Iterator[list[str]]:
    """Hold ``output``'s lock for ``what`` (e.g. 'export'); yields notes about a dead holder.

    ``lock``: the lock file when not ``.<output>.lock`` beside it (a folder's own, inside it)."""
    lock, notes = lock or lock_path(output), []
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(2):  # a dead holder's lock is removed once, then taken
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if _alive(holder):
                raise FocalinferError(
                    f"{output}: another {what} (pid {holder['pid']}, started {holder.get('started')}) is writing it; "
                    f"wait for it or choose another output (if no such run exists, delete {lock})"
                ) from None
            notes.append(f"{output}: a previous {what} (pid {holder.get('pid', '?')}) died while writing it; "
                         "taking over")
            lock.unlink(missing_ok=True)
            continue
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError as e:  # a full disk, before any work
            lock.unlink(missing_ok=True)
            raise FocalinferError(f"{lock}: cannot be written ({e.strerror}); check the free space and permissions "
                                  f"of {lock.parent}") from None
        break
    else:
        raise FocalinferError(f"{output}: could not take {lock} (another {what} took it meanwhile); try again")
    try:
        yield notes
    finally:
        lock.unlink(missing_ok=True)
