"""The goal's cross-batch comparisons, measured side by side after the sweep.

The sweep times every backend at one batch size, then moves on; a model's batch sizes are minutes
apart. On a shared VM the machine's own speed drifts more in that time (the same 2048³ GEMM went
164 → 139 → 124 GFLOP/s in one session) than the margins issue 13's goal is judged by: focalinfer
at its best batch against each peer at *its* best batch, and every batch size 4–64 against the
best one. So once the sweep has found those batch sizes, the configurations the goal compares run
again in one interleaved measurement — focalinfer's path at each batch size it is judged at, each
peer at its best batch — and the goal is read from per-round ratios (median over rounds), as
every other comparison in the benchmark is. The GEMM limit takes its turn in the same rounds (the
2048³ MatMul on torch, onnxruntime and OpenVINO): measured once at the start of a run it read
102 GFLOP/s where the rounds after it ran Focal-fast-S at what would have been 1.00 of it.
"""

from __future__ import annotations

import statistics
from typing import Callable

import numpy as np

from focalinfer.bench.settings import BenchSettings, Log, _stderr
from focalinfer.bench.timing import time_interleaved
from focalinfer.machine import ForeignCpu

CLIFF_BATCHES = (4, 64)  # inclusive range of batch sizes that must stay near the best
OURS = "focalinfer"
GEMM_PREFIX = "gemm:"


def config_name(backend: str, batch_size: int) -> str:
    return f"{backend}@{batch_size}"


def side_by_side_configs(batches: list[dict], best: dict, peers: list[str]) -> list[tuple[str, int]]:
    """(backend, batch size) pairs: focalinfer at its best batch and at every batch size in
    CLIFF_BATCHES the sweep measured, each peer at its best batch."""
    measured = [b for b in batches if "ours" in b]
    if not measured:
        return []
    top = max(measured, key=lambda b: b["ours"]["img_per_s"])["batch_size"]
    low, high = CLIFF_BATCHES
    sizes = sorted({top} | {b["batch_size"] for b in measured if low <= b["batch_size"] <= high})
    return [(OURS, s) for s in sizes] + [(p, best[p]["batch_size"]) for p in peers if p in best]


def measure_side_by_side(configs: list[tuple[str, int]], runner_for: Callable[[str, int], Callable],
                         input_shape: tuple[int, ...], settings: BenchSettings, log: Log = _stderr,
                         name: str = "", gemm: tuple[dict, float] | None = None,
                         macs_per_image: float | None = None) -> dict:
    """Time ``configs`` interleaved (each at least one call per round) and summarise the goal's ratios.

    ``runner_for(backend, batch_size)`` builds each configuration's runner; ``input_shape`` is one
    image's (C, H, W). ``gemm`` = ({runtime: one MatMul call}, its FLOPs) puts the GEMM limit in
    the same rounds, for focalinfer's fraction of it (with ``macs_per_image``).
    """
    rng = np.random.default_rng(1)
    runners, batches = {}, {}
    for backend, size in configs:
        key = config_name(backend, size)
        runners[key] = runner_for(backend, size)
        batches[key] = rng.standard_normal((size, *input_shape), dtype=np.float32)
    gemm_calls, flops = gemm or ({}, 0.0)
    for runtime, call in gemm_calls.items():
        runners[GEMM_PREFIX + runtime] = lambda _x, call=call: call()
        batches[GEMM_PREFIX + runtime] = np.zeros(1, dtype=np.float32)
    log(f"  {name} side by side: {', '.join(runners)} ({settings.rounds} interleaved rounds)")
    with ForeignCpu() as load:
        timings = time_interleaved(runners, batches, rounds=settings.rounds, budget_s=settings.budget_s,
                                   min_iters=1, max_iters=settings.max_iters)
    per_round = {key: [statistics.median(r) / 1000.0 for r in t["latencies_ms"]] for key, t in timings.items()}
    rates = {config_name(b, s): [s / seconds for seconds in per_round[config_name(b, s)]] for b, s in configs}
    gemm_gflops = {runtime: [flops / seconds / 1e9 for seconds in per_round[GEMM_PREFIX + runtime]]
                   for runtime in gemm_calls}
    return {"rounds": settings.rounds, "foreign_cpu": load.share,
            **summarize_side_by_side(configs, rates, gemm_gflops, macs_per_image)}


def summarize_side_by_side(configs: list[tuple[str, int]], rates: dict[str, list[float]],
                           gemm_gflops: dict[str, list[float]] | None = None,
                           macs_per_image: float | None = None) -> dict:
    """From per-round img/s of each configuration: focalinfer's best batch, its ratio to the fastest
    peer of each round, each batch size's ratio to the best batch, and (with ``gemm_gflops``, each
    runtime's per-round MatMul GFLOP/s) its fraction of each round's GEMM limit; medians over rounds."""
    figures = {config_name(b, s): {"backend": b, "batch_size": s, "img_per_s": round(statistics.median(rates[config_name(b, s)]), 3),
                                   "per_round": [round(r, 3) for r in rates[config_name(b, s)]]}
               for b, s in configs}
    ours = {s: config_name(b, s) for b, s in configs if b == OURS}
    peers = [config_name(b, s) for b, s in configs if b != OURS]
    best = max(ours.values(), key=lambda k: figures[k]["img_per_s"])
    summary = {"configs": figures, "ours_best": best}
    if peers:
        best_peer = [max(rates[p][i] for p in peers) for i in range(len(rates[best]))]
        summary["best_peer"] = max(peers, key=lambda k: figures[k]["img_per_s"])
        summary["vs_best_peer"] = _median_ratio(rates[best], best_peer)
    low, high = CLIFF_BATCHES
    summary["vs_best_batch"] = {str(s): _median_ratio(rates[key], rates[best])
                                for s, key in ours.items() if low <= s <= high}
    if gemm_gflops and macs_per_image:
        limit = [max(r[i] for r in gemm_gflops.values()) for i in range(len(rates[best]))]
        ours_gflops = [r * 2 * macs_per_image / 1e9 for r in rates[best]]
        summary["gemm_gflops"] = {k: round(statistics.median(v), 1) for k, v in gemm_gflops.items()}
        summary["limit_gflops_per_round"] = [round(x, 1) for x in limit]
        summary["fraction_of_limit"] = _median_ratio(ours_gflops, limit)
    return summary


def _median_ratio(a: list[float], b: list[float]) -> float:
    return round(statistics.median(x / y for x, y in zip(a, b)), 3)

