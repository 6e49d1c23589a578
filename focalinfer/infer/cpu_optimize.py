"""The onnxruntime CPU path made as fast as this kind of machine allows, without touching the ATC graph.

Three separate things live here, each measured with ``focalinfer bench all`` (docs/benchmarks.md):

- :func:`session_options` / :func:`make_session`: session settings chosen on purpose (the figures
  behind each choice are in the comments);
- :func:`build_cpu_graph`: the onnxruntime transformer optimiser's fusions (LayerNorm, GELU,
  SkipLayerNorm, BiasGelu) written as a separate CPU-only graph ``<stem>.cpu.onnx`` beside the
  exported one, kept only when its logits stay within the export's parity bound. The exported
  graph, the one handed to ATC, is never modified (ATC does not know those contrib ops);
- :func:`read_bin_batch`: one ``.bin`` read per file straight into a pre-allocated batch array;
- :func:`profile_op_types`: onnxruntime's profiler summed per op type, to see where time goes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from focalinfer.errors import FocalinferError

# The parity rule of the export stage, unchanged: the CPU graph must meet it too.
PARITY_RTOL = 1e-4
CPU_GRAPH_SUFFIX = ".cpu.onnx"
# The optimiser's BERT fusion set is the generic one (LayerNorm, Gelu, SkipLayerNorm, BiasGelu);
# its attention matchers look for BERT's exact subgraph, which these vision models do not have.
OPTIMIZER_MODEL_TYPE = "bert"


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def session_options(threads: int | None = None, *, profile_prefix: str | None = None):
    """SessionOptions for CPU throughput on a small machine.

    Each setting was measured on the 2-core bench machine (twins-altgvt-s / van-b2, batch 1 and 16):
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    # ENABLE_ALL includes the NCHWc layout transform for Conv; EXTENDED alone ran VAN-B2 at 0.55x.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One batch at a time: both cores go to each operator. ORT_PARALLEL ran every model at ~0.45x,
    # because branch-level threads and the intra-op pool fight over the same two cores.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    # The arena keeps freed activations for the next batch; without it batch 16 ran at 0.67-0.8x.
    options.enable_cpu_mem_arena = True
    # Shapes repeat batch after batch, so the memory planner's pattern from the first run is reused.
    options.enable_mem_pattern = True
    # Worker threads spin between operators instead of sleeping (allow_spinning=0 ran at 0.8-0.97x);
    # the cost is CPU burnt while idle, which only matters when other work shares the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def make_session(onnx_path: str | Path, threads: int | None = None, optimized_cache: str | Path | None = None,
                 *, profile_prefix: str | None = None):
    """An onnxruntime CPU InferenceSession for ``onnx_path`` with :func:`session_options`.

    ``optimized_cache``: a file where onnxruntime's optimised graph is kept, so later sessions skip
    graph optimisation. It is reused only while its sidecar records the same source graph (size and
    mtime), onnxruntime version and CPU; otherwise it is rebuilt. The optimised graph contains
    NCHWc kernels specific to this CPU, which is why the CPU is part of the key.
    """
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FocalinferError(f"{onnx_path}: model file not found; check the path (or run export first)")
    options = session_options(threads, profile_prefix=profile_prefix)
    source = onnx_path
    if optimized_cache is not None:
        source = _optimized_graph(onnx_path, Path(optimized_cache), threads)
    try:
        return ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise FocalinferError(f"{source}: onnxruntime cannot load it ({_first_line(e)}); re-export the model") from None


def _cache_key(onnx_path: Path) -> dict:
    import onnxruntime as ort

    stat = onnx_path.stat()
    return {"source": str(onnx_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "onnxruntime": ort.__version__, "cpu": cpu_model()}


def _optimized_graph(onnx_path: Path, cache: Path, threads: int | None) -> Path:
    """The cached optimised graph, (re)built when its key does not match."""
    import onnxruntime as ort

    from focalinfer.util import write_json_atomic

    sidecar = cache.with_name(cache.name + ".json")
    key = _cache_key(onnx_path)
    if cache.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()) == key:
                return cache
        except (OSError, ValueError):
            pass
    options = session_options(threads)
    fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".onnx", dir=cache.parent)
    os.close(fd)
    try:
        options.optimized_model_filepath = tmp
        ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
        os.replace(tmp, cache)
    finally:
        Path(tmp).unlink(missing_ok=True)
    write_json_atomic(sidecar, key)
    return cache


# --- the CPU-only fused graph ------------------------------------------------------------

def cpu_graph_path(onnx_path: str | Path) -> Path:
    """``infer/focal-fast-s.onnx`` → ``infer/focal-fast-s.cpu.onnx``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + CPU_GRAPH_SUFFIX)


def transformer_optimizer_available() -> bool:
    try:
        import onnxruntime.transformers.optimizer  # noqa: F401
    except Exception:  # it imports optional packages (sympy, packaging) that may be missing
        return False
    return True


def build_cpu_graph(onnx_path: str | Path, out: str | Path | None = None, *, samples: int = 2,
                    threads: int | None = None) -> dict:
    """Write the transformer optimiser's fused graph beside ``onnx_path`` and check its parity.

    Returns a record: ``path`` (None when the graph was not kept), ``fused`` (op → count), node
    counts, ``parity`` {max_abs_diff, bound, passed}. A graph outside the bound is deleted, never used.
    """
    import onnx

    from focalinfer.util import write_bytes_atomic

    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else cpu_graph_path(onnx_path)
    if out.resolve() == onnx_path.resolve():
        raise FocalinferError(f"{out}: the CPU graph must not replace the exported graph; choose another path")
    if not transformer_optimizer_available():
        return {"path": None, "error": "onnxruntime.transformers.optimizer is not importable"}
    started = time.perf_counter()
    fused_model, fused = _fuse(onnx_path)
    before = len(onnx.load(str(onnx_path), load_external_data=False).graph.node)
    record = {"source": str(onnx_path), "path": None, "fused": fused,
              "nodes_before": before, "nodes_after": len(fused_model.graph.node)}
    write_bytes_atomic(out, fused_model.SerializeToString())
    record["parity"] = cpu_graph_parity(onnx_path, out, samples=samples, threads=threads)
    if record["parity"]["passed"]:
        record["path"] = str(out)
    else:
        out.unlink(missing_ok=True)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def _fuse(onnx_path: Path):
    """The optimiser's Python-level fusions only (opt_level 0): onnxruntime's own graph
    optimisations run anyway when the session loads, and saving them would tie the file to this CPU."""
    import logging

    from onnxruntime.transformers import optimizer

    # The optimiser logs a line per fusion pass at WARNING; the record returned says what fused.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimizer.optimize_model(str(onnx_path), model_type=OPTIMIZER_MODEL_TYPE, num_heads=0,
                                     hidden_size=0, optimization_options=_fusion_options(),
                                     opt_level=0, use_gpu=False)
    fused = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    return model.model, fused


def _fusion_options():
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions(OPTIMIZER_MODEL_TYPE)
    # SkipLayerNormalization's CPU kernel ran twins-altgvt-s at 0.89x: onnxruntime's own session
    # fusions already turn Add + LayerNorm into LayerNormalization, which is faster on CPU.
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    options.enable_embed_layer_norm = False
    # FastGelu (tanh approximation) would change the numbers; the exact Gelu/BiasGelu is kept.
    options.enable_gelu_approximation = False
    return options


def _input_feed_shape(session, batch: int) -> tuple[str, tuple[int, ...]]:
    node = session.get_inputs()[0]
    dims = [d if isinstance(d, int) and d > 0 else None for d in node.shape]
    if dims and dims[0] is None:
        dims[0] = batch
    if any(d is None for d in dims):
        raise FocalinferError(f"input {node.name!r} has dynamic dimensions {node.shape}; export with a fixed image size")
    return node.name, tuple(dims)


def cpu_graph_parity(reference: str | Path, candidate: str | Path, *, samples: int = 2,
                     threads: int | None = None, batch: int = 2) -> dict:
    """max |reference - candidate| over random inputs against 1e-4 × max(1, max |reference logit|)."""
    ref = make_session(reference, threads)
    cand = make_session(candidate, threads)
    name, shape = _input_feed_shape(ref, batch)
    rng = np.random.default_rng(0)
    worst_diff, worst_bound = 0.0, math.inf
    batches = max(1, math.ceil(samples / shape[0]))
    for _ in range(batches):
        x = rng.standard_normal(shape, dtype=np.float32)
        a = ref.run(None, {name: x})[0]
        b = cand.run(None, {name: x})[0]
        worst_diff = max(worst_diff, float(np.max(np.abs(a.astype(np.float64) - b))))
        worst_bound = min(worst_bound, PARITY_RTOL * max(1.0, float(np.max(np.abs(a)))))
    return {"max_abs_diff": worst_diff, "bound": worst_bound, "passed": worst_diff <= worst_bound,
            "rule": "max |plain - cpu graph| <= 1e-4 * max(1, max |plain logit|)", "batches": batches,
            "batch_shape": list(shape)}


# --- input batches -----------------------------------------------------------------------

def read_bin_batch(paths: Sequence[str | Path], out: np.ndarray) -> np.ndarray:
    """Read one float32 sample per file into ``out[i]`` (pre-allocated, C-contiguous), one read each.

    Rows past ``len(paths)`` are left as they are; the caller pads. A file of the wrong size is a
    one-line error naming it.
    """
    if not out.flags.c_contiguous:
        raise ValueError("read_bin_batch needs a C-contiguous output array")
    if len(paths) > out.shape[0]:
        raise ValueError(f"{len(paths)} files do not fit a batch of {out.shape[0]}")
    sample_bytes = out[0].nbytes
    for row, path in zip(out, paths):
        with open(path, "rb") as f:
            got = f.readinto(memoryview(row).cast("B"))
            extra = f.read(1)
        if got != sample_bytes or extra:
            size = os.path.getsize(path)
            raise FocalinferError(
                f"{path}: {size} bytes, but the model takes {sample_bytes} per sample "
                f"({row.dtype} {tuple(row.shape)}); re-run preprocess for this model"
            )
    return out


# --- profiling -------------------------------------------------------------------------

def profile_op_types(onnx_path: str | Path, batch: int, runs: int = 3, threads: int | None = None,
                     workdir: str | Path | None = None) -> dict:
    """Run ``runs`` batches with onnxruntime's profiler; milliseconds per run summed by op type.

    Returns {"per_run_ms": total, "op_types": [{"op", "ms", "share", "nodes"}...] (largest first)}.
    The first (warm-up) run is left out of the figures.
    """
    with tempfile.TemporaryDirectory(prefix="focalinfer-profile-", dir=workdir) as tmp:
        session = make_session(onnx_path, threads, profile_prefix=str(Path(tmp) / "ort"))
        name, shape = _input_feed_shape(session, batch)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        for _ in range(runs + 1):
            session.run(None, {name: x})
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
    return summarize_profile(events, runs)


def summarize_profile(events: list[dict], runs: int) -> dict:
    """Sum kernel times per op type over the last ``runs`` model runs of a profile trace."""
    run_starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    cutoff = run_starts[-runs] if len(run_starts) >= runs else 0
    per_op_us: dict[str, float] = defaultdict(float)
    nodes: dict[str, set] = defaultdict(set)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if event["ts"] < cutoff:
            continue
        op = event.get("args", {}).get("op_name", "?")
        per_op_us[op] += event["dur"]
        nodes[op].add(event["name"])
    total_us = sum(per_op_us.values())
    rows = [{"op": op, "ms": round(us / runs / 1000, 3), "share": round(us / total_us, 4) if total_us else 0.0,
             "nodes": len(nodes[op])} for op, us in sorted(per_op_us.items(), key=lambda kv: -kv[1])]
    return {"per_run_ms": round(total_us / runs / 1000, 3), "runs": runs, "op_types": rows}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
