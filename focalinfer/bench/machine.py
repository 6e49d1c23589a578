"""The machine a benchmark runs on: CPU, ISA, memory, library versions and fp32 GEMM rates."""

from __future__ import annotations

import contextlib
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
    import torch

    with gemm_runners(n, threads) as (runners, flops), torch.inference_mode():
        numpy_run = runners.pop("numpy")
        rates = {f"{name}_gflops": _best_rate(run, flops, repeats) for name, run in runners.items()}
        numpy_rate = _best_rate(numpy_run, flops, repeats)
    return {"n": n, "repeats": repeats, **rates, "numpy_gflops": numpy_rate, "limit_gflops": max(rates.values()),
            "limit_source": max(rates, key=rates.get).removesuffix("_gflops")}


@contextlib.contextmanager
def gemm_runners(n: int = 2048, threads: int | None = None):
    """({runtime: one n×n×n fp32 MatMul call}, its FLOPs) for torch, onnxruntime, OpenVINO (when
    installed) and numpy; the limit is the best of the first three."""
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
    with tempfile.TemporaryDirectory(prefix="focalinfer-gemm-") as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        session = make_session(path, threads or None)
        request = openvino.compile_model(path, threads or None).create_infer_request() if openvino.available() else None
    runners = {"torch": lambda: ta @ tb, "onnxruntime": lambda: session.run(None, {"A": a})}
    if request is not None:
        runners["openvino"] = lambda: request.infer({0: a})
    runners["numpy"] = lambda: a @ b
    yield runners, 2.0 * n ** 3


def _best_rate(fn: Callable[[], object], flops: float, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(flops / best / 1e9, 1)
