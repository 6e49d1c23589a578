"""One writer per output (issue 22, point 2): focalinfer.runlock, then real infer / eval / compare
processes started into one folder at once. A process holding a folder is paused deterministically
by tests/killpoints.py at its first output file (no sleeps, no timing), and killed the same way.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clitools import error_line, run
from focalinfer import runlock
from focalinfer.errors import FocalinferError
from killpoints import IMAGES, REPO, command, environment, make_run_set
from lockholder import holder, release

def test_a_json_file_and_its_folder_share_one_lock_beside_them(tmp_path):
    assert runlock.lock_path(tmp_path / "r.json") == runlock.lock_path(tmp_path / "r") == tmp_path / "r.lock"
    assert runlock.lock_path(tmp_path / "r.v2") == tmp_path / "r.v2.lock"


def test_a_live_holder_is_named_and_its_lock_released_after_it(tmp_path):
    target = tmp_path / "out" / "r"
    proc = holder(target)
    try:
        content = json.loads((tmp_path / "out" / "r.lock").read_text())
        assert (content["pid"], content["host"], content["command"]) == (proc.pid, socket.gethostname(), "infer")
        with pytest.raises(FocalinferError) as refused:
            with runlock.hold(target, "eval"):
                pass
        assert str(refused.value).startswith(f"{target}: focalinfer infer (pid {proc.pid}, started ")
        assert f"is writing here; wait for it to finish or choose another output (its lock: {tmp_path}" \
               in str(refused.value)
        assert runlock.held_by_other(target).pid == proc.pid
        with pytest.raises(FocalinferError, match="is still writing it; wait for it to finish before scoring"):
            runlock.refuse_if_written(target, "scoring it")
    finally:
        release(proc)
    assert not (tmp_path / "out" / "r.lock").exists() and runlock.held_by_other(target) is None
    with runlock.hold(target, "eval") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with runlock.hold(target.with_suffix(".json"), "eval"):  # re-entrant: the same lock again
            pass
        assert path.exists()
    assert not path.exists()


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_note(tmp_path):
    target = tmp_path / "r"
    proc = holder(target, "die")
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((tmp_path / "r.lock").read_text())["pid"] == proc.pid  # left behind
    assert runlock.held_by_other(target) is None  # the kernel dropped the flock with the process
    notes = []
    with runlock.hold(target, "eval", log=notes.append):
        assert json.loads((tmp_path / "r.lock").read_text())["pid"] == os.getpid()
    assert notes == [f"{target}: focalinfer infer (pid {proc.pid}, started "
                     f"{notes[0].split('started ')[1].split(')')[0]}) ended without releasing its lock (killed?); "
                     "taking it over"]
    assert not (tmp_path / "r.lock").exists()


# --- real processes into one folder ---------------------------------------------------------


@pytest.fixture
def run_set(tmp_path, tiny_onnx):
    return make_run_set(tmp_path / "set", tiny_onnx[0])


def eval_args(run_set, out: Path, batch: int) -> list:
    return ["eval", "--onnx", run_set["onnx"], "--labels", run_set["labels"], "--input", run_set["data"],
            "--output", out, "--batch-size", batch, "--backend", "onnxruntime", "--threads", 1, "--quiet"]


def start_paused(root: Path, gate: Path, args: list, cache: Path) -> subprocess.Popen:
    """A real focalinfer process, paused just before its first output file (it holds the lock)."""
    proc = subprocess.Popen(command(root, *args, pause_on="_0.txt", gate=gate), env=environment(cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    ready = Path(str(gate) + ".ready")
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first process never reached its first output"
        time.sleep(0.02)
    return proc


def cli_process(args: list, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "focalinfer.cli", *map(str, args)], env=environment(cache),
                          capture_output=True, text=True, timeout=300)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("focalinfer: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_two_commands_into_one_folder_one_runs_the_others_are_refused(run_set, tmp_path):
    root, out, gate, cache = tmp_path / "cc3", tmp_path / "cc3" / "r.json", tmp_path / "go", tmp_path / "cache"
    first = start_paused(root, gate, eval_args(run_set, out, 4), cache)
    try:
        record = json.loads((root / "r.focalinfer.json").read_text())
        assert record["status"] == "running" and record["batch_size"] == 4

        # the case: the same eval at another batch size, 7 s later — a real second process
        second = cli_process(eval_args(run_set, out, 1), cache)
        assert second.returncode == 1
        assert one_error_line(second.stderr).startswith(
            f"focalinfer: error: {out}: focalinfer eval (pid {first.pid}, started ")
        # the very same eval again (it ran in full and recorded contended images/s): refused too
        same = run(*eval_args(run_set, out, 4))
        assert same.exit_code == 1 and f"focalinfer eval (pid {first.pid}" in error_line(same)
        # compare --json into the same name, a real process too
        compared = cli_process(["compare", run_set["data"], run_set["data"], "--json", out], cache)
        assert compared.returncode == 1 and f"focalinfer eval (pid {first.pid}" in one_error_line(compared.stderr)
        # infer into the folder itself, and reading the half-written folder, in this process
        refused = run("infer", "--model-file", run_set["onnx"], "--input", run_set["data"], "--output", root,
                      "--output-dirname", "r", "--batch-size", 1, "--backend", "onnxruntime", "--quiet")
        assert refused.exit_code == 1
        assert error_line(refused).startswith(f"focalinfer: error: {root / 'r'}: focalinfer eval (pid {first.pid}")
        scored = run("eval", "--results", root / "r", "--labels", run_set["labels"], "--output", tmp_path / "x.json")
        assert scored.exit_code == 1 and "is still writing it; wait for it to finish before scoring it" in \
            error_line(scored)
        # nobody touched the first run's folder
        assert json.loads((root / "r.focalinfer.json").read_text()) == record
        assert not list((root / "r").glob("*_0.txt"))
    finally:
        gate.write_text("go")
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    record = json.loads((root / "r.focalinfer.json").read_text())
    assert (record["status"], record["batch_size"], record["files_written"]) == ("complete", 4, IMAGES)
    summary = json.loads(out.read_text())["summary"]
    assert (summary["count"], summary["missing"], summary["batch_size"]) == (IMAGES, 0, 4)
    assert summary["outputs_written"] == IMAGES and summary["outputs_reused"] == 0
    assert sorted(p.name for p in root.iterdir()) == ["r", "r.focalinfer.json", "r.json", "r_summary.json"]


def test_a_killed_runs_lock_is_taken_over_and_its_outputs_reused(run_set, tmp_path):
    root, out, cache = tmp_path / "cc3", tmp_path / "cc3" / "r.json", tmp_path / "cache"
    killed = subprocess.run(command(root, *eval_args(run_set, out, 4), kill_on="img_5_0.txt"),
                            env=environment(cache), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    lock = json.loads((root / "r.lock").read_text())
    assert lock["command"] == "eval" and runlock.held_by_other(root / "r") is None
    assert json.loads((root / "r.focalinfer.json").read_text())["status"] == "running"  # as it was killed
    # batch 1 (img_0–3) and img_4 of batch 2 were written, whole; img_5's write had not begun
    assert sorted(p.name for p in (root / "r").iterdir()) == sorted(f"img_{i}_0.txt" for i in range(5))
    # a --results score of the dead run's folder says it did not finish
    partial = run("eval", "--results", root / "r", "--labels", run_set["labels"], "--output", tmp_path / "p.json",
                  "--allow-missing")
    assert "the run that wrote it did not finish (its record still says running and nobody holds its lock: " \
           "it was killed)" in partial.output
    assert json.loads((tmp_path / "p.json").read_text())["summary"]["outputs_written"] is None

    again = cli_process(eval_args(run_set, out, 4), cache)
    assert again.returncode == 0, again.stderr
    assert f"focalinfer eval (pid {lock['pid']}, started {lock['started']}) ended without releasing its lock " \
           "(killed?); taking it over" in again.stderr
    summary = json.loads(out.read_text())["summary"]
    assert (summary["count"], summary["outputs_reused"], summary["outputs_written"]) == (IMAGES, 4, IMAGES - 4)
    assert not (root / "r.lock").exists() and not [p for p in root.rglob("*.tmp")]
