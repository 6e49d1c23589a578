"""The CPU-only fused graph, as the benchmark measures it.

:func:`build_cpu_graph`: the onnxruntime transformer optimiser's fusions (LayerNorm, GELU,
SkipLayerNorm, BiasGelu) written as a separate CPU-only graph ``<stem>.cpu.onnx`` beside the
exported one, kept only when its logits stay within the export's parity bound. The exported graph,
the one handed to ATC, is never modified (ATC does not know those contrib ops).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from focalinfer.backend.onnxrt import input_feed_shape, make_session
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


def cpu_graph_parity(reference: str | Path, candidate: str | Path, *, samples: int = 2,
                     threads: int | None = None, batch: int = 2) -> dict:
    """max |reference - candidate| over random inputs against 1e-4 × max(1, max |reference logit|)."""
    ref = make_session(reference, threads)
    cand = make_session(candidate, threads)
    name, shape = input_feed_shape(ref, batch)
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
