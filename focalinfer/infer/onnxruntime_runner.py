"""The onnxruntime runner: CPU inference of the exported ONNX, timed around session.run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from focalinfer.errors import FocalinferError
from focalinfer.infer.runner import Runner, TensorSpec

# ONNX element types as onnxruntime names them.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}


def _tensor_spec(node) -> TensorSpec:
    if node.type not in _ORT_DTYPES:
        raise FocalinferError(f"tensor {node.name!r} has unsupported type {node.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
    return TensorSpec(node.name, shape, np.dtype(_ORT_DTYPES[node.type]))


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model_file: str | Path, threads: int | None = None):
        from focalinfer.infer.cpu_optimize import make_session

        self.model_file = Path(model_file)
        self.session = make_session(self.model_file, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise FocalinferError(
                f"{model_file}: the model has {len(inputs)} inputs; focalinfer feeds classifiers with one image input"
            )
        self._input = _tensor_spec(inputs[0])
        self._outputs = [_tensor_spec(o) for o in self.session.get_outputs()]
        self._output_names = [o.name for o in self._outputs]
        self.compute_times_ms = []

    def input_spec(self) -> TensorSpec:
        return self._input

    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        feed = {self._input.name: batch}
        start = time.perf_counter()
        outputs = self.session.run(self._output_names, feed)
        self.compute_times_ms.append((time.perf_counter() - start) * 1000.0)
        return outputs

    def close(self) -> None:
        self.session = None
