"""One writer per output: the lock every writing command takes on what it writes (infer, eval,
compare --json; export's ONNX, om's and precision's folders).

The lock of ``<dir>/<name>`` (a result folder, or a JSON file: its name without ``.json``) is the
file ``<dir>/<name>.lock`` **beside** it, never inside: ais_bench's folder holds only its outputs,
and eval's ``r.json`` and its output folder ``r/`` share one lock, ``r.lock``.

It is an ``flock`` on that file, so the kernel drops it when its holder ends however it ends —
SIGKILL and power loss included — and a dead holder's lock is taken over at once, with no pid
guesswork and no timeout. The file's content only names the holder (pid, host, start time,
command) for the messages. Across hosts it is as good as the file system's locks: NFSv4 (and
NFSv3 with lockd) lock on the server, and a crashed client's lock lapses with its lease
(~90 s); an NFS mount with ``nolock`` locks per host only.

A second writer is refused with one line naming the holder (no waiting: a run that waits could
start long after the user expects). Within one process the lock is re-entrant (eval holds
``r.lock``, then infer's run takes it again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from focalinfer.errors import FocalinferError

SUFFIX = ".lock"

# lock path -> [open file descriptor, depth] of the locks this process holds
_HELD: dict[str, list[int]] = {}


def lock_path(target: str | os.PathLike) -> Path:
    """``<target>.lock`` beside ``target`` (``r.json`` and the folder ``r`` share ``r.lock``)."""
    target = Path(os.path.abspath(target))
    name = target.stem if target.suffix.lower() == ".json" else target.name
    return target.with_name(name + SUFFIX)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock, as its file says."""

    pid: int | None
    host: str | None
    started: str | None
    command: str | None

    def describe(self) -> str:
        where = "" if self.host in (None, socket.gethostname()) else f" on host {self.host}"
        what = f"focalinfer {self.command}" if self.command else "a focalinfer run"
        return f"{what} (pid {self.pid}{where}, started {self.started})"

    @classmethod
    def read(cls, path: Path) -> "Holder | None":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return cls(data.get("pid"), data.get("host"), data.get("started"), data.get("command"))


def _content(command: str) -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": command,
                       "argv": sys.argv}).encode() + b"\n"


# A reader checking whether a folder is being written (held_by_other) holds a shared lock for a
# few microseconds: a writer tries again a few times before it takes the lock for a live run's.
TRIES, PAUSE_S = 3, 0.05


def _try_flock(fd: int, path: Path) -> bool:
    for attempt in range(TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < TRIES:
                time.sleep(PAUSE_S)
        except OSError as e:
            raise FocalinferError(f"{path}: cannot lock it on this file system ({e.strerror or e}); "
                                  "write the outputs to a local disk") from None
    return False


def _same_file(fd: int, path: Path) -> bool:
    """The locked descriptor is still the file at ``path`` (its holder may have removed it meanwhile)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _acquire(path: Path, target: Path, command: str, log) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not _try_flock(fd, path):
            holder = Holder.read(path)
            os.close(fd)
            who = holder.describe() if holder else "another focalinfer run"
            raise FocalinferError(
                f"{target}: {who} is writing here; wait for it to finish or choose another output "
                f"(its lock: {path})"
            )
        if _same_file(fd, path):
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: again
    previous = Holder.read(path)
    if previous is not None and log is not None:
        log(f"{target}: {previous.describe()} ended without releasing its lock (killed?); taking it over")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, _content(command), 0)
    except OSError as e:  # a full disk, before any work
        os.close(fd)
        path.unlink(missing_ok=True)
        raise FocalinferError(f"{path}: cannot be written ({e.strerror or e}); check the free space and "
                              f"permissions of {path.parent}") from None
    return fd


@contextlib.contextmanager
def hold(target: str | os.PathLike, command: str, log=None) -> Iterator[Path]:
    """Hold the lock of ``target`` (see the module doc) for the block, or raise one line naming its
    holder. ``log`` gets one line when the lock of a dead holder is taken over."""
    path = lock_path(target)
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        _HELD[key] = [_acquire(path, Path(target), command, log), 1]
    try:
        yield path
    finally:
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # before closing: whoever opens it next locks a new file
            os.close(entry[0])


def held_by_other(target: str | os.PathLike) -> Holder | None:
    """The live holder of ``target``'s lock when it is another process's (None: nobody writes it)."""
    path = lock_path(target)
    if str(path) in _HELD:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder.read(path) or Holder(None, None, None, None)
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return None
            raise
        return None
    finally:
        os.close(fd)


def refuse_if_written(target: str | os.PathLike, what: str) -> None:
    """Reading a folder (or file) another live run is writing would see half of it: one line instead."""
    holder = held_by_other(target)
    if holder is not None:
        raise FocalinferError(f"{target}: {holder.describe()} is still writing it; wait for it to finish before "
                              f"{what} (its lock: {lock_path(target)})")
