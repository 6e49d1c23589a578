"""STAND-IN for ais_bench.infer.interface (tests only): an InferSession that runs the fake .om
(an ONNX written by the atc stand-in) with onnxruntime.

A dynamic-batch fake .om (gears in its `standin.dynamic_batch_size` metadata) reports -1 as its
batch, as aclruntime does, and runs only at a gear chosen with `set_dynamic_batchsize` or
`infer(..., mode='dymbatch')`; a static one refuses both. Feeds must have the input's dtype
(uint8 for an AIPP .om) and shape.

STANDIN_AIS_BENCH_GENERATION (read at import) picks the generation modelled: 2023 (default) has
`sumary()` / `reset_sumaryinfo()` and durations in `exec_time_list`; 2024 has `summary()` /
`reset_summaryinfo()`, (start, end) pairs, and refuses a model path with a character outside
[_A-Za-z0-9/.-], a symbolic link or a group/other-writable file. STANDIN_DEVICE_MS makes the device
report that many ms per run (as a real NPU reports its own time, unrelated to the host's clock);
STANDIN_NO_DEVICE_TIMES=1 makes it report none. With `STANDIN_SESSIONS` set, each session appends
the device it was given, the devices visible to it (`ASCEND_RT_VISIBLE_DEVICES`, which Ray sets for
an actor holding NPUs) and its pid as a JSON line.
"""

import json
import os
import re
import stat
import time

import numpy as np

DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
          "tensor(int64)": "int64", "tensor(int32)": "int32"}
NOT_DYNAMIC = "[STANDIN ais_bench] the dynamic_batch_size parameter is not specified for model conversion"
GENERATION = os.environ.get("STANDIN_AIS_BENCH_GENERATION", "2023")
if GENERATION not in ("2023", "2024"):
    raise RuntimeError(f"[STANDIN ais_bench] STANDIN_AIS_BENCH_GENERATION={GENERATION!r}: 2023 or 2024")
_ILLEGAL = re.compile(r"[^_A-Za-z0-9/.-]")


def illegal_path(path, read):
    """Why the 2024 generation's path check refuses ``path``, or None (2023 refuses nothing)."""
    if GENERATION != "2024":
        return None
    if _ILLEGAL.search(path):
        return "contains illegal characters"
    if os.path.islink(path):
        return "is a soft link, not supported"
    if read and os.path.exists(path) and os.stat(path).st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is group writable, or is others writable"
    return None


class _Desc:
    def __init__(self, node):
        self.name = node.name
        self.shape = [d if isinstance(d, int) else -1 for d in node.shape]
        self.dtype = np.dtype(DTYPES[node.type])
        self.datatype = f"dtype.{self.dtype.name}"
        self.realsize = int(np.prod([max(d, 1) for d in self.shape])) * self.dtype.itemsize


class _Summary:
    def __init__(self, times):
        self.exec_time_list = list(times)


class _Session:
    def __init__(self, device_id, model_path, acl_json_path=None, debug=False, loop=1):
        import onnxruntime as ort

        problem = illegal_path(str(model_path), read=True)
        if problem:
            raise RuntimeError(f"om path:{model_path} is illegal ({problem}). Please check.")
        if not isinstance(device_id, int) or not 0 <= device_id <= 255:
            raise RuntimeError(f"[STANDIN ais_bench] bad device id {device_id!r}")
        if not str(model_path).endswith(".om"):
            raise RuntimeError(f"[STANDIN ais_bench] {model_path} is not an .om")
        if os.environ.get("STANDIN_SESSIONS"):
            with open(os.environ["STANDIN_SESSIONS"], "a") as f:
                f.write(json.dumps({"tool": "ais_bench.InferSession", "device_id": device_id, "pid": os.getpid(),
                                    "visible_devices": os.environ.get("ASCEND_RT_VISIBLE_DEVICES")}) + "\n")
        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        gears = self.session.get_modelmeta().custom_metadata_map.get("standin.dynamic_batch_size")
        self.gears = [int(g) for g in gears.split(",")] if gears else []
        self.dym_batch = None
        self.loop = loop
        self._times = []

    def get_inputs(self):
        return [_Desc(n) for n in self.session.get_inputs()]

    def get_outputs(self):
        return [_Desc(n) for n in self.session.get_outputs()]

    def set_staticbatch(self):
        self.dym_batch = None

    def set_dynamic_batchsize(self, batch):
        if not self.gears:
            raise RuntimeError(NOT_DYNAMIC)
        if int(batch) not in self.gears:
            raise RuntimeError(f"[STANDIN ais_bench] batch {batch} is not one of the model's gears {self.gears}")
        self.dym_batch = int(batch)

    def infer(self, feeds, mode="static", custom_sizes=100000):
        (desc,) = self.get_inputs()
        (feed,) = feeds
        if mode == "dymbatch":
            self.set_dynamic_batchsize(feed.shape[0])  # what the real API's dymbatch mode does
        elif mode == "static":
            if self.gears:
                raise RuntimeError("[STANDIN ais_bench] a dynamic-batch model needs mode='dymbatch'")
        else:
            raise RuntimeError(f"[STANDIN ais_bench] mode {mode} not supported by the stand-in")
        want = [self.dym_batch if self.gears else desc.shape[0]] + desc.shape[1:]
        if list(feed.shape) != want or feed.dtype != desc.dtype:
            raise RuntimeError(f"[STANDIN ais_bench] feed {feed.shape} {feed.dtype} != model input {want} {desc.dtype}")
        for _ in range(self.loop):
            start = time.perf_counter() * 1000
            outputs = self.session.run(None, {desc.name: feed})
            end = time.perf_counter() * 1000
            if os.environ.get("STANDIN_DEVICE_MS"):
                end = start + float(os.environ["STANDIN_DEVICE_MS"])
            if not os.environ.get("STANDIN_NO_DEVICE_TIMES"):
                self._times.append((start, end))
        return outputs

    def finalize(self):
        self.session = None


class Session2023(_Session):
    def sumary(self):
        return _Summary(end - start for start, end in self._times)

    def reset_sumaryinfo(self):
        self._times = []


class Session2024(_Session):
    def summary(self):
        return _Summary(self._times)

    def reset_summaryinfo(self):
        self._times = []


InferSession = Session2024 if GENERATION == "2024" else Session2023


def durations_ms(session):
    """The session's device times as durations, in either generation's form."""
    if GENERATION == "2024":
        return [end - start for start, end in session.summary().exec_time_list]
    return list(session.sumary().exec_time_list)


def reset_times(session):
    if GENERATION == "2024":
        session.reset_summaryinfo()
    else:
        session.reset_sumaryinfo()
