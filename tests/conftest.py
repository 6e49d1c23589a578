"""Fixtures shared by the test files: the CANN/ais_bench stand-ins of tests/standins/ on PATH or
PYTHONPATH (see tests/standins/README.md); and, for every test, caches in a temporary folder and a
fixed CPU backend for 'auto'.

``--backend auto`` on an .onnx measures the installed CPU backends and caches the winner; tests
that are not about that choice get onnxruntime (as if it were the only one installed), so their
results do not depend on a timing race. Mark a test ``real_backend_choice`` to measure for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpu_kinds import CPU_KINDS
from focalinfer.backend.ais_bench import GENERATIONS
from tinynet import tiny_model, tiny_onnx  # noqa: F401  (the tiny classifier of the bench and backend tests)

STANDINS = Path(__file__).parent / "standins"
STANDIN = STANDINS / "atc_standin.py"


@pytest.fixture()
def fake_atc(tmp_path, monkeypatch):
    """An `atc` on a tmp PATH that runs the stand-in; returns a reader of the argvs it received."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    atc = bin_dir / "atc"
    atc.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(STANDIN)!r}, run_name='__main__')\n")
    atc.chmod(0o755)
    calls = tmp_path / "atc_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_CALLS", str(calls))
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


@pytest.fixture()
def no_atc(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


@pytest.fixture(params=GENERATIONS)
def ais_bench_generation(request, monkeypatch):
    """Which ais_bench generation the stand-in models (docs/contract.md, "Generations"): every test
    that uses an ais_bench stand-in runs once against each."""
    from focalinfer.backend import ais_bench

    monkeypatch.setenv("STANDIN_AIS_BENCH_GENERATION", request.param)
    ais_bench.forget_generations()
    yield request.param
    ais_bench.forget_generations()


@pytest.fixture()
def standin_cli(monkeypatch, tmp_path, ais_bench_generation):
    """ais_bench runnable as `python -m ais_bench` (PYTHONPATH) but not importable in this process."""
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PYTHONPATH", str(STANDINS))
    monkeypatch.setenv("STANDIN_CALLS", str(calls))
    return calls


@pytest.fixture()
def standin_api(monkeypatch, ais_bench_generation):
    """The ais_bench stand-in importable in this process; forgotten afterwards."""
    monkeypatch.syspath_prepend(str(STANDINS))
    yield
    for name in [m for m in sys.modules if m == "ais_bench" or m.startswith("ais_bench.")]:
        del sys.modules[name]


@pytest.fixture()
def cpu_kind(monkeypatch):
    """Stand in one of tests/cpu_kinds.py's CPUs at focalinfer.machine's readers of the CPU's model
    and flags: ``cpu_kind("amd-avx2")`` patches them and returns that CpuKind."""
    from focalinfer import machine

    def use(name: str):
        kind = CPU_KINDS[name]
        monkeypatch.setattr(machine, "cpu_flags", lambda: set(kind.flags))
        monkeypatch.setattr(machine, "cpu_model", lambda: kind.model)
        return kind

    return use


@pytest.fixture(autouse=True)
def _isolated_caches_and_backend_choice(request, monkeypatch, tmp_path_factory):
    from focalinfer.backend import ais_bench, auto

    ais_bench.forget_generations()  # which ais_bench is installed may differ from test to test
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    if request.node.get_closest_marker("real_backend_choice") is None:
        monkeypatch.setattr(auto, "installed", lambda: ["onnxruntime"])


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MB file system (a tmpfs: mounting needs root, as the sessions and CI run), to fill."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)
