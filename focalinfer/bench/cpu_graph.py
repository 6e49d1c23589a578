"""The CPU-only fused graph and onnxruntime's per-op profile, as the benchmark measures them.

- :func:`build_cpu_graph`: the onnxruntime transformer optimiser's fusions (LayerNorm, GELU,
  SkipLayerNorm, BiasGelu) written as a separate CPU-only graph ``<stem>.cpu.onnx`` beside the
  exported one, kept only when its logits stay within the export's parity bound. The exported
  graph, the one handed to ATC, is never modified (ATC does not know those contrib ops);
- :func:`profile_op_types`: onnxruntime's profiler summed per op type, to see where time goes.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from focalinfer.backend.onnxrt import make_session
from focalinfer.errors import FocalinferError
from focalinfer.metrics.logits import parity_bound

CPU_GRAPH_SUFFIX = ".cpu.onnx"
# The optimiser's BERT fusion set is the generic one (LayerNorm, Gelu, SkipLayerNorm, BiasGelu);
# its attention matchers look for BERT's exact subgraph, which these vision models do not have.
OPTIMIZER_MODEL_TYPE = "bert"


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
        worst_bound = min(worst_bound, parity_bound(a))
    return {"max_abs_diff": worst_diff, "bound": worst_bound, "passed": worst_diff <= worst_bound,
            "rule": "max |plain - cpu graph| <= 1e-4 * max(1, max |plain logit|)", "batches": batches,
            "batch_shape": list(shape)}


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
