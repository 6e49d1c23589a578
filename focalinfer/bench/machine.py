"""The machine a benchmark runs on: CPU, ISA, memory, library versions and fp32 GEMM rates."""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

def machine_info(threads: int) -> dict:
    import onnx
    import onnxruntime
    import torch

    from focalinfer.backend import openvino
    from focalinfer.machine import cpu_count, cpu_model

    return {
        "cpu": cpu_model(),
        "cpu_vector_isa": _vector_isa(),
        "cpus_usable": cpu_count(),
        "cpus_total": os.cpu_count(),
        "threads": threads,
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino.version(),
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "load_average_start": _load_average(),
    }


def _vector_isa() -> list[str]:
    """The SIMD extensions that decide the GEMM kernels (a bare 'AMD EPYC' says little)."""
    from focalinfer.machine import cpu_flags

    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    flags = cpu_flags()
    return [f for f in wanted if f in flags]


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def gemm_rates(n: int = 2048, repeats: int = 5, threads: int | None = None) -> dict:
    """Best-of-``repeats`` fp32 GFLOP/s of an n×n×n MatMul in torch, onnxruntime and OpenVINO (when
    installed), and numpy for reference.

    The highest of torch / onnxruntime / OpenVINO is the machine's compute limit: what a GEMM-bound
    model could reach at best on this CPU with the runtimes a user could pick.
    """
    import tempfile

    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from focalinfer.backend import openvino
    from focalinfer.backend.onnxrt import make_session

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "B")])
    flops = 2.0 * n ** 3
    with tempfile.TemporaryDirectory(prefix="focalinfer-gemm-") as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        session = make_session(path, threads or None)
        request = openvino.compile_model(path, threads or None).create_infer_request() if openvino.available() else None
    with torch.inference_mode():
        rates = {
            "torch_gflops": _best_rate(lambda: ta @ tb, flops, repeats),
            "onnxruntime_gflops": _best_rate(lambda: session.run(None, {"A": a}), flops, repeats),
        }
        if request is not None:
            rates["openvino_gflops"] = _best_rate(lambda: request.infer({0: a}), flops, repeats)
        numpy_rate = _best_rate(lambda: a @ b, flops, repeats)
    return {"n": n, "repeats": repeats, **rates, "numpy_gflops": numpy_rate, "limit_gflops": max(rates.values()),
            "limit_source": max(rates, key=rates.get).removesuffix("_gflops")}


def _best_rate(fn: Callable[[], object], flops: float, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(flops / best / 1e9, 1)
