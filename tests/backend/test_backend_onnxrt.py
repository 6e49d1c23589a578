"""The one onnxruntime session builder: its settings and its optimised-graph cache."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from focalinfer.backend import onnxrt
from focalinfer.errors import FocalinferError


def test_session_options_are_the_chosen_ones():
    import onnxruntime as ort

    options = onnxrt.session_options(threads=3)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.enable_cpu_mem_arena and options.enable_mem_pattern


def test_optimized_cache_is_reused_and_rebuilt_when_the_graph_changes(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    source = tmp_path / "m.onnx"
    source.write_bytes(path.read_bytes())
    cache = tmp_path / "m.opt.onnx"
    x = np.ones((2, 3, 32, 32), np.float32)
    first = onnxrt.make_session(source, threads=1, optimized_cache=cache).run(None, {"image": x})[0]
    stamp = cache.stat().st_mtime_ns
    again = onnxrt.make_session(source, threads=1, optimized_cache=cache).run(None, {"image": x})[0]
    assert cache.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again, first, atol=1e-6)
    time.sleep(0.01)
    source.write_bytes(path.read_bytes())  # same bytes, new mtime: the key no longer matches
    onnxrt.make_session(source, threads=1, optimized_cache=cache)
    assert cache.stat().st_mtime_ns != stamp


def test_input_feed_shape_sets_the_dynamic_batch_and_refuses_other_dynamic_axes(tmp_path, tiny_onnx):
    session = onnxrt.make_session(tiny_onnx[0], threads=1)
    assert onnxrt.input_feed_shape(session, 4) == ("image", (4, 3, 32, 32))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "d.onnx"))
    with pytest.raises(FocalinferError, match="'x' has dynamic dimensions.*export with a fixed image size"):
        onnxrt.input_feed_shape(onnxrt.make_session(tmp_path / "d.onnx", threads=1), 4)
