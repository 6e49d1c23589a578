"""Which backend runs which model file: checked and resolved once, before anything runs."""

from __future__ import annotations

from pathlib import Path

from focalinfer.backend import auto
from focalinfer.backend.auto import Choice
from focalinfer.errors import UsageError

# model file suffix -> the backends that can run it. 'auto' takes the only one for .om and, for
# .onnx, the fastest CPU backend installed, measured on this CPU (focalinfer.backend.auto).
BACKENDS_BY_SUFFIX = {
    ".om": ("ais_bench",),
    ".onnx": ("onnxruntime", "openvino"),
}
BACKENDS = ("auto",) + tuple(dict.fromkeys(b for names in BACKENDS_BY_SUFFIX.values() for b in names))
PRECISIONS = ("fp32", "bf16")


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


def _reduced_precision(model_file: str | Path, backend: str, precision: str) -> Choice:
    """bf16 is OpenVINO's, on CPUs with native bf16 only: an explicit opt-in, never a default."""
    from focalinfer.backend.openvino import check_precision, require

    if Path(model_file).suffix.lower() != ".onnx" or backend not in ("auto", "openvino"):
        raise UsageError(f"--precision {precision} runs on OpenVINO only; pass --backend openvino (or auto)")
    require(f"--precision {precision}")
    check_precision(precision)
    return Choice("openvino")


def plan_backend(model_file: str | Path, backend: str, **settings) -> Choice:
    """:func:`check_backend`, then :func:`decide_backend`."""
    return decide_backend(model_file, check_backend(model_file, backend), **settings)


def decide_backend(model_file: str | Path, backend: str, *, batch_size: int | None = None,
                   threads: int | None = None, precision: str = "fp32", log=None,
                   graph_sha256: str | None = None) -> Choice:
    """The backend (and micro-batch) to run ``model_file`` with, decided once, for a ``backend`` that
    :func:`check_backend` passed: an explicit backend runs whole batches; 'auto' is ais_bench for an
    .om and, for an .onnx, the CPU backend and micro-batch measured fastest for ``batch_size``
    (default 1) on this machine. ``precision`` other than fp32 is OpenVINO's only; ``graph_sha256``
    spares auto hashing the file again."""
    if precision != "fp32":
        return _reduced_precision(model_file, backend, precision)
    if backend == "openvino":
        from focalinfer.backend.openvino import require

        require()
    if backend != "auto":
        return Choice(backend)
    if Path(model_file).suffix.lower() == ".om":
        return Choice("ais_bench")
    return auto.choose(model_file, batch_size or 1, threads, graph_sha256=graph_sha256,
                       **({"log": log} if log else {}))


def resolve_backend(model_file: str | Path, backend: str, *, batch_size: int | None = None,
                    threads: int | None = None, log=None) -> str:
    """The name of the backend :func:`plan_backend` picks."""
    return plan_backend(model_file, backend, batch_size=batch_size, threads=threads, log=log).backend
