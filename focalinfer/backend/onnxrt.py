"""onnxruntime: the one place that builds an InferenceSession, and the runner around it.

Export parity, ``infer``, ``eval --onnx``, ``compare``-style checks, the precision emulator, MAC
counting and the benchmark all get their sessions from :func:`make_session`, so a parity figure is
measured under the same settings inference runs with. The settings were measured with
``focalinfer bench all`` (docs/benchmarks.md); the figure behind each choice is in its comment.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from focalinfer.backend.base import Runner, TensorSpec
from focalinfer.errors import FocalinferError, first_line
from focalinfer.machine import cpu_count, cpu_model

# ONNX element types as onnxruntime names them.
ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}
# 'none' keeps every named tensor (MAC counting and range probes read intermediate values).
OPTIMIZATION_LEVELS = ("all", "extended", "basic", "none")


def session_options(threads: int | None = None, *, optimization: str = "all", profile_prefix: str | None = None):
    """SessionOptions for CPU throughput on a small machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    levels = {
        # ENABLE_ALL includes the NCHWc layout transform for Conv; EXTENDED alone ran VAN-B2 at 0.55x.
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization {optimization!r}: choose one of {', '.join(OPTIMIZATION_LEVELS)}")
    options.graph_optimization_level = levels[optimization]
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


def make_session(model, threads: int | None = None, optimized_cache: str | Path | None = None, *,
                 optimization: str = "all", profile_prefix: str | None = None):
    """An onnxruntime CPU InferenceSession for ``model``: a path, serialized bytes or a ModelProto.

    ``optimized_cache``: a file where onnxruntime's optimised graph is kept, so later sessions skip
    graph optimisation. It is reused only while its sidecar records the same source graph (size and
    mtime), onnxruntime version and CPU; otherwise it is rebuilt. The optimised graph contains
    NCHWc kernels specific to this CPU, which is why the CPU is part of the key.
    """
    import onnxruntime as ort

    options = session_options(threads, optimization=optimization, profile_prefix=profile_prefix)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    if isinstance(model, (bytes, bytearray)):
        source, label = bytes(model), "the ONNX graph"
    else:
        path = Path(model)
        if not path.is_file():
            raise FocalinferError(f"{path}: model file not found; check the path (or run export first)")
        if optimized_cache is not None:
            path = _optimized_graph(path, Path(optimized_cache), threads)
        source, label = str(path), str(path)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise FocalinferError(f"{label}: onnxruntime cannot load it ({first_line(e)}); re-export the model") from None


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


def tensor_spec(node) -> TensorSpec:
    """A TensorSpec from an onnxruntime NodeArg (symbolic and unknown dims become None)."""
    if node.type not in ORT_DTYPES:
        raise FocalinferError(f"tensor {node.name!r} has unsupported type {node.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
    return TensorSpec(node.name, shape, np.dtype(ORT_DTYPES[node.type]))


def input_feed_shape(session, batch: int) -> tuple[str, tuple[int, ...]]:
    """The first input's name and shape with a dynamic batch axis set to ``batch``."""
    node = session.get_inputs()[0]
    dims = [d if isinstance(d, int) and d > 0 else None for d in node.shape]
    if dims and dims[0] is None:
        dims[0] = batch
    if any(d is None for d in dims):
        raise FocalinferError(f"input {node.name!r} has dynamic dimensions {node.shape}; export with a fixed image size")
    return node.name, tuple(dims)


class OnnxRuntimeRunner(Runner):
    """The exported ONNX on onnxruntime's CPU provider."""

    backend = "onnxruntime"

    def __init__(self, model_file: str | Path, threads: int | None = None, session=None):
        self.model_file = Path(model_file)
        self.session = session or make_session(self.model_file, threads)
        self._input = tensor_spec(self.single_input(model_file, self.session.get_inputs()))
        self._outputs = [tensor_spec(o) for o in self.session.get_outputs()]
        self._output_names = [o.name for o in self._outputs]

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self._output_names, {self._input.name: batch})

    def close(self) -> None:
        self.session = None
