"""Small helpers every stage uses: atomic writes and file hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs should get the permissions a plain open() would give.
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it replaces ``path`` only if the block succeeds.

    Readers never see a half-written file, and an interrupted write leaves no debris.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:  # a failed write names no file: name the one being written (disk full…)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


# What atomic_path's mkstemp names look like: ".<target name>.<8 random characters>.tmp".
_ATOMIC_TEMP = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


def atomic_temp_target(name: str) -> str | None:
    """The file name an atomic_path temp file ``name`` was writing, or None if it is not one."""
    match = _ATOMIC_TEMP.fullmatch(name)
    return match["target"] if match else None


def remove_atomic_temps(folder: str | Path, is_ours=lambda target: True) -> list[str]:
    """Delete the temp files a killed run left in ``folder`` (those whose target ``is_ours``)."""
    removed = []
    for entry in os.scandir(folder):
        target = atomic_temp_target(entry.name)
        if target is not None and entry.is_file() and is_ours(target):
            os.unlink(entry.path)
            removed.append(entry.name)
    return sorted(removed)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: str | Path) -> str:
    """The file's sha256. A command hashes each file once: a model file's hash is part of its
    identity (``records.identify_model``), which later steps take instead of hashing again."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/focalinfer`` (default ``~/.cache/focalinfer``): caches that outlive a run."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "focalinfer"


def missing_dirs(path: str | Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first (what a run would create)."""
    missing = []
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove those of ``dirs`` (deepest first) that are empty: a run that wrote nothing leaves nothing."""
    for folder in dirs:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # holds something: then its parents do too
            return


def ensure_writable_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create ``path`` if needed and prove we can write into it, or raise a one-line error."""
    from focalinfer.errors import FocalinferError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A file without a name (O_TMPFILE; elsewhere unlinked at once): a kill leaves nothing behind.
        tempfile.TemporaryFile(dir=path, prefix=".write-probe-").close()
    except OSError as e:
        raise FocalinferError(
            f"{path}: {what} is not writable ({e.strerror or e}); choose another directory or fix its permissions"
        ) from None
    return path


def json_output_path(path: str | os.PathLike, name: str) -> Path:
    """A JSON output flag's file: a path ending in '/' or an existing folder means a folder, and the
    file is ``name`` inside it (decided before any work, not found out when writing)."""
    text = os.fspath(path)
    if text.endswith(("/", os.sep)) or os.path.isdir(text):
        return Path(text) / name
    return Path(text)


def ensure_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Prove ``path`` can be written (atomically, beside itself) before any work, or raise one line."""
    from focalinfer.errors import FocalinferError

    path = Path(path)
    if path.is_dir():
        raise FocalinferError(f"{path}: {what} is a directory; give a file path")
    try:
        ensure_writable_dir(path.parent, "folder")
    except FocalinferError as e:
        raise FocalinferError(f"{path}: {what} cannot be written: {e}") from None
    return path
