"""Whether a preprocess output folder is being written, was finished, or was left by a dead run.

The manifest says 'running' only while a run is alive: it records the writer's pid and host, and
an exception or Ctrl-C rewrites it as 'interrupted' or 'failed' before the run ends. A rerun
reads what the previous run left, says so when that run died, removes the temp files it left and
resumes (the finished .bin files are kept).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from focalinfer.errors import FocalinferError, first_line
from focalinfer.util import pid_alive
from focalinfer.preprocess.sources import JOURNAL
from focalinfer.util import remove_atomic_temps, write_json_atomic


def running_state() -> dict:
    return {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _read(manifest: Path) -> dict | None:
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def take_over(out: Path, manifest: Path) -> list[str]:
    """Check no live run writes into ``out``, clean up after a dead one; returns notes to show."""
    old = _read(manifest) or {}
    notes = []
    status, pid, host = old.get("status"), old.get("pid"), old.get("host")
    if status == "running" and isinstance(pid, int):
        here = host == socket.gethostname()
        if here and pid != os.getpid() and pid_alive(pid):
            raise FocalinferError(
                f"{out}: another preprocess (pid {pid}, started {old.get('started')}) is writing here; "
                f"wait for it or use another --out (if no such run exists, delete {manifest})"
            )
        where = f"pid {pid}" + ("" if here else f" on host {host}")
        notes.append(f"{out}: the previous preprocess ({where}, started {old.get('started')}) died before it "
                     "finished; resuming (its finished .bin files are kept)")
    elif status == "running":  # written before runs recorded their pid
        notes.append(f"{out}: the previous preprocess did not finish (its manifest names no process); "
                     "resuming (its finished .bin files are kept)")
    elif status in ("interrupted", "failed"):
        notes.append(f"{out}: the previous preprocess was {status} ({old.get('error', 'no reason recorded')}); "
                     "resuming (its finished .bin files are kept)")
    removed = remove_atomic_temps(out, _is_preprocess_output)
    if removed:
        notes.append(f"{out}: removed {len(removed)} temp files an interrupted run left ({removed[0]} …)")
    return notes


def _is_preprocess_output(target: str) -> bool:
    return target.endswith(".bin") or target in ("manifest.json", JOURNAL)


def guarded(manifest: Path, header: dict, work):
    """Run ``work()``; if it raises (Ctrl-C included), the manifest says so instead of 'running'."""
    try:
        return work()
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        try:
            write_json_atomic(manifest, {**header, "status": status, "error": first_line(e, with_type=True)})
        except OSError:  # a full disk: 'running' stays, and the pid it names is gone once we exit
            pass
        raise
