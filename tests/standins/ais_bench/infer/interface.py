"""STAND-IN for ais_bench.infer.interface (tests only): an InferSession that runs the fake .om
(an ONNX with a fixed batch, written by the atc stand-in) with onnxruntime."""

import time

import numpy as np


class _Desc:
    def __init__(self, node):
        self.name = node.name
        self.shape = [d if isinstance(d, int) else -1 for d in node.shape]
        self.datatype = "dtype.float32"
        self.realsize = int(np.prod([max(d, 1) for d in self.shape])) * 4


class _Summary:
    def __init__(self, times):
        self.exec_time_list = list(times)


class InferSession:
    def __init__(self, device_id, model_path, acl_json_path=None, debug=False, loop=1):
        import onnxruntime as ort

        if not isinstance(device_id, int) or not 0 <= device_id <= 255:
            raise RuntimeError(f"[STANDIN ais_bench] bad device id {device_id!r}")
        if not str(model_path).endswith(".om"):
            raise RuntimeError(f"[STANDIN ais_bench] {model_path} is not an .om")
        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.loop = loop
        self._times = []

    def get_inputs(self):
        return [_Desc(n) for n in self.session.get_inputs()]

    def get_outputs(self):
        return [_Desc(n) for n in self.session.get_outputs()]

    def infer(self, feeds, mode="static", custom_sizes=100000):
        if mode != "static":
            raise RuntimeError(f"[STANDIN ais_bench] mode {mode} not supported by the stand-in")
        (desc,) = self.get_inputs()
        (feed,) = feeds
        if list(feed.shape) != desc.shape or feed.dtype != np.float32:
            raise RuntimeError(f"[STANDIN ais_bench] feed {feed.shape} {feed.dtype} != model input {desc.shape}")
        for _ in range(self.loop):
            start = time.perf_counter()
            outputs = self.session.run(None, {desc.name: feed})
            self._times.append((time.perf_counter() - start) * 1000)
        return outputs

    def sumary(self):
        return _Summary(self._times)

    def reset_sumaryinfo(self):
        self._times = []

    def finalize(self):
        self.session = None
