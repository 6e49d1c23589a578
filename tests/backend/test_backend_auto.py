"""``--backend auto`` for an .onnx: the fastest CPU backend, measured once per key and cached."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from focalinfer.backend import auto, resolve_backend
from focalinfer.metrics import parity_bound

pytestmark = pytest.mark.real_backend_choice  # tests/conftest.py pins the choice for other tests


class FakeTiming:
    """A measurement that returns given img/s and counts how often it ran."""

    def __init__(self, rates, parity=None):
        self.rates, self.parity, self.calls = rates, parity or {}, []

    def __call__(self, model_file, backends, batch_size, threads):
        self.calls.append((model_file.name, tuple(backends), batch_size, threads))
        return {b: {"img_per_s": self.rates[b], "micro_batch": 4 if b == "openvino" else 1,
                    "parity_ok": self.parity.get(b, True)} for b in backends}


class QuietMachine:
    """Other processes' CPU share as a quiet machine would show it (this one is shared with other jobs)."""

    share = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    from focalinfer import machine

    monkeypatch.setattr(machine, "ForeignCpu", QuietMachine)


@pytest.fixture
def graph(tmp_path, tiny_onnx):
    path = tmp_path / "model.onnx"
    path.write_bytes(tiny_onnx[0].read_bytes())
    return path


@pytest.fixture
def both_installed(monkeypatch):
    monkeypatch.setattr(auto, "installed", lambda: ["onnxruntime", "openvino"])


def test_the_faster_backend_is_picked_said_and_cached(graph, tmp_path, both_installed):
    cache = tmp_path / "choice.json"
    timing = FakeTiming({"onnxruntime": 10.0, "openvino": 14.0})
    lines = []
    assert auto.choose(graph, 8, 2, cache=cache, measure=timing, log=lines.append) == auto.Choice("openvino", 4)
    assert timing.calls == [("model.onnx", ("onnxruntime", "openvino"), 8, 2)]
    assert ("openvino, 4 image(s) per call (onnxruntime 10.0 img/s at 1/call, openvino 14.0 img/s at 4/call; "
            "cached in") in lines[-1]
    lines.clear()
    assert auto.choose(graph, 8, 2, cache=cache, measure=timing, log=lines.append) == auto.Choice("openvino", 4)
    assert len(timing.calls) == 1  # the second time it comes from the cache, and says so
    assert len(lines) == 1 and "measured on this CPU" in lines[0] and "--backend NAME to choose" in lines[0]
    entry = json.loads(cache.read_text())[0]
    assert entry["key"]["graph_sha256"] and entry["key"]["cpu"] and entry["key"]["runtimes"]["openvino"]


@pytest.mark.parametrize("change", ["graph", "cpu", "runtime", "batch", "threads"])
def test_any_change_of_the_key_measures_again(graph, tmp_path, both_installed, monkeypatch, change):
    from focalinfer import machine

    cache = tmp_path / "choice.json"
    timing = FakeTiming({"onnxruntime": 10.0, "openvino": 9.0})
    assert auto.choose(graph, 4, 2, cache=cache, measure=timing, log=lambda _: None).backend == "onnxruntime"
    batch, threads = 4, 2
    if change == "graph":
        graph.write_bytes(graph.read_bytes() + b"\0")  # a different file, whatever its mtime
    elif change == "cpu":
        monkeypatch.setattr(machine, "cpu_model", lambda: "Another CPU 9000")
    elif change == "runtime":
        real = auto.runtime_version
        monkeypatch.setattr(auto, "runtime_version", lambda b: "99.0" if b == "openvino" else real(b))
    elif change == "batch":
        batch = 16
    else:
        threads = 1
    timing.rates = {"onnxruntime": 10.0, "openvino": 12.0}
    assert auto.choose(graph, batch, threads, cache=cache, measure=timing, log=lambda _: None).backend == "openvino"
    assert len(timing.calls) == 2
    assert len(json.loads(cache.read_text())) == 2  # the old entry is kept for its own key


def test_each_batch_size_times_its_own_whole_batch(graph, tmp_path, both_installed):
    cache = tmp_path / "choice.json"
    timing = FakeTiming({"onnxruntime": 10.0, "openvino": 14.0})  # openvino's best: 4 images per call
    assert auto.choose(graph, 16, cache=cache, measure=timing, log=lambda _: None) == auto.Choice("openvino", 4)
    assert auto.choose(graph, 16, cache=cache, measure=timing, log=lambda _: None) == auto.Choice("openvino", 4)
    assert len(timing.calls) == 1  # the second batch 16 is answered from the cache
    assert auto.choose(graph, 64, cache=cache, measure=timing, log=lambda _: None) == auto.Choice("openvino", 4)
    assert len(timing.calls) == 2  # batch 64 also times 64 images per call: a measurement of its own
    assert auto.choose(graph, 4, cache=cache, measure=timing, log=lambda _: None) == auto.Choice("openvino")
    assert len(timing.calls) == 3  # batch 4 times 1 and 4; 4 per call is the whole batch: no split


def test_a_backend_outside_the_parity_bound_is_never_picked(graph, tmp_path, both_installed):
    timing = FakeTiming({"onnxruntime": 10.0, "openvino": 30.0}, parity={"openvino": False})
    lines = []
    assert auto.choose(graph, 1, cache=tmp_path / "c.json", measure=timing, log=lines.append).backend == "onnxruntime"
    assert "outside the parity bound: not used" in lines[-1]


def test_a_tie_prefers_onnxruntime():
    assert auto.decide({"openvino": {"img_per_s": 5.0}, "onnxruntime": {"img_per_s": 5.0}})["backend"] == "onnxruntime"


@pytest.mark.parametrize("batch, sizes", [(1, [1]), (3, [1, 3]), (8, [1, 4, 8]), (16, [1, 4, 16]), (64, [1, 4, 16, 64])])
def test_micro_batches_timed_for_a_batch_size(batch, sizes):
    assert auto.micro_batches(batch) == sizes


def test_a_micro_batched_runner_gives_the_whole_batchs_outputs(graph):
    from focalinfer.backend import MicroBatchRunner, open_runner

    x = np.random.default_rng(0).standard_normal((7, 3, 32, 32), dtype=np.float32)
    with open_runner(graph, "onnxruntime", threads=1) as whole:
        want = whole.infer(x)[0]
    with open_runner(graph, "onnxruntime", threads=1, micro_batch=3) as split:
        assert isinstance(split, MicroBatchRunner) and split.backend == "onnxruntime"
        got = split.infer(x)[0]
        assert len(split.compute_times_ms) == 1 and len(split.runner.compute_times_ms) == 3  # 3 + 3 + 1
    # 3 images per call may run other kernels than 7 (which ones depends on the CPU): the parity bound
    assert np.abs(got - want).max() <= parity_bound(want)


def test_one_installed_backend_is_used_without_measuring(graph, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "installed", lambda: ["onnxruntime"])

    def never(*args):
        raise AssertionError("measured with one backend")

    lines = []
    assert auto.choose(graph, 1, cache=tmp_path / "c.json", measure=never, log=lines.append).backend == "onnxruntime"
    assert lines == ["--backend auto: onnxruntime (the only CPU backend installed)"]
    assert not (tmp_path / "c.json").exists()


def test_an_explicit_backend_never_measures(graph, both_installed, monkeypatch):
    monkeypatch.setattr(auto, "choose", lambda *a, **k: pytest.fail("auto.choose called"))
    assert resolve_backend(graph, "onnxruntime") == "onnxruntime"
    assert resolve_backend(graph, "openvino") == "openvino"


def test_an_unwritable_cache_still_answers(graph, tmp_path, both_installed):
    blocker = tmp_path / "file"
    blocker.write_text("")
    lines = []
    timing = FakeTiming({"onnxruntime": 1.0, "openvino": 2.0})
    assert auto.choose(graph, 1, cache=blocker / "c.json", measure=timing, log=lines.append).backend == "openvino"
    assert any("cannot cache the backend choice" in ln for ln in lines)


def test_the_real_measurement_times_both_and_checks_their_parity(graph):
    figures = auto.measure_backends(graph, ["onnxruntime", "openvino"], 8, 1)
    for backend in ("onnxruntime", "openvino"):
        f = figures[backend]
        assert set(f["by_micro_batch"]) == {"1", "4", "8"} and f["calls"] >= 3 * auto.ROUNDS
        assert f["img_per_s"] == max(f["by_micro_batch"].values()) > 0
        assert f["by_micro_batch"][str(f["micro_batch"])] == f["img_per_s"]
        assert f["parity_ok"] is True
    assert figures["onnxruntime"]["max_abs_diff_vs_onnxruntime"] == 0.0


def test_infer_with_auto_says_on_stderr_which_backend_it_measured_and_used(graph, tmp_path):
    from focalinfer.cli import cli

    data = tmp_path / "in"
    data.mkdir()
    np.zeros((1, 3, 32, 32), np.float32).tofile(data / "a.bin")
    args = ["infer", "--model-file", str(graph), "--input", str(data), "--batch-size", "1", "--output", str(tmp_path),
            "--quiet", "--threads", "1"]
    first = CliRunner().invoke(cli, args + ["--output-dirname", "one"])
    assert first.exit_code == 0, first.output
    chosen = [ln for ln in first.stderr.splitlines() if "--backend auto:" in ln]
    assert "measuring onnxruntime and openvino" in chosen[0] and "cached in" in chosen[-1]
    backend = chosen[-1].split("--backend auto: ")[1].split()[0].rstrip(",")
    assert backend in ("onnxruntime", "openvino") and f"({backend}, batch 1" in first.stdout
    again = CliRunner().invoke(cli, args + ["--output-dirname", "two"])
    lines = [ln for ln in again.stderr.splitlines() if "--backend auto:" in ln]
    assert len(lines) == 1 and "measured on this CPU" in lines[0] and f"({backend}, batch 1" in again.stdout


class Clock:
    """A fake clock: the test moves it, nothing sleeps."""

    def __init__(self):
        self.t = 1_800_000_000.0

    def __call__(self):
        return self.t


def test_a_disturbed_measurement_is_cached_marked_and_measured_again_after_a_day(graph, tmp_path, both_installed,
                                                                                monkeypatch):
    from focalinfer import machine

    class Busy(QuietMachine):
        share = 0.62

    monkeypatch.setattr(machine, "ForeignCpu", Busy)
    cache, clock, lines = tmp_path / "c.json", Clock(), []
    timing = FakeTiming({"onnxruntime": 3.0, "openvino": 2.0})

    def choose():
        return auto.choose(graph, 1, cache=cache, measure=timing, log=lines.append, now=clock).backend

    assert choose() == "onnxruntime" and len(timing.calls) == 1
    assert "measured while other processes used 62% of the CPUs, so it is measured again after 24 h" in lines[-1]
    entry = json.loads(cache.read_text())[0]
    assert entry["disturbed"] is True and entry["foreign_cpu"] == 0.62 and entry["measured_at"] == clock.t
    clock.t += 23 * 3600  # the same day: the disturbed figures are used, and said to be
    assert choose() == "onnxruntime" and len(timing.calls) == 1
    assert "measured on this CPU" in lines[-1] and "used 62% of the CPUs" in lines[-1]
    clock.t += 3600  # a day old: measured once more, still busy — cached again, for another day
    timing.rates = {"onnxruntime": 3.0, "openvino": 4.0}
    assert choose() == "openvino" and len(timing.calls) == 2
    assert "again (the last measurement was disturbed and is a day old)" in lines[-2]
    clock.t += 12 * 3600
    assert choose() == "openvino" and len(timing.calls) == 2
    clock.t += 12 * 3600  # a quiet machine the next day: cached for good
    monkeypatch.setattr(machine, "ForeignCpu", QuietMachine)
    assert choose() == "openvino" and len(timing.calls) == 3
    assert json.loads(cache.read_text())[0]["disturbed"] is False
    clock.t += 1000 * 24 * 3600
    assert choose() == "openvino" and len(timing.calls) == 3
    assert len(json.loads(cache.read_text())) == 1  # one entry per key, replaced each time
