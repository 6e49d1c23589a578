"""Crash consistency of infer and eval as a test (issue 22): SIGKILL at seeded moments, then rerun.

A moment is "just before the K-th file-system change under the output folder" (tests/killpoints.py:
temp files, outputs, records, summary, result.json, the lock), K drawn with a fixed seed from every
change an uninterrupted run makes: 10 moments per command here, 100 under the ``slow`` marker
(``make test`` leaves those out). Each killed run is a forked process SIGKILLed by itself (no handler
or finally block runs); nothing depends on timing.

Right after the kill, every record must tell the truth (a record saying complete has every output,
a record saying running has nobody holding its lock, every output present is whole). After the
same command is rerun: the final files are byte-identical to the uninterrupted run's (outputs), or
equal but for what differs between any two runs (timings, dates, this run's written/reused split,
the argv), with no temp file and no lock left, and the records say complete.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from clitools import run
from focalinfer import runlock
from killpoints import command, environment, make_run_set

SEED = 22
# result.json / record / summary fields that differ between any two runs of the same command
RUN_VOLATILE = {"created", "images_per_s", "ais_bench_throughput", "outputs_written", "outputs_reused"}
RECORD_VOLATILE = {"updated", "files_written", "files_kept"}


def argv(kind: str, run_set: dict, root: str) -> list:
    common = ["--batch-size", 2, "--backend", "onnxruntime", "--threads", 1, "--quiet"]
    if kind == "infer":
        return ["infer", "--model-file", run_set["onnx"], "--input", run_set["data"], "--output", root,
                "--output-dirname", "r", *common]
    return ["eval", "--onnx", run_set["onnx"], "--labels", run_set["labels"], "--input", run_set["data"],
            "--output", f"{root}/r.json", *common]


def files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def normalised(path: Path, root: Path, drop: set[str]) -> dict:
    """A JSON record with this run's folder spelled ROOT, without ``drop`` (top level and summary)
    and without the argv and pid of the process that ran (the watcher's, or pytest's)."""
    data = json.loads(path.read_text().replace(str(root), "ROOT"))
    data.get("plan", {}).pop("args", None)
    for part in (data, data.get("summary", {})):
        for key in drop:
            part.pop(key, None)
    return data


def reference_run(kind: str, run_set: dict, base: Path) -> tuple[Path, int]:
    """An uninterrupted run, and the number of file-system changes it makes."""
    root = base / f"{kind}-reference"
    root.mkdir()
    count = base / f"{kind}-count"
    done = subprocess.run(command(root, *argv(kind, run_set, str(root)), count=count),
                          env=environment(base / "cache"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return root, int(count.read_text())


def kill_at(kind: str, run_set: dict, base: Path, moments: list[int]) -> dict[int, int]:
    statuses = base / f"{kind}-statuses.json"
    done = subprocess.run(command(f"{base}/{kind}-k{{k}}", *argv(kind, run_set, "{root}"),
                                  kill_each=",".join(map(str, moments)), statuses=statuses),
                          env=environment(base / "cache"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return {int(k): v for k, v in json.loads(statuses.read_text()).items()}


def check_truthful_after_kill(kind: str, root: Path, reference: Path) -> None:
    """What a killed run left may be unfinished, never untrue."""
    ref = files(reference)
    for name, path in files(root).items():
        if name.endswith(("_0.txt",)):
            assert path.read_bytes() == ref[name].read_bytes(), f"{name} is not whole"
    record = root / "r.focalinfer.json"
    if record.exists():
        state = json.loads(record.read_text())["status"]
        if state == "complete":
            outputs = {n for n in files(root) if n.startswith("r/") and not n.endswith(".tmp")}
            assert outputs == {n for n in ref if n.startswith("r/")} and (root / "r_summary.json").exists()
        else:
            assert state == "running" and runlock.held_by_other(root / "r") is None
    if (root / "r.json").exists():
        assert json.loads(record.read_text())["status"] == "complete"
        assert normalised(root / "r.json", root, RUN_VOLATILE) == normalised(reference / "r.json", reference,
                                                                            RUN_VOLATILE)


def check_rerun_equals_reference(root: Path, reference: Path) -> None:
    got, want = files(root), files(reference)
    assert sorted(got) == sorted(want), "temp files or locks left, or files missing"
    for name, path in want.items():
        if name.startswith("r/"):
            assert got[name].read_bytes() == path.read_bytes(), name
    record, ref_record = (json.loads(p.read_text()) for p in (got["r.focalinfer.json"], want["r.focalinfer.json"]))
    assert record["status"] == "complete"
    assert record["files_written"] + record["files_kept"] == ref_record["files_written"]
    assert normalised(got["r.focalinfer.json"], root, RECORD_VOLATILE) == \
        normalised(want["r.focalinfer.json"], reference, RECORD_VOLATILE)
    assert normalised(got["r_summary.json"], root, set())["filesinfo"] == \
        normalised(want["r_summary.json"], reference, set())["filesinfo"]
    if "r.json" in want:
        result = json.loads(got["r.json"].read_text())["summary"]
        assert result["outputs_written"] + result["outputs_reused"] == ref_record["files_written"]
        assert normalised(got["r.json"], root, RUN_VOLATILE) == normalised(want["r.json"], reference, RUN_VOLATILE)


def crash_and_rerun(kind: str, run_set: dict, base: Path, moments: int) -> None:
    reference, changes = reference_run(kind, run_set, base)
    chosen = sorted(random.Random(SEED).sample(range(1, changes + 1), moments))
    statuses = kill_at(kind, run_set, base, chosen)
    assert statuses == {k: -9 for k in chosen}  # every run died at its moment (SIGKILL)
    for k in chosen:
        root = base / f"{kind}-k{k}"
        check_truthful_after_kill(kind, root, reference)
        again = run(*argv(kind, run_set, str(root)))
        assert again.exit_code == 0, (k, again.output)
        check_rerun_equals_reference(root, reference)


@pytest.mark.parametrize("kind", ["infer", "eval"])
def test_killed_at_10_seeded_moments_a_rerun_ends_as_an_uninterrupted_run(kind, tmp_path, tiny_onnx):
    crash_and_rerun(kind, make_run_set(tmp_path / "set", tiny_onnx[0]), tmp_path, moments=10)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["infer", "eval"])
def test_killed_at_100_seeded_moments_a_rerun_ends_as_an_uninterrupted_run(kind, tmp_path, tiny_onnx):
    crash_and_rerun(kind, make_run_set(tmp_path / "set", tiny_onnx[0], count=40), tmp_path, moments=100)
