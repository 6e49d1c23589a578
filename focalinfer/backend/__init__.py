"""The backend layer: one runner interface, one module per runtime, one table of which runs what.

- ``base``: :class:`Runner`, :class:`TensorSpec`;
- ``onnxrt``: the only onnxruntime session builder (:func:`make_session`) and its runner;
- ``openvino``: the only OpenVINO model compiler (:func:`compile_model`, fp32 forced) and its runner;
- ``auto``: ``--backend auto`` for an .onnx: the CPU backend and micro-batch measured fastest here;
- ``torch``: the PyTorch eager runner (the reference);
- ``ais_bench``: .om files through ais_bench's API or command line;
- ``openers``: :func:`open_runner`, the pure factory by backend name, and :class:`RunnerSpec`;
- ``table``: model file → backends; :func:`plan_backend` checks and resolves a backend once.
"""

from focalinfer.backend.base import MicroBatchRunner, Runner, TensorSpec
from focalinfer.backend.openers import RunnerSpec, open_runner, open_spec
from focalinfer.backend.table import BACKENDS, BACKENDS_BY_SUFFIX, check_backend, decide_backend, plan_backend, resolve_backend

__all__ = ["BACKENDS", "BACKENDS_BY_SUFFIX", "MicroBatchRunner", "Runner", "RunnerSpec", "TensorSpec",
           "check_backend", "decide_backend", "open_runner", "open_spec", "plan_backend", "resolve_backend"]
