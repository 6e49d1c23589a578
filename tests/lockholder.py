"""Another process that holds a focalinfer.runlock lock, for the tests of every command that takes one:
``holder(target, command)`` returns once the lock is held; ``release`` lets it go; ``then='die'``
makes it SIGKILL itself while holding it (the kernel drops the flock, its file stays)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HOLD = """
import os, sys
from focalinfer import runlock
with runlock.hold(sys.argv[1], sys.argv[3]):
    print("held", flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), 9)
    sys.stdin.readline()
"""


def holder(target: Path, then: str = "wait", command: str = "infer") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target), then, command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline() == "held\n"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.communicate("\n", timeout=30)
    assert proc.returncode == 0


def killed_holder(target: Path, command: str) -> int:
    """The pid of a process that died (SIGKILL) holding ``target``'s lock: its lock file is left behind."""
    proc = holder(target, "die", command)
    proc.wait(timeout=30)
    return proc.pid
