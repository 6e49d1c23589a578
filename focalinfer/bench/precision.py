"""``focalinfer bench precision``: how long the fp16 check takes on a lead model (synthetic weights).

Three timed runs of :func:`focalinfer.precision.run_precision`, each a fresh process-level run
(load, analysis, probe, emulated runs, report):

- ``verdict``: the exported graph as is, ``--samples 64`` (target: under 3 minutes on 2 cores);
- ``search_lint``: the graph with LayerNorm inputs scaled by 1000 at a few LayerNorms. A LayerNorm
  is scale-invariant, so fp32 is unchanged, but the variance now overflows fp16: the range lint
  finds it and the search prunes the list (``--samples 32``, target: under 10 minutes);
- ``search_bisection``: the graph with ``x · 2⁻²⁴ / 2⁻²⁴`` planted on the normalised values of the
  last LayerNorm (before its weight and bias). fp32 is unchanged (powers of two); fp16 stores
  ``x · 2⁻²⁴`` as a subnormal, so x becomes an integer (|x| < 0.5 flushes to zero), and nothing
  exceeds a range: only the bisection finds the two nodes, its worst case (``--samples 32``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from focalinfer.defaults import DEFAULT_MODEL
from focalinfer.util import ensure_writable_dir

VERDICT_TARGET_S = 180.0
SEARCH_TARGET_S = 600.0
LAYERNORM_SCALE = 1000.0
PLANTED_LAYERNORMS = 3
UNDERFLOW_SCALE = 2.0 ** -24  # fp16's smallest subnormal


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "focalinfer" / "bench-precision"


def prepare(model: str, workdir: Path, images: int, log: Callable[[str], None]) -> tuple[Path, Path]:
    """(dynamic-batch ONNX from synthetic weights, preprocessed sample images), made once per workdir."""
    from focalinfer.export.exporter import export_onnx
    from focalinfer.models.synthetic import make_checkpoint
    from focalinfer.preprocess import preprocess
    from focalinfer.samples import make_sample_set

    folder = ensure_writable_dir(workdir / model, "benchmark work directory")
    onnx_path, databin = folder / f"{model}.onnx", folder / "databin"
    if not onnx_path.is_file():
        log(f"bench precision: exporting {model} with synthetic weights into {folder}")
        checkpoint = make_checkpoint(model, folder / f"{model}.synthetic.pth", seed=0)
        export_onnx(model, checkpoint, onnx_path, dynamic_batch=True, parity_samples=1, force=True)
    if len(list(databin.glob("*.bin"))) < images:
        log(f"bench precision: {images} sample images into {databin}")
        make_sample_set(folder / "images", count=images, seed=0)
        preprocess(model, folder / "images", databin, progress=False, force=True)
    return onnx_path, databin


def plant_layernorm_overflow(model, count: int = PLANTED_LAYERNORMS, scale: float = LAYERNORM_SCALE):
    """Scale the input of the first ``count`` decomposed LayerNorms (fp32 output unchanged)."""
    from onnx import helper, numpy_helper
    import numpy as np

    from focalinfer.precision.emulate import analyse
    from focalinfer.precision.search import layernorm_nodes

    info = analyse(model)
    pieces = layernorm_nodes(info)
    means = [i for i in sorted(pieces) if info.nodes[i].op_type == "ReduceMean"
             and any(info.nodes[c].op_type == "Sub" and c in pieces
                     for c in info.consumers.get(info.nodes[i].float_inputs[0][1], []))][:count]
    planted = []
    for k, index in enumerate(means):
        source = info.nodes[index].float_inputs[0][1]
        scaled = f"planted/ln{k}/scaled"
        readers = [c for c in info.consumers[source] if c in pieces]
        _rewire(model, readers, source, scaled)
        planted.append(helper.make_node("Mul", [source, f"planted/ln{k}/scale"], [scaled], name=f"planted/ln{k}/Mul"))
        model.graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), f"planted/ln{k}/scale"))
    _insert_after_producers(model, planted)
    return model


def plant_underflow(model, scale: float = UNDERFLOW_SCALE):
    """``x · scale / scale`` on the normalised output (the Div) of the last LayerNorm."""
    from onnx import helper, numpy_helper
    import numpy as np

    from focalinfer.precision.emulate import analyse
    from focalinfer.precision.search import layernorm_nodes

    info = analyse(model)
    pieces = layernorm_nodes(info)
    index = max(i for i in pieces if info.nodes[i].op_type == "Div")
    source = info.nodes[index].float_outputs[0]
    _rewire(model, info.consumers[source], source, "planted/underflow/up")
    model.graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), "planted/underflow/scale"))
    _insert_after_producers(model, [
        helper.make_node("Mul", [source, "planted/underflow/scale"], ["planted/underflow/down"],
                         name="planted/underflow/Mul"),
        helper.make_node("Div", ["planted/underflow/down", "planted/underflow/scale"], ["planted/underflow/up"],
                         name="planted/underflow/Div"),
    ])
    return model


def _rewire(model, readers: list[int], old: str, new: str) -> None:
    for index in readers:
        node = model.graph.node[index]
        for pos, name in enumerate(node.input):
            if name == old:
                node.input[pos] = new


def _insert_after_producers(model, new_nodes: list) -> None:
    """Insert ``new_nodes`` (in order) right after the node producing each one's first input."""
    nodes = list(model.graph.node)
    for new in new_nodes:
        at = next((i + 1 for i, n in enumerate(nodes) if new.input[0] in n.output), 0)
        nodes.insert(at, new)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _timed(label: str, onnx_path: Path, databin: Path, out: Path, samples: int, target: float,
           threads: int | None, log: Callable[[str], None]) -> dict:
    from focalinfer.precision import run_precision

    log(f"bench precision: {label} ({samples} samples)")
    started = time.perf_counter()
    result = run_precision(onnx_path, databin, out, samples=samples, threads=threads)
    seconds = time.perf_counter() - started
    record = result.record
    log(f"bench precision: {label}: {record.verdict}, {record.runs} run(s), {len(record.keep_dtype)} kept, "
        f"{seconds:.1f} s")
    return {"samples": samples, "seconds": round(seconds, 1), "verdict": record.verdict, "runs": record.runs,
            "kept": record.keep_dtype, "min_cosine_fp16": record.emulated["fp16"]["min_cosine"],
            "target_seconds": target, "met": seconds < target, "timings": record.extra.get("timings")}


def bench_precision(model: str = DEFAULT_MODEL, workdir: str | Path | None = None, samples: int = 64,
                    search_samples: int = 32, search: bool = True, threads: int | None = None,
                    log: Callable[[str], None] = lambda line: None) -> dict:
    import onnx

    from focalinfer.machine import cpu_count, cpu_model

    workdir = Path(workdir) if workdir else _cache_dir()
    onnx_path, databin = prepare(model, workdir, max(samples, search_samples), log)
    folder = onnx_path.parent
    figures = {"model": model, "onnx": str(onnx_path), "weights": "synthetic (not trained)",
               "cpu": cpu_model(), "cpus": threads or cpu_count(), "load_average": list(os.getloadavg()),
               "verdict": _timed("verdict", onnx_path, databin, folder / "precision-verdict", samples,
                                 VERDICT_TARGET_S, threads, log)}
    if search:
        for label, plant in (("search_lint", plant_layernorm_overflow), ("search_bisection", plant_underflow)):
            planted = folder / f"{model}.{label}.onnx"
            onnx.save(plant(onnx.load(str(onnx_path))), str(planted))
            figures[label] = _timed(label, planted, databin, folder / f"precision-{label}", search_samples,
                                    SEARCH_TARGET_S, threads, log)
    figures["load_average_after"] = list(os.getloadavg())
    return figures
