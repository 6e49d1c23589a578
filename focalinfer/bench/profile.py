"""Where a CPU run's time goes: onnxruntime's profiler summed per op type, and how fast its GEMMs run.

The per-op-type split says which ops take the time; the GEMM rows say whether the matrix work
itself runs near the machine's limit (the 2048³ MatMul rate) or is held back by its shapes.

The rule: **the work is the graph's, the time is the kernels'.** Each kind's multiply-accumulates
are counted once per node of the ONNX graph that was profiled (:mod:`focalinfer.bench.macs`); its
time is the sum of the profiled kernels of that kind. The kernels' own shapes are not the work:
onnxruntime's NCHWc Conv pads output channels up to the CPU's vector block (16 floats with
AVX-512, 8 with AVX2), so an 8-channel Conv runs, and is profiled, as a 16-channel one on an
AVX-512 CPU and as itself on an AVX2 CPU, and the ReorderInput/ReorderOutput kernels around it are
layout copies, not Conv work. onnxruntime's fusions (MatMul+Add → Gemm, Transpose+MatMul →
FusedMatMul, Conv+BatchNorm+Relu → one Conv) keep one kernel per counted node, so each kind's
kernel count (``nodes``) matches the graph's (``graph_nodes``).

Kernels and nodes are split in kinds, because they are limited differently:
- ``weights``: one activation times a constant weight (Linear layers, 1×1 projections). onnxruntime
  pre-packs the weight, so the profile lists only the activation among a kernel's float inputs (or
  counts the weight in the kernel's parameter bytes when it is not pre-packed);
- ``activations``: activation times activation (attention's q·kᵀ and attn·v): many small
  matrices per image (one per window and head), no pre-packing;
- ``conv`` for dense convolutions (1×1 projections and strided patch embeddings are GEMMs in all
  but name) and ``depthwise conv`` for grouped ones, which read each input once per output and are
  limited by memory, not by the multiply-accumulate rate, so :func:`at_the_limit` leaves their time
  as measured.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from focalinfer.backend.onnxrt import input_feed_shape, make_session
from focalinfer.bench.macs import MacCount, count_macs
from focalinfer.errors import FocalinferError, UsageError

GEMM_OPS = ("MatMul", "FusedMatMul", "Gemm")
CONV_OPS = ("Conv", "FusedConv")
# Kinds whose multiply-accumulates can run at the machine's GEMM rate.
MATRIX_KINDS = ("weights", "activations", "conv")


def profile_op_types(onnx_path: str | Path, batch: int, runs: int = 3, threads: int | None = None,
                     workdir: str | Path | None = None) -> dict:
    """Run ``runs`` batches with onnxruntime's profiler; milliseconds per run summed by op type.

    Returns {"per_run_ms": total, "op_types": [{"op", "ms", "share", "nodes"}...] (largest first),
    "gemm": [{"kind", "ms", "share", "nodes", "graph_nodes", "macs", "gflops"}...]}, ``macs`` per
    run counted on the graph at ``batch``. The first (warm-up) run is left out of the figures.
    """
    work = count_macs(onnx_path, batch_size=batch)
    with tempfile.TemporaryDirectory(prefix="focalinfer-profile-", dir=workdir) as tmp:
        session = make_session(onnx_path, threads, profile_prefix=str(Path(tmp) / "ort"))
        name, shape = input_feed_shape(session, batch)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        for _ in range(runs + 1):
            session.run(None, {name: x})
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
    return summarize_profile(events, runs, work)


def summarize_profile(events: list[dict], runs: int, work: MacCount) -> dict:
    """Sum kernel times per op type, and per GEMM kind, over the last ``runs`` model runs of a trace;
    each kind's multiply-accumulates per run are ``work``'s (the graph's, at the profiled batch)."""
    run_starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    cutoff = run_starts[-runs] if len(run_starts) >= runs else 0
    per_op_us: dict[str, float] = defaultdict(float)
    nodes: dict[str, set] = defaultdict(set)
    kind_us: dict[str, float] = defaultdict(float)
    kind_nodes: dict[str, set] = defaultdict(set)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < cutoff:
            continue
        args = event.get("args", {})
        op = args.get("op_name", "?")
        per_op_us[op] += event["dur"]
        nodes[op].add(event["name"])
        kind = kernel_kind(args)
        if kind:
            kind_us[kind] += event["dur"]
            kind_nodes[kind].add(event["name"])
    total_us = sum(per_op_us.values())

    def share(us: float) -> float:
        return round(us / total_us, 4) if total_us else 0.0

    rows = [{"op": op, "ms": round(us / runs / 1000, 3), "share": share(us), "nodes": len(nodes[op])}
            for op, us in sorted(per_op_us.items(), key=lambda kv: -kv[1])]
    # A kind the graph has but no kernel ran (or the reverse) is listed too, with no rate.
    kinds = sorted(set(kind_us) | set(work.by_kind), key=lambda k: (-kind_us.get(k, 0.0), k))
    gemm = [kind_row(kind, kind_us.get(kind, 0.0) / runs, len(kind_nodes[kind]), work, share(kind_us.get(kind, 0.0)))
            for kind in kinds]
    return {"per_run_ms": round(total_us / runs / 1000, 3), "runs": runs, "op_types": rows, "gemm": gemm}


def kind_row(kind: str, us_per_run: float, kernels: int, work: MacCount, share: float) -> dict:
    """One kind's row: its kernels' time per run against the graph's multiply-accumulates per run."""
    macs = work.by_kind.get(kind, 0)
    return {"kind": kind, "ms": round(us_per_run / 1000, 3), "share": share, "nodes": kernels,
            "graph_nodes": work.nodes_by_kind.get(kind, 0), "macs": macs,
            "gflops": round(2 * macs / (us_per_run * 1e-6) / 1e9, 1) if us_per_run and macs else None}


def kernel_kind(args: dict) -> str | None:
    """The kind of one profiled kernel (macs.node_kind's rule, read from what the profile records):
    None for kernels that are not MatMul/FusedMatMul/Gemm or Conv, or whose shapes were not recorded."""
    op = args.get("op_name")
    inputs = _float_shapes(args.get("input_type_shape", []))
    if op in CONV_OPS:
        # input (N, C, ...), weight (M, C / groups, k...): the weight's channels are the input's only
        # in a dense Conv (NCHWc pads neither the input a dense Conv reads nor its weight's C).
        if len(inputs) < 2 or len(inputs[0]) < 3 or len(inputs[1]) != len(inputs[0]):
            return None
        return "conv" if inputs[1][1] == inputs[0][1] else "depthwise conv"
    if op not in GEMM_OPS:
        return None
    matrices = [s for s in inputs if len(s) >= 2]
    if not matrices:
        return None
    constant_operand = op == "Gemm" or len(matrices) < 2 or int(args.get("parameter_size", 0)) > 0
    return "weights" if constant_operand else "activations"


def _float_shapes(entries: list[dict]) -> list[list[int]]:
    return [list(shape) for entry in entries for dtype, shape in entry.items() if dtype in ("float", "float16")]


# --- `focalinfer bench profile` ----------------------------------------------------------

PROFILE_BATCH_SIZES = (1, 4, 16)


def bench_profile(model: str, batch_sizes: list[int] | None = None, graph: str = "rewritten",
                  threads: int | None = None, workdir: str | Path | None = None, runs: int = 3,
                  log=None) -> dict:
    """Profile one model's cached benchmark graph at each batch size, beside this machine's GEMM
    limit: the figures that say what holds a model below the limit."""
    import datetime as _dt

    from focalinfer.bench.machine import gemm_rates, machine_info
    from focalinfer.bench.prepare import default_workdir, prepare_model
    from focalinfer.bench.settings import NAIVE_BACKENDS, _stderr
    from focalinfer.machine import cpu_count

    log = log or _stderr
    batch_sizes = list(batch_sizes or PROFILE_BATCH_SIZES)
    if min(batch_sizes) < 1:
        raise UsageError(f"batch sizes must be 1 or more, not {min(batch_sizes)}")
    threads = threads or cpu_count()
    workdir = Path(workdir) if workdir else default_workdir()
    prepared = prepare_model(model, workdir, batch_sizes, log=log, threads=threads,
                             backends=NAIVE_BACKENDS if graph == "naive" else ("ort",))
    chosen = prepared.graphs[graph]
    if chosen.error:
        raise FocalinferError(f"{model}: the {graph} export fails parity ({chosen.error})")
    log("bench profile: fp32 GEMM rate ...")
    gemm = gemm_rates(threads=threads)
    profiles = []
    for batch in batch_sizes:
        log(f"bench profile: {model} ({graph} graph) at batch {batch} ...")
        figures = profile_op_types(chosen.path_for(batch), batch, runs=runs, threads=threads)
        profiles.append({"batch_size": batch, "per_image_ms": round(figures["per_run_ms"] / batch, 3), **figures})
    return {"model": model, "graph": graph, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(threads), "gemm": gemm, "macs_per_image": prepared.macs.get(graph, {}).get("per_image"),
            "profiles": profiles}


def at_the_limit(profile: dict, limit_gflops: float) -> dict:
    """What one profiled run would take if its GEMM (and dense Conv) kernels ran at ``limit_gflops``
    and every other kernel took the time it did: the img/s bound the other kernels leave."""
    matrix = [row for row in profile["gemm"] if row["kind"] in MATRIX_KINDS]
    gemm_ms = sum(row["ms"] for row in matrix)
    macs = sum(row["macs"] for row in matrix)
    other_ms = profile["per_run_ms"] - gemm_ms
    gemm_at_limit_ms = 2 * macs / (limit_gflops * 1e9) * 1e3
    return {"gemm_ms": round(gemm_ms, 3), "other_ms": round(other_ms, 3),
            "gemm_at_limit_ms": round(gemm_at_limit_ms, 3),
            "img_per_s_bound": round(profile["batch_size"] / ((other_ms + gemm_at_limit_ms) / 1e3), 2)}
