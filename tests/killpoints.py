"""Run the focalinfer CLI in this process and SIGKILL it (or pause it) at its K-th file-system change.

    python tests/killpoints.py --root DIR [--kill-at K | --kill-on TEXT] [--pause-on TEXT --gate FILE]
                               [--count FILE] -- ARGS...

A file-system change is a call of os.open with O_CREAT, os.replace, os.rename, os.link,
os.unlink/os.remove, os.mkdir or os.rmdir on a path under ``--root`` (temp files, outputs,
records, locks, summaries; what libraries do elsewhere is not counted). ``--kill-at K`` sends
SIGKILL to this process just before the K-th change: no handler, no finally block runs, as when the
kernel kills a process; ``--kill-on TEXT`` before the first change of a path containing TEXT.
``--pause-on TEXT`` writes FILE.ready before the first change of a path containing TEXT and waits
until FILE exists (a second process can then be started against a live holder deterministically).
``--count FILE`` writes the number of changes made when the run ends normally. The moments are
chosen by the tests (seeded); nothing here depends on timing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

WATCHED = ("replace", "rename", "link", "unlink", "remove", "mkdir", "rmdir")


class Points:
    def __init__(self, root: Path, kill_at: int | None = None, kill_on: str | None = None,
                 pause_on: str | None = None, gate: Path | None = None):
        self.root, self.kill_at, self.kill_on = str(root), kill_at, kill_on
        self.pause_on, self.gate = pause_on, gate
        self.count = 0

    def ours(self, *paths) -> bool:
        for p in paths:
            if isinstance(p, (str, bytes, os.PathLike)):
                full = os.path.realpath(os.fsdecode(p))
                if full == self.root or full.startswith(self.root + os.sep):
                    return True
        return False

    def change(self, *paths) -> None:
        if not self.ours(*paths):
            return
        self.count += 1
        names = " ".join(os.fsdecode(p) for p in paths if isinstance(p, (str, bytes, os.PathLike)))
        if self.count == self.kill_at or (self.kill_on and self.kill_on in names):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.pause_on and self.pause_on in names:
            self.pause_on = None
            Path(str(self.gate) + ".ready").write_text(str(os.getpid()))
            while not self.gate.exists():
                time.sleep(0.02)


def install(points: Points) -> None:
    real_open = os.open

    def watched_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            points.change(path)
        return real_open(path, flags, *args, **kwargs)

    os.open = watched_open
    for name in WATCHED:
        real = getattr(os, name)

        def watched(*args, _real=real, **kwargs):
            points.change(*args[:2])
            return _real(*args, **kwargs)

        setattr(os, name, watched)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--kill-on")
    parser.add_argument("--pause-on")
    parser.add_argument("--gate", type=Path)
    parser.add_argument("--count", type=Path)
    parser.add_argument("--kill-each", help="K1,K2,…: one forked run per K, killed at its K-th change; "
                        "'{k}' in --root and '{root}' in ARGS name each run's folder")
    parser.add_argument("--statuses", type=Path, help="--kill-each: each run's exit status, as JSON")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    from focalinfer.cli import cli  # imported before the watch: importing writes nothing we count

    if options.kill_each:
        return kill_each(cli, options, args)
    points = Points(Path(os.path.realpath(options.root)), options.kill_at, options.kill_on, options.pause_on,
                    options.gate)
    install(points)
    try:
        cli.main(args, prog_name="focalinfer", standalone_mode=True)
    finally:
        if options.count:
            options.count.write_text(str(points.count))


def kill_each(cli, options, args: list[str]) -> None:
    """Fork one run per moment from this process, whose imports are done once (a run then costs what
    the command costs, not a Python start), and SIGKILL each at its moment."""
    import json

    import onnxruntime  # noqa: F401  the children share the import; no session exists before the fork
    import focalinfer.pipeline  # noqa: F401

    statuses = {}
    for k in map(int, options.kill_each.split(",")):
        root = Path(options.root.format(k=k))
        root.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            install(Points(Path(os.path.realpath(root)), kill_at=k))
            try:
                cli.main([a.replace("{root}", str(root)) for a in args], prog_name="focalinfer")
            except SystemExit as e:
                os._exit(e.code if isinstance(e.code, int) else 1)
            os._exit(0)
        statuses[k] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    options.statuses.write_text(json.dumps(statuses))


# --- for the tests ------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
IMAGES = 12


def command(root: Path, *args, **points) -> list[str]:
    """The argv running ``focalinfer ARGS`` under this watcher (``kill_at=3``, ``pause_on='_0.txt'``…)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--root", str(root)]
    for name, value in points.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv + ["--", *map(str, args)]


def environment(cache: Path) -> dict:
    """This worktree's package first, and a cache folder of the test's own."""
    return {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache)}


def make_run_set(folder: Path, onnx: Path, count: int = IMAGES) -> dict:
    """A tiny classifier's ONNX (10 classes), ``count`` float32 input files and their labels."""
    import shutil

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "tiny.onnx"
    shutil.copyfile(onnx, model)
    data = folder / "data"
    data.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        rng.standard_normal((1, 3, 32, 32)).astype(np.float32).tofile(data / f"img_{i}.bin")
        lines.append(f"img_{i}.JPEG {i % 10}\n")
    labels = folder / "labels.txt"
    labels.write_text("".join(lines))
    return {"onnx": model, "data": data, "labels": labels}


if __name__ == "__main__":
    main()
    sys.exit(0)
