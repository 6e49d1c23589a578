"""Which backend runs which model file, and the one function that opens a runner for it."""

from __future__ import annotations

from pathlib import Path

from focalinfer.backend.base import Runner
from focalinfer.errors import FocalinferError, UsageError

# model file suffix -> the backends that can run it (the first is what 'auto' picks).
BACKENDS_BY_SUFFIX = {
    ".om": ("ais_bench",),
    ".onnx": ("onnxruntime",),
}
BACKENDS = ("auto",) + tuple(dict.fromkeys(b for names in BACKENDS_BY_SUFFIX.values() for b in names))


def resolve_backend(model_file: str | Path, backend: str) -> str:
    """'auto' → the suffix's first backend; refuse a backend that cannot run this file, in one line."""
    suffix = Path(model_file).suffix.lower()
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if suffix not in BACKENDS_BY_SUFFIX:
        raise UsageError(
            f"{model_file}: model file must be an .om (ATC output, ais_bench backend) or an .onnx "
            "(onnxruntime backend)"
        )
    if backend == "auto":
        return BACKENDS_BY_SUFFIX[suffix][0]
    if backend not in BACKENDS_BY_SUFFIX[suffix]:
        if suffix == ".om":
            raise UsageError(
                f"{model_file}: {backend} cannot run an .om; pass the ONNX it was built from "
                "(--model-file X.onnx) or use --backend ais_bench on an Ascend machine"
            )
        raise UsageError(
            f"{model_file}: ais_bench runs .om models; build one with `focalinfer om --onnx {model_file}` "
            f"or use --backend {BACKENDS_BY_SUFFIX[suffix][0]}"
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
        from focalinfer.backend.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model_file, threads=threads)
    from focalinfer.backend.ais_bench import AisBenchRunner

    return AisBenchRunner(model_file, device=device)
