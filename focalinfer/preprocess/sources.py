"""What each .bin was made from, so that a rerun reuses a .bin only while its source is the same.

Per file the manifest records the source's size, mtime and sha256 (the bytes are read once, to
decode and to hash). A rerun reuses a ``.bin`` without reading its source when the source at the
same path has the same size and mtime, and that mtime lies more than ``RACY_NS`` before the
``.bin`` was written (an edit within one clock tick of the conversion could keep the mtime, as
git's "racy" files). Otherwise — another ``--images`` with the same file names, a moved folder, an
edited image, a recent mtime — the source's sha256 decides.

While a run is alive the records go to a journal beside the manifest, one JSON line per finished
file written by the worker that wrote it (a torn line of a killed run is ignored: that ``.bin`` is
written again), so a killed run's files are reused too. The complete manifest takes the records
over and the journal goes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from focalinfer.util import sha256_file, write_bytes_atomic

JOURNAL = ".preprocess-journal.jsonl"
RACY_NS = 2_000_000_000  # coarser than any file system's mtime tick (FAT: 2 s)


@dataclass(frozen=True)
class SourceRecord:
    """A .bin's source: its absolute path and size, mtime and sha256 when it was read."""

    bin: str
    path: str
    size: int
    mtime_ns: int
    sha256: str

    def manifest_fields(self) -> dict:
        return {"source_size": self.size, "source_mtime_ns": self.mtime_ns, "source_sha256": self.sha256}


def read_source(path: str) -> tuple[bytes, int, int, str]:
    """(bytes, size, mtime_ns, sha256) of an image; the stat comes first, so an edit during the
    read leaves a record that no longer matches the file."""
    stat = os.stat(path)
    with open(path, "rb") as f:
        data = f.read()
    return data, stat.st_size, stat.st_mtime_ns, hashlib.sha256(data).hexdigest()


def journal_path(out: Path) -> Path:
    return out / JOURNAL


def known_sources(out: Path, files: list, images_dir: str | None) -> dict[str, SourceRecord]:
    """bin name → record, from a manifest's file list (relative to ``images_dir``) and the journal."""
    known = {}
    for entry in files if images_dir else ():
        try:
            known[entry["bin"]] = SourceRecord(entry["bin"], str(Path(images_dir) / entry["source"]),
                                               entry["source_size"], entry["source_mtime_ns"], entry["source_sha256"])
        except (KeyError, TypeError):  # a manifest of an older focalinfer: no record, no reuse
            continue
    try:
        lines = journal_path(out).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        try:
            record = SourceRecord(**json.loads(line))
        except (ValueError, TypeError):  # the torn last line of a killed run
            continue
        known[record.bin] = record
    return known


def reusable(record: SourceRecord | None, source: str, bin_path: Path, size: int) -> SourceRecord | None:
    """The record of ``bin_path`` as made from ``source`` as it is now, or None: write it again."""
    try:
        made = bin_path.stat()
        now = os.stat(source)
    except FileNotFoundError:
        return None
    if record is None or made.st_size != size or now.st_size != record.size:
        return None
    current = SourceRecord(record.bin, source, now.st_size, now.st_mtime_ns, record.sha256)
    if current == record and now.st_mtime_ns < made.st_mtime_ns - RACY_NS:
        return record
    return current if sha256_file(source) == record.sha256 else None


def start_journal(out: Path, carried: list[SourceRecord]) -> Path:
    """A fresh journal holding the records of the files this run reuses."""
    path = journal_path(out)
    write_bytes_atomic(path, "".join(_line(r) for r in carried).encode())
    return path


class JournalWriter:
    """Appends one line per written file. Each line is one O_APPEND write() right after its .bin
    is in place, by the process that wrote it, so a killed run leaves no .bin it did not record
    (bar the one being recorded)."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def add(self, record: SourceRecord) -> None:
        os.write(self._fd, _line(record).encode())

    def close(self) -> None:
        os.close(self._fd)


def _line(record: SourceRecord) -> str:
    return json.dumps(asdict(record)) + "\n"
