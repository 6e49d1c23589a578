"""Which backend runs which model file, and the one function that opens a runner for it."""

from __future__ import annotations

from pathlib import Path

from focalinfer.backend.base import Runner
from focalinfer.errors import FocalinferError, UsageError

# model file suffix -> the backends that can run it. 'auto' takes the only one for .om and, for
# .onnx, the fastest CPU backend installed, measured on this CPU (focalinfer.backend.auto).
BACKENDS_BY_SUFFIX = {
    ".om": ("ais_bench",),
    ".onnx": ("onnxruntime", "openvino"),
}
BACKENDS = ("auto",) + tuple(dict.fromkeys(b for names in BACKENDS_BY_SUFFIX.values() for b in names))


def check_backend(model_file: str | Path, backend: str) -> str:
    """Refuse a backend that cannot run this file, in one line; 'auto' is returned unresolved."""
    suffix = Path(model_file).suffix.lower()
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if suffix not in BACKENDS_BY_SUFFIX:
        raise UsageError(
            f"{model_file}: model file must be an .om (ATC output, ais_bench backend) or an .onnx "
            f"({' or '.join(BACKENDS_BY_SUFFIX['.onnx'])} backend)"
        )
    if backend != "auto" and backend not in BACKENDS_BY_SUFFIX[suffix]:
        if suffix == ".om":
            raise UsageError(
                f"{model_file}: {backend} cannot run an .om; pass the ONNX it was built from "
                "(--model-file X.onnx) or use --backend ais_bench on an Ascend machine"
            )
        raise UsageError(
            f"{model_file}: ais_bench runs .om models; build one with `focalinfer om --onnx {model_file}` "
            f"or use --backend {' or --backend '.join(BACKENDS_BY_SUFFIX[suffix])}"
        )
    return backend


def plan_backend(model_file: str | Path, backend: str, *, batch_size: int | None = None,
                 threads: int | None = None, log=None):
    """The backend (and micro-batch) to run ``model_file`` with: an explicit backend is checked and
    runs whole batches; 'auto' is ais_bench for an .om and, for an .onnx, the CPU backend and
    micro-batch measured fastest for ``batch_size`` (default 1) on this machine."""
    from focalinfer.backend.auto import Choice

    backend = check_backend(model_file, backend)
    if backend != "auto":
        if backend == "openvino":
            from focalinfer.backend.openvino import require

            require()
        return Choice(backend)
    if Path(model_file).suffix.lower() == ".om":
        return Choice("ais_bench")
    from focalinfer.backend import auto

    if not Path(model_file).is_file():
        raise FocalinferError(f"{model_file}: model file not found; check the path (or run export first)")
    return auto.choose(model_file, batch_size or 1, threads, **({"log": log} if log else {}))


def resolve_backend(model_file: str | Path, backend: str, *, batch_size: int | None = None,
                    threads: int | None = None, log=None) -> str:
    """The name of the backend :func:`plan_backend` picks."""
    return plan_backend(model_file, backend, batch_size=batch_size, threads=threads, log=log).backend


def open_runner(model_file: str | Path, backend: str = "auto", device: int = 0,
                threads: int | None = None, precision: str = "fp32", micro_batch: int | None = None) -> Runner:
    """A runner for ``model_file`` (the ais_bench runner uses its InferSession API).

    ``precision`` other than fp32 is OpenVINO's only (and refused on CPUs without native support).
    ``micro_batch``: run a batch as calls of at most that many images (dynamic-batch graphs only).
    """
    runner = _open(model_file, backend, device, threads, precision)
    if micro_batch and runner.input_spec().static_batch is None:
        from focalinfer.backend.base import MicroBatchRunner

        return MicroBatchRunner(runner, micro_batch)
    return runner


def _open(model_file, backend, device, threads, precision) -> Runner:
    model_file = Path(model_file)
    backend = resolve_backend(model_file, backend, threads=threads)
    if precision != "fp32" and backend != "openvino":
        raise UsageError(f"--precision {precision} runs on OpenVINO only; use --backend openvino (or auto)")
    if not model_file.is_file():
        raise FocalinferError(f"{model_file}: model file not found; check the path (or run export / om first)")
    if backend == "onnxruntime":
        from focalinfer.backend.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model_file, threads=threads)
    if backend == "openvino":
        from focalinfer.backend.openvino import OpenVinoRunner

        return OpenVinoRunner(model_file, threads=threads, precision=precision)
    from focalinfer.backend.ais_bench import AisBenchRunner

    return AisBenchRunner(model_file, device=device)
