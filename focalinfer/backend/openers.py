"""The one place a runner is opened: a pure factory by backend name (Polygraphy's loaders).

It neither checks that the backend suits the file nor resolves ``auto``: that is decided once,
before anything runs (``focalinfer.backend.table.plan_backend``), and recorded in a
:class:`RunnerSpec` that travels with the run (to device processes, to workers on other hosts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from focalinfer.backend.base import MicroBatchRunner, Runner


@dataclass(frozen=True)
class RunnerSpec:
    """Everything needed to open the runner of a run: a resolved backend (``auto`` only in a Ray
    plan, whose actors each decide it on their node before they open anything)."""

    backend: str
    model_file: str
    device: int = 0
    threads: int | None = None
    precision: str = "fp32"
    micro_batch: int | None = None  # CPU backends: images per call (None: the whole batch)

    def as_dict(self) -> dict:
        return asdict(self)


def _onnxruntime(spec: RunnerSpec) -> Runner:
    from focalinfer.backend.onnxrt import OnnxRuntimeRunner

    return OnnxRuntimeRunner(spec.model_file, threads=spec.threads)


def _openvino(spec: RunnerSpec) -> Runner:
    from focalinfer.backend.openvino import OpenVinoRunner

    return OpenVinoRunner(spec.model_file, threads=spec.threads, precision=spec.precision)


def _ais_bench(spec: RunnerSpec) -> Runner:
    from focalinfer.backend.ais_bench import AisBenchRunner

    return AisBenchRunner(spec.model_file, device=spec.device)


OPENERS = {"onnxruntime": _onnxruntime, "openvino": _openvino, "ais_bench": _ais_bench}


def open_runner(model_file: str | Path, backend: str, *, device: int = 0, threads: int | None = None,
                precision: str = "fp32", micro_batch: int | None = None) -> Runner:
    """A runner of ``backend`` (a resolved name, see :data:`OPENERS`) for ``model_file``."""
    return open_spec(RunnerSpec(backend, str(model_file), device, threads, precision, micro_batch))


def open_spec(spec: RunnerSpec) -> Runner:
    """The runner ``spec`` describes; ``micro_batch`` splits batches of a dynamic-batch graph."""
    if spec.backend not in OPENERS:
        raise ValueError(f"no runner for backend {spec.backend!r} (resolve 'auto' first): {sorted(OPENERS)}")
    runner = OPENERS[spec.backend](spec)
    if spec.micro_batch and runner.input_spec().static_batch is None:
        return MicroBatchRunner(runner, spec.micro_batch)
    return runner
