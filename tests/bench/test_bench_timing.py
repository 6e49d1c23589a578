"""The timing harness: interleaved rounds, ratios, other processes' CPU share, re-measuring."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from focalinfer import machine
from focalinfer.backend import onnxrt
from focalinfer.bench import inference, timing
from focalinfer.bench.settings import BenchSettings
from focalinfer.metrics import parity_bound


def test_interleaved_timing_rotates_backends_and_reports_ratios(monkeypatch):
    calls = []
    clock = [0.0]  # a fake clock the runners advance: the figures do not depend on the machine's load
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def sleeper(name, seconds):
        def run(_batch):
            calls.append(name)
            clock[0] += seconds
        return run

    runners = {"fast": sleeper("fast", 0.004), "eager": sleeper("eager", 0.008)}
    timings = timing.time_interleaved(runners, np.zeros(2), rounds=3, budget_s=0.02, min_iters=2, warmup=1,
                                      switch_pause_s=0.0)
    assert calls[:2] == ["fast", "eager"]  # warm-up, one each
    # Rounds run fast,eager / eager,fast / fast,eager: runs of equal names then read F E F E
    # (without the rotation they would read F E F E F E).
    assert [name for name, _ in itertools.groupby(calls[2:])] == ["fast", "eager", "fast", "eager"]
    assert all(len(r) >= 2 for t in timings.values() for r in t["latencies_ms"])
    summary = timing.summarize_timings(timings, batch_size=2)
    assert summary["ratio_vs_eager"]["fast"] == 2.0
    fast = summary["results"]["fast"]
    assert [len(r) for r in timings["fast"]["latencies_ms"]] == [5, 5, 5]  # 5 × 4 ms reach the 20 ms budget
    assert fast["latency_ms"]["p50"] == pytest.approx(4.0) and fast["latency_ms"]["p99"] == pytest.approx(4.0)
    assert fast["img_per_s"] == pytest.approx(2 / (fast["latency_ms"]["p50"] / 1000), rel=1e-3)
    assert fast["img_per_s_mean"] == pytest.approx(2 / (fast["latency_ms"]["mean"] / 1000), rel=1e-3)


def test_harness_times_a_tiny_model_on_onnxruntime_and_eager(tiny_onnx):
    path, model = tiny_onnx
    session = onnxrt.make_session(path, threads=1)

    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    runners = {"ort": lambda x: session.run(None, {"image": x}), "eager": eager}
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    want = eager(x).numpy()
    assert np.abs(runners["ort"](x)[0] - want).max() <= parity_bound(want)  # other kernels: the parity bound
    summary = timing.summarize_timings(
        timing.time_interleaved(runners, x, rounds=2, budget_s=0.05, min_iters=3, switch_pause_s=0.01), batch_size=4)
    assert set(summary["results"]) == {"ort", "eager"}
    assert summary["results"]["ort"]["calls"] >= 6 and summary["results"]["ort"]["img_per_s"] > 0
    assert summary["ratio_vs_eager"]["ort"] > 0


def test_foreign_cpu_is_machine_busy_time_minus_our_own(monkeypatch):
    readings = iter([(100.0, 10.0), (103.0, 11.0)])  # (machine busy s, own CPU s) at enter, exit
    clock = iter([50.0, 52.0])
    current = [0.0, 0.0]

    def busy():
        value = next(readings)
        current[:] = value
        return value[0]

    monkeypatch.setattr(machine, "machine_busy_s", busy)
    monkeypatch.setattr(machine, "own_cpu_s", lambda: current[1])
    monkeypatch.setattr(machine.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    with machine.ForeignCpu() as load:
        pass
    # 3 s busy in 2 s on 2 CPUs, 1 s of it ours: others used 2 / 4 of the machine.
    assert load.share == 0.5


def test_foreign_cpu_sees_a_busy_child_process():
    import os
    import subprocess
    import sys

    with machine.ForeignCpu() as load:
        child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 0.8\nwhile time.time() < end: pass"])
        child.wait()
    # One CPU was busy with someone else's work for most of the block: a share of the machine that
    # depends on how many CPUs it has (half of one CPU's share at least, as on 2 CPUs before).
    assert load.share >= 0.5 / os.cpu_count()


def test_a_disturbed_batch_size_is_measured_again_and_the_calmest_attempt_kept(monkeypatch):
    shares = iter([0.5, 0.3, 0.05, 0.9])

    class FakeLoad:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.share = next(shares)

    monkeypatch.setattr(timing, "ForeignCpu", FakeLoad)
    monkeypatch.setattr(timing, "SWITCH_PAUSE_S", 0.0)
    waits = []
    monkeypatch.setattr(timing, "wait_for_quiet", lambda share, wait: waits.append((share, wait)))
    settings = BenchSettings(models=[], batch_sizes=[1], rounds=1, budget_s=0.0, min_iters=1,
                             remeasure=2, max_foreign_cpu=0.1, quiet_wait_s=7.0)
    lines = []
    summary = timing.measure_batch({"ort": lambda x: None, "eager": lambda x: None}, np.zeros((1, 3)),
                                   settings, "m", log=lines.append)
    assert summary["attempts"] == 3 and summary["foreign_cpu"] == 0.05
    assert waits == [(0.1, 7.0), (0.1, 7.0)] and "50% of the CPUs" in lines[0]
    settings.remeasure = 0
    assert timing.measure_batch({"ort": lambda x: None}, np.zeros((1, 3)), settings, "m")["foreign_cpu"] == 0.9


def test_best_figures_pick_each_backends_own_best_batch():
    batches = [
        {"batch_size": 1, "results": {"ort": {"img_per_s": 10.0}, "eager": {"img_per_s": 8.0}}},
        {"batch_size": 16, "results": {"ort": {"img_per_s": 30.0}, "eager": {"img_per_s": 5.0}}},
    ]
    best = inference.best_figures(batches, ["ort", "eager"])
    assert best["best"] == {"ort": {"batch_size": 16, "img_per_s": 30.0}, "eager": {"batch_size": 1, "img_per_s": 8.0}}
    assert best["best_ratio_vs_eager"] == {"ort": 3.75}
