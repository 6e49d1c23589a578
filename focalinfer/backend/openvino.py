"""OpenVINO: the one place that compiles an OpenVINO model, and the runner around it.

An optional extra (``pip install 'focalinfer[openvino]'``). Settings:

- inference precision **f32**, always set explicitly: OpenVINO's CPU plugin runs bf16 by default on
  CPUs with AMX or avx512_bf16, which would change the logits beyond the export's parity bound.
  bf16 is only ever used when asked for (``precision='bf16'``) and never for parity;
- performance hint LATENCY: one stream using every thread for each request, since focalinfer
  runs one batch at a time (a THROUGHPUT-hint model splits the cores into streams that only
  several requests in flight would fill);
- a dynamic batch axis is fixed to the batch size actually fed (the model is compiled once per
  batch size), so the CPU plugin compiles static-shape kernels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from focalinfer.backend.base import Runner, TensorSpec
from focalinfer.errors import FocalinferError, ToolMissingError, UsageError, first_line
from focalinfer import machine
from focalinfer.machine import cpu_count

PRECISIONS = ("fp32", "bf16")
HINTS = ("LATENCY", "THROUGHPUT")
DEFAULT_HINT = "LATENCY"
INSTALL_HINT = "pip install 'focalinfer[openvino]'"
# CPU flags that give OpenVINO's CPU plugin a native bf16 path (without them it emulates nothing
# and silently runs f32, so asking for bf16 there would only mislead).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def version() -> str | None:
    if not available():
        return None
    import openvino

    return openvino.get_version().split("-")[0]


def require(what: str = "--backend openvino") -> None:
    if not available():
        raise ToolMissingError(f"{what} needs OpenVINO, which is not installed; {INSTALL_HINT}, or use --backend onnxruntime")


def bf16_supported() -> bool:
    # Read through the module, so a test can stand in another CPU's flags at their one source.
    return any(flag in machine.cpu_flags() for flag in BF16_FLAGS)


def check_precision(precision: str) -> None:
    """Refuse an unknown precision, or bf16 on a CPU without native bf16, in one line."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not bf16_supported():
        raise UsageError(
            f"--precision bf16 needs a CPU with {' or '.join(BF16_FLAGS)} (AMX / AVX-512 BF16); this CPU "
            f"({machine.cpu_model()}) has neither, so run fp32"
        )


def compile_model(model, threads: int | None = None, *, batch_size: int | None = None, precision: str = "fp32",
                  hint: str = DEFAULT_HINT):
    """An OpenVINO CPU CompiledModel for ``model`` (an ONNX path or an ``openvino.Model``).

    ``batch_size`` fixes a dynamic batch axis. ``precision`` 'fp32' forces f32 inference precision
    (whatever the CPU's default); 'bf16' asks for bf16 (checked against the CPU first).
    """
    require()
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    check_precision(precision)
    if hint not in HINTS:
        raise ValueError(f"hint {hint!r}: choose one of {', '.join(HINTS)}")
    core = ov.Core()
    label = "the model"
    if not isinstance(model, ov.Model):
        path = Path(model)
        if not path.is_file():
            raise FocalinferError(f"{path}: model file not found; check the path (or run export first)")
        label = str(path)
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise FocalinferError(f"{path}: OpenVINO cannot read it ({first_line(e)}); re-export the model") from None
    if batch_size is not None and model.inputs[0].get_partial_shape()[0].is_dynamic:
        shape = model.inputs[0].get_partial_shape()
        shape[0] = batch_size
        model.reshape({model.inputs[0]: shape})
    config = {
        hints.inference_precision: ov.Type.bf16 if precision == "bf16" else ov.Type.f32,
        hints.performance_mode: getattr(hints.PerformanceMode, hint),
        props.inference_num_threads: threads or cpu_count(),
    }
    try:
        return core.compile_model(model, "CPU", config)
    except Exception as e:
        raise FocalinferError(f"{label}: OpenVINO cannot compile it for CPU ({first_line(e)})") from None


def _numpy_dtype(element_type) -> np.dtype:
    try:
        return np.dtype(element_type.to_dtype())
    except (AttributeError, TypeError):
        raise FocalinferError(f"OpenVINO tensor type {element_type} has no numpy equivalent") from None


def _tensor_spec(port) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), shape, _numpy_dtype(port.get_element_type()))


class OpenVinoRunner(Runner):
    """An ONNX on OpenVINO's CPU plugin, one compiled model per batch size fed."""

    backend = "openvino"

    def __init__(self, model_file: str | Path, threads: int | None = None, *, precision: str = "fp32",
                 hint: str = DEFAULT_HINT):
        require()
        import openvino as ov

        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise FocalinferError(f"{model_file}: model file not found; check the path (or run export first)")
        check_precision(precision)
        self.threads, self.precision, self.hint = threads, precision, hint
        try:
            self._model = ov.Core().read_model(str(self.model_file))
        except Exception as e:
            raise FocalinferError(f"{model_file}: OpenVINO cannot read it ({first_line(e)}); re-export the model") from None
        self._input = _tensor_spec(self.single_input(model_file, list(self._model.inputs)))
        self._outputs = [_tensor_spec(o) for o in self._model.outputs]
        self._requests: dict[int, object] = {}

    def request(self, batch_size: int):
        """The infer request compiled for ``batch_size`` (compiled on first use)."""
        if batch_size not in self._requests:
            static = self._input.static_batch
            model = self._model.clone()
            compiled = compile_model(model, self.threads, batch_size=None if static else batch_size,
                                     precision=self.precision, hint=self.hint)
            self._requests[batch_size] = compiled.create_infer_request()
        return self._requests[batch_size]

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        request = self.request(len(batch))
        request.infer({0: batch})
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self._outputs))]

    def close(self) -> None:
        self._requests = {}
