"""The backend layer: one runner interface, one module per runtime, one table of which runs what.

- ``base``: :class:`Runner`, :class:`TensorSpec`;
- ``onnxrt``: the only onnxruntime session builder (:func:`make_session`) and its runner;
- ``openvino``: the only OpenVINO model compiler (:func:`compile_model`, fp32 forced) and its runner;
- ``auto``: ``--backend auto`` for an .onnx: the CPU backend and micro-batch measured fastest here;
- ``torch``: the PyTorch eager runner (the reference);
- ``ais_bench``: .om files through ais_bench's API or command line;
- ``table``: model file → backend, :func:`open_runner`.
"""

from focalinfer.backend.base import MicroBatchRunner, Runner, TensorSpec
from focalinfer.backend.table import BACKENDS, BACKENDS_BY_SUFFIX, open_runner, plan_backend, resolve_backend

__all__ = ["BACKENDS", "BACKENDS_BY_SUFFIX", "MicroBatchRunner", "Runner", "TensorSpec", "open_runner",
           "plan_backend", "resolve_backend"]
