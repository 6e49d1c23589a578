"""The timing harness: interleaved rounds, per-round ratios, and other processes' CPU share.

Machines here are shared and noisy, so every comparison is made inside one run, with the compared
things interleaved round by round, and reported as a ratio (median of the per-round ratios).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import numpy as np

from focalinfer.bench.settings import BenchSettings, Log, _stderr
from focalinfer.machine import ForeignCpu

def wait_for_quiet(max_share: float, max_wait_s: float, sample_s: float = 2.0) -> float | None:
    """Sleep in ``sample_s`` windows until other processes use at most ``max_share`` of the CPUs
    (or ``max_wait_s`` passes); returns the last window's share."""
    deadline = time.perf_counter() + max_wait_s
    while True:
        with ForeignCpu() as load:
            time.sleep(sample_s)
        if load.share is None or load.share <= max_share or time.perf_counter() >= deadline:
            return load.share


# Idle time before each backend's turn: PyTorch's OpenMP workers and onnxruntime's pool spin for a
# while after their last parallel region (OpenMP's default block time is 200 ms); without the pause
# the next backend's first calls share the two cores with the previous one's spinning threads.
SWITCH_PAUSE_S = 0.25


def time_interleaved(runners: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray | dict[str, np.ndarray],
                     *, rounds: int, budget_s: float, min_iters: int = 1, max_iters: int = 200, warmup: int = 1,
                     switch_pause_s: float | None = None) -> dict:
    """Time each runner on ``batch`` (or on its own ``batch[name]``), interleaved: every round runs
    each backend in turn (the order rotates each round), so a burst of machine noise lands on all
    of them alike.

    Returns {backend: {"latencies_ms": [[per call] per round], "warmup": warmup}}.
    """
    pause = SWITCH_PAUSE_S if switch_pause_s is None else switch_pause_s
    names = list(runners)
    inputs = batch if isinstance(batch, dict) else dict.fromkeys(names, batch)
    for name in names:
        for _ in range(warmup):
            runners[name](inputs[name])
    latencies = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(pause)
            latencies[name].append(_timed_calls(runners[name], inputs[name], budget_s, min_iters, max_iters))
    return {name: {"latencies_ms": latencies[name], "warmup": warmup} for name in names}


def _timed_calls(run: Callable[[np.ndarray], object], batch: np.ndarray, budget_s: float,
                 min_iters: int, max_iters: int) -> list[float]:
    times = []
    spent = 0.0
    while len(times) < max_iters and (len(times) < min_iters or spent < budget_s):
        start = time.perf_counter()
        run(batch)
        elapsed = time.perf_counter() - start
        times.append(elapsed * 1000.0)
        spent += elapsed
    return times


def summarize_timings(timings: dict, batch_size: int, reference: str = "eager", *, ours: str | None = None,
                      peers: Sequence[str] = ()) -> dict:
    """img/s, latency percentiles and per-round ratios against ``reference``; with ``ours`` and
    ``peers`` also ours ÷ the fastest peer of each round (median over rounds), and the fastest backend.

    img/s is batch size / median latency: on a shared machine one call hit by someone else's job
    would otherwise decide the figure; the mean-based rate is kept beside it.
    """
    results = {}
    per_round = {}
    for name, record in timings.items():
        rounds = record["latencies_ms"]
        flat = [t for r in rounds for t in r]
        per_round[name] = [batch_size / (statistics.median(r) / 1000.0) for r in rounds]
        results[name] = {
            "img_per_s": round(batch_size / (statistics.median(flat) / 1000.0), 3),
            "img_per_s_mean": round(batch_size * len(flat) / (sum(flat) / 1000.0), 3),
            "latency_ms": {
                "p50": round(float(np.percentile(flat, 50)), 3),
                "p90": round(float(np.percentile(flat, 90)), 3),
                "p99": round(float(np.percentile(flat, 99)), 3),
                "mean": round(float(np.mean(flat)), 3),
            },
            "calls": len(flat),
        }
    ratios = {}
    if reference in per_round:
        for name, rates in per_round.items():
            if name != reference:
                ratios[name] = round(statistics.median(a / b for a, b in zip(rates, per_round[reference])), 3)
    summary = {"batch_size": batch_size, "results": results, "ratio_vs_eager": ratios,
               "fastest": max(results, key=lambda n: results[n]["img_per_s"])}
    present = [p for p in peers if p in per_round]
    if ours in per_round and present:
        best_peer = max(present, key=lambda p: results[p]["img_per_s"])
        per_round_best = [max(per_round[p][i] for p in present) for i in range(len(per_round[ours]))]
        summary["ours"] = {
            "backend": ours, "img_per_s": results[ours]["img_per_s"], "best_peer": best_peer,
            "best_peer_img_per_s": results[best_peer]["img_per_s"],
            "vs_best_peer": round(statistics.median(a / b for a, b in zip(per_round[ours], per_round_best)), 3),
        }
    return summary


def measure_batch(runners: dict[str, Callable], batch: np.ndarray, settings: BenchSettings, name: str,
                  log: Log = _stderr, *, ours: str | None = None, peers: Sequence[str] = ()) -> dict:
    """Interleaved timing of one batch size; measured again while other processes disturbed it."""
    attempts = []
    for attempt in range(settings.remeasure + 1):
        if attempt:
            log(f"  {name} bs {len(batch)}: other processes used {attempts[-1]['foreign_cpu']:.0%} of the CPUs; "
                f"waiting for a quieter machine and measuring again ({attempt}/{settings.remeasure})")
            wait_for_quiet(settings.max_foreign_cpu, settings.quiet_wait_s)
        with ForeignCpu() as load:
            timings = time_interleaved(runners, batch, rounds=settings.rounds, budget_s=settings.budget_s,
                                       min_iters=settings.min_iters, max_iters=settings.max_iters)
        summary = summarize_timings(timings, len(batch), ours=ours, peers=peers)
        summary["foreign_cpu"] = load.share
        attempts.append(summary)
        if load.share is None or load.share <= settings.max_foreign_cpu:
            break
    best = min(attempts, key=lambda a: a["foreign_cpu"] or 0.0)
    best["attempts"] = len(attempts)
    return best
