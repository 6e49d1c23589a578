"""``--backend auto`` for an ONNX: the fastest CPU backend installed, measured once on this CPU.

Which runtime wins depends on the CPU (onnxruntime's MLAS against OpenVINO's oneDNN kernels) and
on the graph, so the choice is measured, not assumed: interleaved calls (a second or two for a tiny
model; for Focal-fast-S at batch 16 on a 2-core EPYC an eval of 48 images took 49 s with it, 14–16 s
without), then
cached under a key of everything that decides it — CPU model, thread count, the micro-batch
sizes timed (below), each runtime's version and the graph's sha256 — as the optimised-graph cache is.

The choice includes how many images go into one call (the micro-batch): on CPUs whose caches the
activations of a large batch overflow, a batch of 16 runs slower per image than 16 calls of one
(see docs/benchmarks.md). Each backend is timed at micro-batches of 1, 4 and 16 images below the
batch size asked for and at the whole batch, and a batch is then run as calls of the fastest; a
static-batch graph always runs its own batch. A changed graph, runtime or CPU measures again. A backend whose logits leave the export's
parity bound against onnxruntime (the runtime export parity is checked on) is never picked, and a
measurement disturbed by other processes (more than MAX_FOREIGN_CPU of the CPUs) is cached marked
``disturbed`` and measured again once it is REMEASURE_DISTURBED_S old (a busy machine pays it once
a day, not every run; deleting the cache file measures now). An explicit ``--backend`` skips all of this.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from focalinfer.backend.openers import open_runner
from focalinfer.log import info
from focalinfer.metrics.logits import parity_bound
from focalinfer.util import sha256_file, user_cache_dir, write_json_atomic

# The CPU backends an ONNX can run on, in the order a tie (or a failed measurement) prefers.
CPU_BACKENDS = ("onnxruntime", "openvino")
CACHE_NAME = "cpu-backend.json"
# Interleaved rounds after one warm-up call; each (backend, micro-batch) makes >= 1 call per turn,
# then more until ROUND_BUDGET_S or MAX_CALLS. A tiny model measures in a second or two; the
# cost grows with the largest micro-batch's call (Focal-fast-S at batch 64: ~14 s a call).
# Two rounds picked a micro-batch whose lead was within noise (VAN-B2 batch 4: onnxruntime, 1 per
# call, against OpenVINO's whole batch, 1.17x faster in the benchmark): three, rotating.
ROUNDS = 3
ROUND_BUDGET_S = 0.5
MAX_CALLS = 8
# Idle time before each turn. onnxruntime's and OpenVINO's worker threads spin for a while after a
# call; without the pause the next turn's first call shares the cores with them, and a micro-batch
# timed in one or two calls per turn (the larger ones) took that penalty in its median: auto picked
# 1 image per call for Evo-LeViT at batch 4, which then ran at 0.78 of 4 per call.
SWITCH_PAUSE_S = 0.25
MAX_FOREIGN_CPU = 0.25
# A measurement disturbed by other processes is cached marked so and used for a day, then measured
# again: a busy machine pays the measurement once a day, not on every run.
REMEASURE_DISTURBED_S = 24 * 3600

MICRO_BATCHES = (1, 4, 16)

Log = Callable[[str], None]
Measure = Callable[[Path, list[str], int, "int | None"], dict]


@dataclass(frozen=True)
class Choice:
    """A CPU backend and the images per call (None: the whole batch in one call)."""

    backend: str
    micro_batch: int | None = None

    def describe(self) -> str:
        return self.backend + (f", {self.micro_batch} image(s) per call" if self.micro_batch else "")


def micro_batches(batch_size: int) -> list[int]:
    """The micro-batch sizes timed for ``batch_size``: 1, 4, 16 below it, and the whole batch (on
    OpenVINO the whole batch of 32 beat every split of it for Twins)."""
    return [m for m in MICRO_BATCHES if m < batch_size] + [batch_size]


def runtime_version(backend: str) -> str | None:
    if backend == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    if backend == "openvino":
        from focalinfer.backend import openvino

        return openvino.version()
    raise ValueError(f"not a CPU backend: {backend}")


def installed() -> list[str]:
    from focalinfer.backend import openvino

    return [b for b in CPU_BACKENDS if b != "openvino" or openvino.available()]


def choice_key(model_file: str | Path, batch_size: int, threads: int | None, backends: list[str],
               graph_sha256: str | None = None) -> dict:
    from focalinfer.machine import cpu_count, cpu_model

    return {"cpu": cpu_model(), "threads": threads or cpu_count(), "micro_batches": micro_batches(batch_size),
            "runtimes": {b: runtime_version(b) for b in backends},
            "graph_sha256": graph_sha256 or sha256_file(model_file)}


def cache_path() -> Path:
    return user_cache_dir() / CACHE_NAME


def choose(model_file: str | Path, batch_size: int, threads: int | None = None, *, cache: str | Path | None = None,
           measure: Measure | None = None, log: Log = info, graph_sha256: str | None = None,
           now: Callable[[], float] = time.time) -> Choice:
    """The CPU backend (and micro-batch) to run ``model_file`` with at ``batch_size``; says which on one line.
    ``graph_sha256``: the graph's hash when the caller has it (the model identity's); ``now``: the clock
    a disturbed measurement's age is read on."""
    model_file = Path(model_file)
    backends = installed()
    if len(backends) == 1:
        log(f"--backend auto: {backends[0]} (the only CPU backend installed)")
        return Choice(backends[0])
    cache = Path(cache) if cache else cache_path()
    key = choice_key(model_file, batch_size, threads, backends, graph_sha256)
    entries = _read(cache)
    entry = next((e for e in entries if e.get("key") == key), None)
    if entry is not None and not _stale(entry, now()):
        choice = _choice(entry, batch_size)
        log(f"--backend auto: {choice.describe()} for {model_file.name} at batch {batch_size} "
            f"({_rates_text(entry)}, measured on this CPU on {entry['date']}{_disturbed_text(entry, cache)}; "
            "--backend NAME to choose)")
        return choice
    again = " again (the last measurement was disturbed and is a day old)" if entry else ""
    log(f"--backend auto: measuring {' and '.join(backends)} on {model_file.name} for batch "
        f"{batch_size}{again} (once per graph, micro-batch sizes and CPU) ...")
    from focalinfer.machine import ForeignCpu

    with ForeignCpu() as load:
        figures = (measure or measure_backends)(model_file, backends, batch_size, threads)
    entry = {"key": key, "date": time.strftime("%Y-%m-%d", time.localtime(now())), "measured_at": now(),
             **decide(figures), "foreign_cpu": load.share,
             "disturbed": load.share is not None and load.share > MAX_FOREIGN_CPU}
    choice = _choice(entry, batch_size)
    entries = [e for e in entries if e.get("key") != key] + [entry]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache, entries[-200:])
    except OSError as e:  # a read-only home still gets its answer, only not remembered
        log(f"note: cannot cache the backend choice in {cache} ({e.strerror or e})")
    log(f"--backend auto: {choice.describe()} ({_rates_text(entry)}; cached in {cache}{_disturbed_text(entry, cache)})")
    return choice


def _stale(entry: dict, now: float) -> bool:
    """A disturbed measurement is used for REMEASURE_DISTURBED_S, then measured again (once)."""
    if not entry.get("disturbed"):
        return False
    measured = entry.get("measured_at")
    return not isinstance(measured, (int, float)) or now - measured >= REMEASURE_DISTURBED_S


def _disturbed_text(entry: dict, cache: Path) -> str:
    if not entry.get("disturbed"):
        return ""
    return (f"; measured while other processes used {entry['foreign_cpu']:.0%} of the CPUs, so it is measured "
            f"again after {REMEASURE_DISTURBED_S // 3600} h — delete {cache} to measure now")


def _choice(entry: dict, batch_size: int) -> Choice:
    """A micro-batch of the whole batch or more is no split."""
    micro = entry.get("micro_batch")
    return Choice(entry["backend"], micro if micro and micro < batch_size else None)


def decide(figures: dict) -> dict:
    """The fastest backend with parity among ``figures`` ({backend: {img_per_s, micro_batch,
    parity_ok, ...}}, each backend at its own fastest micro-batch); a tie goes to onnxruntime."""
    eligible = {b: f for b, f in figures.items() if f.get("img_per_s") and f.get("parity_ok", True)}
    if not eligible:
        raise RuntimeError(f"no CPU backend ran the model: {figures}")
    best = max(eligible, key=lambda b: (eligible[b]["img_per_s"], -CPU_BACKENDS.index(b)))
    return {"backend": best, "micro_batch": eligible[best].get("micro_batch"), "figures": figures}


def _rates_text(entry: dict) -> str:
    parts = []
    for backend, f in entry["figures"].items():
        text = f"{backend} {f['img_per_s']:.1f} img/s" if f.get("img_per_s") else f"{backend} failed"
        if f.get("micro_batch"):
            text += f" at {f['micro_batch']}/call"
        if f.get("parity_ok") is False:
            text += " (outside the parity bound: not used)"
        parts.append(text)
    return ", ".join(parts)


def _read(cache: Path) -> list[dict]:
    try:
        entries = json.loads(cache.read_text())
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def measure_backends(model_file: Path, backends: list[str], batch_size: int, threads: int | None) -> dict:
    """img/s of each backend at each micro-batch (interleaved rounds after a warm-up), the fastest
    micro-batch, and whether its logits stay within the parity bound of onnxruntime's."""
    runners = {b: open_runner(model_file, b, threads=threads) for b in backends}
    try:
        spec = runners[backends[0]].input_spec()
        sizes = [spec.static_batch] if spec.static_batch else micro_batches(batch_size)
        x = np.random.default_rng(0).standard_normal((max(sizes),) + tuple(spec.shape[1:])).astype(spec.dtype)
        configs = [(b, m) for b in backends for m in sizes]
        outputs = {(b, m): runners[b].infer(x[:m])[0] for b, m in configs}  # warm-up (OpenVINO compiles here)
        latencies: dict[tuple, list[float]] = {c: [] for c in configs}
        for round_index in range(ROUNDS):
            shift = round_index % len(configs)
            for backend, m in configs[shift:] + configs[:shift]:
                time.sleep(SWITCH_PAUSE_S)
                spent = 0.0
                calls = 0
                while calls == 0 or (spent < ROUND_BUDGET_S and calls < MAX_CALLS):
                    start = time.perf_counter()
                    runners[backend].infer(x[:m])
                    elapsed = time.perf_counter() - start
                    latencies[(backend, m)].append(elapsed)
                    spent += elapsed
                    calls += 1
    finally:
        for runner in runners.values():
            runner.close()
    figures = {}
    for backend in backends:
        rates = {m: m / statistics.median(latencies[(backend, m)]) for m in sizes}
        best = max(rates, key=rates.get)
        diff = max(float(np.max(np.abs(outputs[(backend, m)].astype(np.float64) - outputs[("onnxruntime", m)])))
                   for m in sizes)
        figures[backend] = {
            "img_per_s": round(rates[best], 2), "micro_batch": None if spec.static_batch else best,
            "by_micro_batch": {str(m): round(r, 2) for m, r in rates.items()},
            "calls": sum(len(latencies[(backend, m)]) for m in sizes),
            "max_abs_diff_vs_onnxruntime": diff, "parity_ok": diff <= parity_bound(outputs[("onnxruntime", max(sizes))]),
        }
    return figures
