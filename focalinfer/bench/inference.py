"""Inference measurement of one prepared model: its backends per batch size, best figures, profile."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from focalinfer.bench.prepare import PreparedModel
from focalinfer.bench.settings import (BACKENDS, OPENVINO_BACKENDS, OURS_CANDIDATES, PEERS, BenchSettings, Log,
                                       _stderr)
from focalinfer.bench.targets import ours_label
from focalinfer.bench.timing import measure_batch

def _ort_runner(session):
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    return lambda x: session.run(output_names, {input_name: x})


def _eager_runner(name: str, checkpoint: str | Path):
    from focalinfer.backend.torch import EagerRunner

    return EagerRunner(name, checkpoint).infer


class ModelRunners:
    """The backends of one model, per batch size. Every runner lives only while its batch size is
    measured: an onnxruntime session keeps the arena memory of every input shape it has run, and
    sessions kept across batch sizes 1–64 ran a 24 GiB machine out of memory on Focal-fast-S at
    batch 64 (one fresh session there holds 2.25 GiB, an OpenVINO model 1.8 GiB)."""

    def __init__(self, prepared: PreparedModel, threads: int | None, backends: Sequence[str] = tuple(BACKENDS)):
        self.prepared = prepared
        self.threads = threads
        self.backends = backends
        self.sessions: dict[str, object] = {}
        self.openvino: dict[tuple[str, str], object] = {}
        self.eager = _eager_runner(prepared.name, prepared.checkpoint) if "eager" in backends else None

    def paths(self, batch_size: int) -> dict[str, Path]:
        graphs = self.prepared.graphs
        rewritten = graphs["rewritten"].path_for(batch_size)
        paths = {"ort": rewritten, "ov": rewritten, "ov_tput": rewritten}
        if "naive" in graphs:
            paths["ort_naive"] = paths["ov_naive"] = graphs["naive"].path_for(batch_size)
        cpu = graphs["rewritten"].cpu_graph_for(batch_size)
        # The fused graph is timed only when the optimiser changed something and parity held.
        if cpu.get("path") and cpu.get("fused"):
            paths["ort_cpu"] = Path(cpu["path"])
        return {k: v for k, v in paths.items() if v is not None and k in self.backends}

    def for_batch(self, batch_size: int) -> dict[str, Callable]:
        """Every selected backend's runner at ``batch_size``; the previous batch size's are dropped."""
        self.reset()
        runners = {backend: self.runner(backend, batch_size) for backend in self.paths(batch_size)}
        if self.eager is not None:
            runners["eager"] = self.eager
        return runners

    def reset(self) -> None:
        self.sessions.clear()
        self.openvino.clear()
        release_memory()

    def runner(self, backend: str, batch_size: int) -> Callable:
        """One backend's runner at ``batch_size``, sharing sessions and compiled models by graph."""
        if backend == "eager":
            return self.eager
        path = self.paths(batch_size)[backend]
        if backend in OPENVINO_BACKENDS:
            return self.openvino_runner(path, "THROUGHPUT" if backend == "ov_tput" else "LATENCY").infer
        return _ort_runner(self.session(path))

    def session(self, path: Path):
        from focalinfer.backend.onnxrt import make_session

        if str(path) not in self.sessions:
            self.sessions[str(path)] = make_session(path, self.threads)
        return self.sessions[str(path)]

    def openvino_runner(self, path: Path, hint: str = "LATENCY"):
        from focalinfer.backend.openvino import OpenVinoRunner

        if (str(path), hint) not in self.openvino:
            self.openvino[(str(path), hint)] = OpenVinoRunner(path, self.threads, hint=hint)
        return self.openvino[(str(path), hint)]

    def ours(self, choice, batch_size: int) -> Callable:
        """focalinfer's own path at ``batch_size``: the rewritten graph on the backend auto chose,
        in calls of ``choice.micro_batch`` images when it split the batch."""
        from focalinfer.backend.base import MicroBatchRunner
        from focalinfer.backend.onnxrt import OnnxRuntimeRunner

        plain = OURS_CANDIDATES[choice.backend]
        if not splits(choice, batch_size, self.prepared):
            return self.runner(plain, batch_size)
        path = self.prepared.graphs["rewritten"].path_for(batch_size)
        if choice.backend == "openvino":
            inner = self.openvino_runner(path)
        else:
            inner = OnnxRuntimeRunner(path, session=self.session(path), threads=self.threads)
        return MicroBatchRunner(inner, choice.micro_batch).infer


def splits(choice, batch_size: int, prepared: PreparedModel) -> bool:
    """True when auto's choice runs the batch as smaller calls (only a dynamic-batch graph can)."""
    return bool(choice.micro_batch and choice.micro_batch < batch_size and prepared.graphs["rewritten"].dynamic)


def ours_choice(prepared: PreparedModel, batch_size: int, threads: int | None, log: Log = _stderr):
    """What ``--backend auto`` runs the rewritten graph with at this batch size on this machine
    (measured once and cached, exactly as ``infer`` does)."""
    from focalinfer.backend import auto

    path = prepared.graphs["rewritten"].path_for(batch_size)
    return auto.choose(path, batch_size, threads, log=lambda line: log("  " + line))


def bench_model(prepared: PreparedModel, settings: BenchSettings, limit_gflops: float | None,
                log: Log = _stderr) -> dict:
    threads = settings.threads or None
    selected = settings.installed_backends()
    runners = ModelRunners(prepared, threads, selected)
    macs = _macs_per_backend(prepared)
    rng = np.random.default_rng(0)
    batches = []
    backends: list[str] = []
    for size in settings.batch_sizes:
        choice = ours_choice(prepared, size, threads, log)
        plain = OURS_CANDIDATES[choice.backend]
        if plain not in runners.backends:  # focalinfer's own path is always measured
            runners.backends = tuple(runners.backends) + (plain,)
        x = rng.standard_normal((size, 3, prepared.input_size, prepared.input_size), dtype=np.float32)
        batch_runners = runners.for_batch(size)
        ours = plain
        if splits(choice, size, prepared):
            ours = "focalinfer"
            batch_runners = {"focalinfer": runners.ours(choice, size), **batch_runners}
        backends += [b for b in batch_runners if b not in backends]
        summary = measure_batch(batch_runners, x, settings, prepared.name, log, ours=ours, peers=PEERS)
        summary["rss_gib"] = resident_gib()  # with every backend of this batch size loaded
        del batch_runners
        for backend, result in summary["results"].items():
            if limit_gflops:
                flops = result["img_per_s"] * macs[backend] * 2
                result["fraction_of_limit"] = round(flops / (limit_gflops * 1e9), 4)
        if "ours" in summary:
            summary["ours"].update(fraction_of_limit=summary["results"][ours].get("fraction_of_limit"),
                                   runtime=choice.backend, micro_batch=choice.micro_batch)
        batches.append(summary)
        log("  " + _progress_line(prepared.name, summary))
        release_memory()
    order = [b for b in BACKENDS if b in backends]
    peers = [p for p in PEERS if p in backends]
    side = None
    if settings.side_by_side:
        side = side_by_side(prepared, runners, batches, best_figures(batches, order)["best"], peers, settings, log)
    del runners
    release_memory()
    record = {
        "input_size": prepared.input_size,
        "backends": {k: BACKENDS[k] for k in order},
        "peers": peers,
        "macs_per_image": {k: v["per_image"] for k, v in prepared.macs.items()},
        "macs_by_op": prepared.macs["rewritten"]["by_op"],
        "graphs": graph_figures(prepared),
        "batches": batches,
        **best_figures(batches, order),
    }
    if side:
        record["side_by_side"] = side
    if settings.profile:
        record["profiles"] = profile_model(prepared, settings, threads)
    return record


def side_by_side(prepared: PreparedModel, runners: ModelRunners, batches: list[dict], best: dict, peers: list[str],
                 settings: BenchSettings, log: Log = _stderr) -> dict | None:
    """The goal's cross-batch comparisons again, interleaved in one measurement (bench.side_by_side)."""
    from focalinfer.bench.side_by_side import measure_side_by_side, side_by_side_configs

    configs = side_by_side_configs(batches, best, peers)
    if not configs:
        return None
    runners.reset()
    threads = runners.threads

    def runner_for(backend: str, size: int) -> Callable:
        if backend == "focalinfer":
            return runners.ours(ours_choice(prepared, size, threads, log), size)
        return runners.runner(backend, size)

    from focalinfer.bench.machine import gemm_runners

    shape = (3, prepared.input_size, prepared.input_size)
    with gemm_runners(settings.gemm_n, threads) as (gemm, flops):
        gemm.pop("numpy")  # shown for reference only; not part of the limit
        figures = measure_side_by_side(configs, runner_for, shape, settings, log, prepared.name, gemm=(gemm, flops),
                                       macs_per_image=prepared.macs["rewritten"]["per_image"])
    log("  " + side_by_side_line(prepared.name, figures))
    runners.reset()
    return figures


def side_by_side_line(name: str, figures: dict) -> str:
    best = figures["configs"][figures["ours_best"]]
    parts = [f"focalinfer best at bs {best['batch_size']} ({best['img_per_s']:.2f} img/s)"]
    if "vs_best_peer" in figures:
        parts.append(f"{figures['vs_best_peer']:.2f}x the best peer ({figures['best_peer']})")
    if figures["vs_best_batch"]:
        size, ratio = min(figures["vs_best_batch"].items(), key=lambda kv: kv[1])
        parts.append(f"slowest batch 4-64: bs {size} at {ratio:.2f} of the best")
    if "fraction_of_limit" in figures:
        parts.append(f"{figures['fraction_of_limit']:.2f} of the GEMM limit in the same rounds "
                     f"({max(figures['gemm_gflops'].values()):.0f} GFLOP/s)")
    return f"{name} side by side: " + "; ".join(parts)


def release_memory() -> bool:
    """Free dropped runners and hand the freed heap back to the OS. Without malloc_trim glibc keeps
    what earlier batch sizes' runners freed: a full run's resident memory grew with the batch
    size (15 GiB at Focal-fast-S batch 32) until batch 64 no longer fitted."""
    import ctypes

    gc.collect()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return False


def resident_gib() -> float | None:
    """This process's resident memory (Linux), to see what a batch size's backends hold together."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 30, 2)


def _macs_per_backend(prepared: PreparedModel) -> dict[str, float]:
    """Each graph's own MAC count; eager runs the official code path, i.e. the naive graph's."""
    rewritten = prepared.macs["rewritten"]["per_image"]
    naive = prepared.macs.get("naive", prepared.macs["rewritten"])["per_image"]
    return {"focalinfer": rewritten, "ort": rewritten, "ov": rewritten, "ov_tput": rewritten, "ort_cpu": rewritten, "ort_naive": naive, "ov_naive": naive,
            "eager": naive}


def _progress_line(name: str, summary: dict) -> str:
    parts = []
    for backend, result in summary["results"].items():
        ratio = summary["ratio_vs_eager"].get(backend)
        parts.append(f"{backend} {result['img_per_s']:.1f}" + (f" ({ratio:.2f}x)" if ratio else ""))
    load = summary.get("foreign_cpu")
    disturbed = f" [other processes: {load:.0%} of CPUs]" if load and load >= 0.05 else ""
    ours = summary.get("ours")
    verdict = (f"; focalinfer ({ours_label(ours)}) {ours['vs_best_peer']:.2f}x the best peer ({ours['best_peer']})"
               if ours else "")
    memory = f" [{summary['rss_gib']} GiB resident]" if summary.get("rss_gib") else ""
    return f"{name} bs {summary['batch_size']}: img/s " + ", ".join(parts) + verdict + disturbed + memory


def best_figures(batches: list[dict], backends: list[str]) -> dict:
    """Each backend at its best batch size, and that best against eager's best."""
    best = {}
    for backend in backends:
        top = max((b for b in batches if backend in b["results"]), key=lambda b: b["results"][backend]["img_per_s"])
        best[backend] = {"batch_size": top["batch_size"], "img_per_s": top["results"][backend]["img_per_s"]}
    ratios = {}
    if "eager" in best:
        for backend in backends:
            if backend != "eager":
                ratios[backend] = round(best[backend]["img_per_s"] / best["eager"]["img_per_s"], 3)
    figures = {"best": best, "best_ratio_vs_eager": ratios}
    ours = [b for b in batches if "ours" in b]
    if ours:
        top = max(ours, key=lambda b: b["ours"]["img_per_s"])
        figures["best_ours"] = {"batch_size": top["batch_size"], **top["ours"]}
    return figures


def graph_figures(prepared: PreparedModel) -> dict:
    """Node counts of the naive and rewritten exports (after onnxsim) and of the CPU graph."""
    rewritten_graph = prepared.graphs["rewritten"]
    rewritten = rewritten_graph.report["final"]
    naive = prepared.graphs["naive"].report.get("final") if "naive" in prepared.graphs else None
    figures = {
        "traced_nodes": rewritten_graph.report["naive"]["nodes"],
        "rewritten_nodes": rewritten["nodes"],
        "rewritten_compute_nodes": rewritten["compute_nodes"],
        "rewrites": [r.get("name") for r in rewritten_graph.report.get("rewrites", [])],
        "dynamic_batch": {k: g.dynamic for k, g in prepared.graphs.items()},
        "notes": {k: g.note or g.error for k, g in prepared.graphs.items() if g.note or g.error},
        "parity_max_abs_diff": {k: g.report.get("parity", {}).get("max_abs_diff")
                                for k, g in prepared.graphs.items() if g.report},
    }
    if naive:
        figures.update(
            naive_nodes=naive["nodes"], naive_compute_nodes=naive["compute_nodes"],
            ops_removed_by_rewrites=sorted(op for op in naive["ops"] if op not in rewritten["ops"]),
            ops_added_by_rewrites=sorted(op for op in rewritten["ops"] if op not in naive["ops"]),
        )
    first_cpu = next(iter(rewritten_graph.cpu_graphs.values()), {})
    figures["cpu_graph"] = {k: first_cpu.get(k) for k in ("nodes_after", "fused", "parity", "error")}
    return figures


PROFILE_BATCHES = (1, 16)


def profile_model(prepared: PreparedModel, settings: BenchSettings, threads: int | None) -> list[dict]:
    """onnxruntime's per-op-type time for the rewritten graph at batch 1 and 16 (or the nearest
    measured): where the time goes, and what batching changes per image."""
    from focalinfer.bench.profile import profile_op_types

    batches = sorted({min(settings.batch_sizes, key=lambda b: abs(b - want)) for want in PROFILE_BATCHES})
    profiles = []
    for batch in batches:
        path = prepared.graphs["rewritten"].path_for(batch)
        figures = profile_op_types(path, batch, runs=2 if settings.quick else 3, threads=threads)
        profiles.append({"batch_size": batch, "per_image_ms": round(figures["per_run_ms"] / batch, 3), **figures})
    return profiles
