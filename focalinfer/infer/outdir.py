"""Which model a result directory belongs to: the infer record beside it, with the model file's hash.

A rerun of the same model resumes; another model's results are refused unless --force, which
clears them first (only the contract's output files and summaries, nothing else). The record
sits beside ``<output>/<dirname>``, never inside it: ais_bench's folder holds only its outputs.
Its ``status`` is ``running`` from the claim on (the writer holds the folder's lock,
``focalinfer.runlock``), then ``complete``, ``interrupted`` or ``failed``; a run killed outright
leaves ``running`` with nobody holding the lock, which readers report as a run that died.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from focalinfer import layout
from focalinfer.errors import FocalinferError, RecordError, first_line
from focalinfer.log import info
from focalinfer.records import InferRecord, infer_record_path
from focalinfer.util import remove_atomic_temps


def _changed_settings(old: InferRecord, new: InferRecord) -> str | None:
    """Why the outputs in a folder of the same model cannot be resumed, or None when they can."""
    if old.inputs_sha256 and new.inputs_sha256 and old.inputs_sha256 != new.inputs_sha256:
        return f"they were made from other inputs ({old.input_dir or 'another folder'}, or files changed since)"
    if old.batch_size and new.batch_size and old.batch_size != new.batch_size:
        return f"they were made at batch {old.batch_size}, not {new.batch_size}"
    if old.outfmt and new.outfmt and old.outfmt != new.outfmt:
        return f"they are {old.outfmt}, not {new.outfmt}"
    return None


def remove_stale_temps_beside(output_dir: str | os.PathLike) -> None:
    """The temp files a killed writer of this folder left beside it (its record's, its summary's).
    Call it holding the folder's lock: then no live writer owns them. (The engine removes those inside.)"""
    output_dir = Path(output_dir)
    ours = {infer_record_path(output_dir).name, Path(layout.summary_path(str(output_dir.parent), output_dir.name)).name}
    if output_dir.parent.is_dir():
        remove_atomic_temps(output_dir.parent, lambda target: target in ours)


def claim(output_dir: str | os.PathLike, record: InferRecord, force: bool) -> tuple[bool, bool]:
    """Make ``output_dir`` this run's: resume the same model, inputs and settings; start over (saying
    so) for the same model with other inputs or settings; refuse another model's unless ``force``.

    Returns (the directory is new, the record is new), for :func:`release`.
    """
    output_dir = Path(output_dir)
    created = not output_dir.exists()
    try:
        old = InferRecord.read(output_dir)
    except RecordError:
        old = InferRecord("", "", "")  # unreadable: nobody's, so another model's unless --force
    results = layout.result_files(output_dir) if output_dir.is_dir() else []
    clear = force
    if old is not None and old.model_sha256 != record.model_sha256:
        if not force:
            raise FocalinferError(
                f"{output_dir}: holds results of another model ({old.model_file or 'unknown'}); choose another "
                "--output-dirname or pass --force to replace them"
            )
    elif old is None and results and not force:
        raise FocalinferError(
            f"{output_dir}: holds output files focalinfer has no record of (another model or tool?); choose "
            "another --output-dirname or pass --force to replace them"
        )
    elif old is not None and results and (why := _changed_settings(old, record)):
        info(f"{output_dir}: not resuming the {len(results)} files there, {why}; starting over")
        clear = True
    if clear:
        for path in results:
            path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    _write(output_dir, record, "running")
    return created, old is None or old.model_sha256 != record.model_sha256


def _write(output_dir: Path, record: InferRecord, status: str, error: str | None = None) -> None:
    record.status, record.error = status, error
    record.updated = time.strftime("%Y-%m-%dT%H:%M:%S")
    record.write(output_dir)


def finish(output_dir: str | os.PathLike, record: InferRecord, batch_size: int, written: int,
           kept: int) -> InferRecord:
    """Record what the finished run did: the batch that really ran, outputs written and reused."""
    record.batch_size, record.files_written, record.files_kept = batch_size, written, kept
    _write(Path(output_dir), record, "complete")
    return record


def output_files(output_dir: Path) -> list[Path]:
    """The output files (not summaries) a result folder holds."""
    if not output_dir.is_dir():
        return []
    return [p for p in layout.result_files(output_dir) if layout.OUTPUT_NAME.match(p.name)]


def stop(output_dir: str | os.PathLike, record: InferRecord, claimed: tuple[bool, bool],
         error: BaseException) -> int:
    """A run that raised (Ctrl-C included): undo its claim when the folder holds no output and the
    record is this run's, else record why it stopped. Returns the output files the folder keeps."""
    output_dir = Path(output_dir)
    outputs = output_files(output_dir)
    created, new_record = claimed
    if not outputs and new_record:
        _release(output_dir, created)
        return 0
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    _write(output_dir, record, status, first_line(error, with_type=True))
    return len(outputs)


def _release(output_dir: Path, created: bool) -> None:
    """Undo a claim: the record, and the folder when this run created it (and left it empty)."""
    infer_record_path(output_dir).unlink(missing_ok=True)
    if created and output_dir.is_dir():
        layout.remove_stale_temps(str(output_dir))
        for device_dir in layout.device_dirs(output_dir):
            layout.remove_stale_temps(str(device_dir))
            if not any(device_dir.iterdir()):
                device_dir.rmdir()
        if not any(output_dir.iterdir()):
            output_dir.rmdir()
