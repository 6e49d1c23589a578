"""Which model a result directory belongs to: a small sidecar with the model file's hash.

A rerun of the same model resumes; another model's results are refused unless --force, which
clears them first (only the contract's output files and summaries, nothing else).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from focalinfer.errors import FocalinferError
from focalinfer.infer import contract
from focalinfer.util import sha256_file, write_json_atomic

SIDECAR = ".focalinfer-infer.json"


def _result_files(output_dir: Path) -> list[Path]:
    dirs = [output_dir] + sorted(p for p in output_dir.glob("device*") if p.is_dir())
    found = [f for d in dirs for f in d.iterdir() if f.is_file() and contract.OUTPUT_NAME.match(f.name)]
    summaries = [output_dir.with_name(output_dir.name + "_summary.json"), output_dir / "sumary.json"]
    summaries += [d.with_name(d.name + "_summary.json") for d in dirs[1:]]
    return found + [s for s in summaries if s.is_file()]


def claim(output_dir: str | os.PathLike, model_file: str | os.PathLike, backend: str,
          force: bool) -> tuple[bool, bool]:
    """Make ``output_dir`` this model's (refusing another's unless ``force``).

    Returns (the directory is new, the record is new), for :func:`release`.
    """
    output_dir = Path(output_dir)
    created = not output_dir.exists()
    model_hash = sha256_file(model_file)
    sidecar = output_dir / SIDECAR
    record = _read(sidecar)
    results = _result_files(output_dir) if output_dir.is_dir() else []
    if record is not None and record.get("model_sha256") != model_hash:
        if not force:
            raise FocalinferError(
                f"{output_dir}: holds results of another model ({record.get('model_file')}); choose another "
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
    write_json_atomic(sidecar, {
        "model_file": str(model_file),
        "model_sha256": model_hash,
        "backend": backend,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    return created, record is None or record.get("model_sha256") != model_hash


def release(output_dir: str | os.PathLike, claimed: tuple[bool, bool]) -> None:
    """Undo a claim when the run failed before writing any result."""
    output_dir = Path(output_dir)
    created, new_record = claimed
    if not output_dir.is_dir() or _result_files(output_dir):
        return
    if new_record:
        (output_dir / SIDECAR).unlink(missing_ok=True)
    if created:
        for device_dir in output_dir.glob("device*"):
            if device_dir.is_dir() and not any(device_dir.iterdir()):
                device_dir.rmdir()
        if not any(output_dir.iterdir()):
            output_dir.rmdir()


def _read(sidecar: Path) -> dict | None:
    if not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text())
    except ValueError:
        return {}
