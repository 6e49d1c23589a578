"""One small interface in front of every inference backend (Polygraphy-style runners).

A runner loads one model, describes its single input, runs a batch and reports how long the
compute took. The output contract (files, summary) is written by the caller, the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from focalinfer.errors import FocalinferError, UsageError

BACKENDS = ("auto", "ais_bench", "onnxruntime")


@dataclass(frozen=True)
class TensorSpec:
    """A model tensor: ``shape[0]`` is None when the batch axis is dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def static_batch(self) -> int | None:
        return self.shape[0] if self.shape else None

    def sample_bytes(self) -> int:
        dims = self.shape[1:]
        if any(d is None for d in dims):
            raise FocalinferError(
                f"model input {self.name!r} has dynamic dimensions {self.shape} beyond the batch axis; "
                "export it with a fixed image size"
            )
        return int(np.prod(dims, dtype=np.int64)) * self.dtype.itemsize


class Runner:
    """Base class: subclasses load the model in __init__ and implement the four methods."""

    backend = "?"

    def input_spec(self) -> TensorSpec:
        raise NotImplementedError

    def output_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch; record its compute time (ms) in ``compute_times_ms``."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    compute_times_ms: list[float]

    def reset_times(self) -> None:
        """Forget the timings so far (after warm-up)."""
        self.compute_times_ms = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def resolve_backend(model_file: str | Path, backend: str) -> str:
    """'auto' → ais_bench for .om, onnxruntime for .onnx; refuse mismatched pairs in one line."""
    suffix = Path(model_file).suffix.lower()
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if suffix not in (".om", ".onnx"):
        raise UsageError(
            f"{model_file}: model file must be an .om (ATC output, ais_bench backend) or an .onnx "
            "(onnxruntime backend)"
        )
    if backend == "auto":
        return "ais_bench" if suffix == ".om" else "onnxruntime"
    if backend == "onnxruntime" and suffix == ".om":
        raise UsageError(
            f"{model_file}: onnxruntime cannot run an .om; pass the ONNX it was built from "
            "(--model-file X.onnx) or use --backend ais_bench on an Ascend machine"
        )
    if backend == "ais_bench" and suffix == ".onnx":
        raise UsageError(
            f"{model_file}: ais_bench runs .om models; build one with `focalinfer om --onnx {model_file}` "
            "or use --backend onnxruntime"
        )
    return backend


def open_runner(model_file: str | Path, backend: str = "auto", device: int = 0,
                threads: int | None = None) -> Runner:
    """A runner for ``model_file`` (the ais_bench runner uses its InferSession API)."""
    model_file = Path(model_file)
    backend = resolve_backend(model_file, backend)
    if not model_file.is_file():
        raise FocalinferError(f"{model_file}: model file not found; check the path (or run export / om first)")
    if backend == "onnxruntime":
        from focalinfer.infer.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model_file, threads=threads)
    from focalinfer.infer.ais_bench import AisBenchRunner

    return AisBenchRunner(model_file, device=device)
