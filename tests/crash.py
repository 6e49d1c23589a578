"""Crash consistency as a test: kill a command with SIGKILL at seeded random moments, rerun it, and
compare with an uninterrupted run (issue 22).

For each moment the command starts on fresh outputs, is killed ``t`` seconds in (``t`` uniform over
the uninterrupted run's duration), then the same command runs to the end. Afterwards:

- the output folder holds exactly the files an uninterrupted run leaves (so no temp file, lock or
  journal is left), and each of them is byte-identical to that run's — records after their case's
  ``normalise`` drops what may differ (timings, written/reused counts, notes about the cleanup);
- the case's ``check`` finds every record's state true (status, hashes, the files it lists).

Commands run in children forked from a *zygote*: one interpreter that imported focalinfer, torch,
onnx and onnxruntime once (and registered the tests' tiny model), so a run costs its work, not the
imports. A kill is either of the command's process group (the command and its workers at once)
or of the command alone (its workers run on as orphans; the rerun starts once they are gone), by
the seeded draw. A case is one :class:`CrashCase`; tests/test_crash.py lists them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# The zygote: reads one JSON request per line, forks a child per command, reports pid and status.
_ZYGOTE = r"""
import json, os, sys
sys.path[:0] = [{root!r}, {tests!r}]
import torch, onnx, onnxruntime, onnxsim  # noqa: F401  (paid once, here)
import focalinfer.cli, focalinfer.export.exporter, focalinfer.precision.run, focalinfer.atc  # noqa: F401
from focalinfer import registry
from tinynet import TINY, TinyNet
registry.model_names()
registry._REGISTRY[TINY] = registry.ModelSpec(
    name=TINY, family="test", builder=TinyNet, input_size=32,
    transforms={{"official": registry.official_transform(32)}}, checkpoint_layout="model",
    source="tests/tinynet.py", num_classes=10)

def child(request):
    os.setsid()
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0); os.dup2(log, 1); os.dup2(log, 2)
    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    sys.argv = ["focalinfer", *request["argv"]]
    code = 0
    try:
        focalinfer.cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback; traceback.print_exc(); code = 99
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(code)

print(json.dumps({{"ready": True}}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if "wait" in request:
        _, status = os.waitpid(request["wait"], 0)
        reply = {{"code": os.waitstatus_to_exitcode(status)}}
    else:
        pid = os.fork()
        if pid == 0:
            child(request)
        reply = {{"pid": pid}}
    print(json.dumps(reply), flush=True)
"""


class Zygote:
    """A pre-imported interpreter that forks one child per command (see the module doc)."""

    def __init__(self):
        code = _ZYGOTE.format(root=str(ROOT), tests=str(TESTS))
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"})
        assert self._reply() == {"ready": True}

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the zygote died (exit {self.proc.poll()})"
        return json.loads(line)

    def _ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def start(self, argv: list[str], cwd: Path, log: Path, env: dict[str, str]) -> int:
        return self._ask({"argv": argv, "cwd": str(cwd), "log": str(log), "env": env})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["code"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid`` (Linux /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def wait_for_group(pgid: int, timeout: float = 60) -> None:
    """Orphaned workers finish their task and exit once their parent's pipes close."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError(f"process group {pgid} still alive {timeout} s after its leader was killed")
        time.sleep(0.02)


@dataclass
class CrashCase:
    """One command under test.

    ``prepare(shared)``: build its inputs once under ``shared``; returns values ``argv`` uses.
    ``argv(inputs, out)``: the command line writing into folder ``out``.
    ``normalise(name, data)``: the bytes of output file ``name`` to compare (records: without
    timings and the like); default: as they are.
    ``check(inputs, out)``: assert that the records in ``out`` are true.
    ``env(inputs)``: environment of the command (e.g. PATH with a stand-in).
    """

    name: str
    prepare: Callable[[Path], dict]
    argv: Callable[[dict, Path], list[str]]
    check: Callable[[dict, Path], None]
    normalise: Callable[[str, bytes], bytes] = lambda name, data: data
    env: Callable[[dict], dict] = field(default=lambda inputs: {})


def without(data: bytes, *keys: str) -> bytes:
    """A JSON record without ``keys`` (dotted for nested ones)."""
    record = json.loads(data)
    for key in keys:
        *parents, last = key.split(".")
        node = record
        for parent in parents:
            node = node.get(parent, {})
        node.pop(last, None)
    return json.dumps(record, sort_keys=True).encode()


def describe_difference(name: str, expected: bytes, got: bytes) -> str:
    """Which keys of a JSON record differ (else the first differing byte)."""
    try:
        a, b = json.loads(expected), json.loads(got)
    except ValueError:
        at = next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))
        return f"{name} (sizes {len(expected)} / {len(got)}, first difference at byte {at})"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) if isinstance(a, dict) else []
    return f"{name} (keys {', '.join(f'{k}: {a.get(k)!r:.200} vs {b.get(k)!r:.200}' for k in keys)})"


def tree(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*"))}


def snapshot(case: CrashCase, out: Path) -> dict[str, bytes | None]:
    """Every path under ``out`` → its normalised bytes (None for a folder)."""
    return {rel: (case.normalise(rel, path.read_bytes()) if path.is_file() else None)
            for rel, path in tree(out).items()}


@dataclass
class Run:
    code: int
    seconds: float
    log: str


class CrashHarness:
    def __init__(self, zygote: Zygote, case: CrashCase, inputs: dict, work: Path):
        self.zygote, self.case, self.inputs, self.work = zygote, case, inputs, work
        self.env = {k: str(v) for k, v in case.env(inputs).items()}

    def _run(self, out: Path, log: Path, kill_at: float | None = None, group: bool = True) -> Run:
        started = time.monotonic()
        pid = self.zygote.start(self.case.argv(self.inputs, out), self.work, log, self.env)
        if kill_at is not None:
            time.sleep(max(0.0, kill_at - (time.monotonic() - started)))
            try:
                os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # so early that the child has no group of its own yet
                os.kill(pid, signal.SIGKILL)
        code = self.zygote.wait(pid)
        seconds = time.monotonic() - started
        wait_for_group(pid)
        return Run(code, seconds, log.read_text(errors="replace") if log.exists() else "")

    @property
    def out(self) -> Path:
        """Every run writes here (records may hold the output's path), on a fresh folder."""
        return self.work / "out"

    def reference(self) -> tuple[dict, float]:
        """An uninterrupted run's outputs and its duration."""
        out = self.out
        run = self._run(out, self.work / "reference.log")
        assert run.code == 0, f"{self.case.name}: the uninterrupted run failed ({run.code}):\n{run.log}"
        self.case.check(self.inputs, out)
        expected = snapshot(self.case, out)
        shutil.rmtree(out)
        return expected, run.seconds

    def trial(self, k: int, kill_at: float, group: bool, expected: dict) -> None:
        out = self.out
        killed = self._run(out, self.work / f"trial{k}.killed.log", kill_at, group)
        rerun = self._run(out, self.work / f"trial{k}.rerun.log")
        what = (f"{self.case.name}, trial {k}: killed ({'group' if group else 'the command'}) at {kill_at:.3f} s "
                f"(exit {killed.code}), then rerun")
        assert rerun.code == 0, f"{what} failed ({rerun.code}):\n{rerun.log}"
        assert "Traceback" not in rerun.log, f"{what}:\n{rerun.log}"
        got = snapshot(self.case, out)
        assert sorted(got) == sorted(expected), f"{what}: files differ from an uninterrupted run's:\n" \
            f"  extra {sorted(set(got) - set(expected))}\n  missing {sorted(set(expected) - set(got))}"
        differ = [name for name in expected if got[name] != expected[name]]
        assert not differ, f"{what}: not byte-identical to an uninterrupted run's: " + \
            "; ".join(describe_difference(name, expected[name], got[name]) for name in differ)
        self.case.check(self.inputs, out)
        shutil.rmtree(out)

    def run(self, moments: int, seed: int) -> list[tuple[float, bool]]:
        expected, seconds = self.reference()
        rng = random.Random(f"{seed}:{self.case.name}")
        plan = [(rng.uniform(0, seconds), rng.random() < 0.5) for _ in range(moments)]
        for k, (kill_at, group) in enumerate(plan):
            self.trial(k, kill_at, group, expected)
        return plan
