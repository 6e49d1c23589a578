"""Which model a result directory belongs to: the infer record beside it, with the model file's hash.

A rerun of the same model resumes; another model's results are refused unless --force, which
clears them first (only the contract's output files and summaries, nothing else). The record
sits beside ``<output>/<dirname>``, never inside it: ais_bench's folder holds only its outputs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from focalinfer import layout
from focalinfer.errors import FocalinferError
from focalinfer.records import InferRecord, infer_record_path
from focalinfer.util import sha256_file


def claim(output_dir: str | os.PathLike, model_file: str | os.PathLike, backend: str,
          force: bool) -> tuple[bool, bool]:
    """Make ``output_dir`` this model's (refusing another's unless ``force``).

    Returns (the directory is new, the record is new), for :func:`release`.
    """
    output_dir = Path(output_dir)
    created = not output_dir.exists()
    model_hash = sha256_file(model_file)
    record = InferRecord.read(output_dir)
    results = layout.result_files(output_dir) if output_dir.is_dir() else []
    if record is not None and record.model_sha256 != model_hash:
        if not force:
            raise FocalinferError(
                f"{output_dir}: holds results of another model ({record.model_file or 'unknown'}); choose another "
                "--output-dirname or pass --force to replace them"
            )
    elif record is None and results and not force:
        raise FocalinferError(
            f"{output_dir}: holds output files focalinfer has no record of (another model or tool?); choose "
            "another --output-dirname or pass --force to replace them"
        )
    if force:
        for path in results:
            path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    InferRecord(str(model_file), model_hash, backend, time.strftime("%Y-%m-%dT%H:%M:%S")).write(output_dir)
    return created, record is None or record.model_sha256 != model_hash


def release(output_dir: str | os.PathLike, claimed: tuple[bool, bool]) -> None:
    """Undo a claim when the run failed before writing any result."""
    output_dir = Path(output_dir)
    created, new_record = claimed
    if not output_dir.is_dir() or layout.result_files(output_dir):
        return
    if new_record:
        infer_record_path(output_dir).unlink(missing_ok=True)
    if created:
        for device_dir in output_dir.glob("device*"):
            if device_dir.is_dir() and not any(device_dir.iterdir()):
                device_dir.rmdir()
        if not any(output_dir.iterdir()):
            output_dir.rmdir()
