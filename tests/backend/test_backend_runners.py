"""One contract for every runner (after Polygraphy's tests/backend/base/test_runner.py): the same
checks, parametrised over each backend's runner, on the tiny classifier of tests/tinynet.py."""

from __future__ import annotations

import numpy as np
import pytest

from focalinfer.backend import MicroBatchRunner, Runner, open_runner
from focalinfer.backend.torch import EagerRunner

RUNNERS = ("onnxruntime", "openvino", "micro-batch", "eager", "ais_bench-2023", "ais_bench-2024")


@pytest.fixture(params=RUNNERS)
def runner(request, tiny_onnx, tmp_path, monkeypatch) -> Runner:
    path, model = tiny_onnx
    kind = request.param
    if kind == "eager":
        made = EagerRunner(model, input_size=32, num_classes=10)
    elif kind == "micro-batch":
        made = open_runner(path, "onnxruntime", threads=1, micro_batch=2)
        assert isinstance(made, MicroBatchRunner)
    elif kind.startswith("ais_bench"):
        _standin_api(monkeypatch, kind.partition("-")[2])
        made = _ais_bench_runner(path, tmp_path)
    else:
        made = open_runner(path, kind, threads=1)
    yield made
    made.close()
    _forget_standin()


def _standin_api(monkeypatch, generation: str) -> None:
    """conftest's standin_api for one generation (that fixture is parametrised over both)."""
    from conftest import STANDINS
    from focalinfer.backend import ais_bench

    monkeypatch.setenv("STANDIN_AIS_BENCH_GENERATION", generation)
    monkeypatch.syspath_prepend(str(STANDINS))
    ais_bench.forget_generations()
    _forget_standin()


def _forget_standin() -> None:
    import sys

    for name in [m for m in sys.modules if m == "ais_bench" or m.startswith("ais_bench.")]:
        del sys.modules[name]


def _ais_bench_runner(path, tmp_path) -> Runner:
    """The ais_bench stand-in's InferSession (conftest's standin_api) on a '.om' that is the tiny ONNX
    at a static batch of 3."""
    import onnx

    graph = onnx.load(str(path))
    for value in list(graph.graph.input) + list(graph.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 3
    om = tmp_path / "tiny_bs3.om"
    onnx.save(graph, str(om))
    return open_runner(om, "ais_bench")


def _batch(runner: Runner, size: int) -> np.ndarray:
    spec = runner.input_spec()
    return np.random.default_rng(size).standard_normal((size,) + tuple(spec.shape[1:])).astype(spec.dtype)


def test_specs_describe_one_image_input_and_the_logits(runner):
    spec = runner.input_spec()
    assert spec.shape[1:] == (3, 32, 32) and spec.dtype == np.float32
    assert spec.static_batch in (None, 3)
    outputs = runner.output_specs()
    assert len(outputs) == 1 and outputs[0].shape[-1] == 10


def test_infer_returns_one_row_per_image_in_the_output_dtype(runner):
    size = runner.input_spec().static_batch or 3
    outputs = runner.infer(_batch(runner, size))
    assert isinstance(outputs, list) and len(outputs) == 1
    assert outputs[0].shape == (size, 10) and outputs[0].dtype == np.float32


def test_the_base_class_times_every_call_and_reset_forgets(runner):
    size = runner.input_spec().static_batch or 3
    batch = _batch(runner, size)
    runner.infer(batch)
    runner.reset_times()
    assert runner.compute_times_ms == []
    for _ in range(3):
        runner.infer(batch)
    times = runner.compute_times_ms
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert len(runner.wall_times_ms) == 3


def test_the_same_input_gives_the_same_logits_and_close_is_safe(runner):
    size = runner.input_spec().static_batch or 3
    batch = _batch(runner, size)
    first, second = runner.infer(batch)[0], runner.infer(batch)[0]
    assert np.array_equal(first, second)
    with runner:
        pass  # the context manager closes; a second close must not fail
    runner.close()


def test_runners_agree_within_the_parity_bound(tiny_onnx, tmp_path, standin_api):
    from focalinfer.metrics.logits import parity_bound

    path, model = tiny_onnx
    batch = np.random.default_rng(7).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with EagerRunner(model, input_size=32, num_classes=10) as eager:
        reference = eager.infer(batch)[0]
    bound = parity_bound(reference)
    opened = [open_runner(path, "onnxruntime", threads=1), open_runner(path, "openvino", threads=1),
              open_runner(path, "onnxruntime", threads=1, micro_batch=2), _ais_bench_runner(path, tmp_path)]
    for runner in opened:
        with runner:
            assert np.abs(runner.infer(batch)[0] - reference).max() <= bound, runner.backend
