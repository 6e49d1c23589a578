"""The MAC counter on graphs with known MACs and on an exported model."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from focalinfer.bench.macs import count_macs
from tinynet import TINY_MACS


def _model(nodes, inputs, outputs, initializers, opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _weights(name, *shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def test_macs_of_a_grouped_strided_conv():
    # 2 × 16 × 32 × 32 input, 8 groups, 3×3 stride 2 pad 1 → 2 × 24 × 16 × 16 output.
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=8, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weights("w", 24, 2, 3, 3)],
    )
    macs = count_macs(model, batch_size=2)
    assert macs.total == 2 * 24 * 16 * 16 * (16 // 8) * 9
    assert macs.per_image == 24 * 16 * 16 * 2 * 9
    assert macs.nodes == {"Conv": 1} and macs.shape_source == "onnx"


def test_macs_of_a_batched_matmul_and_a_transposed_gemm():
    # MatMul [b, 5, 7, 11] @ [11, 13] and Gemm(transA) [6, 4]^T @ [6, 9] → 4 × 9.
    model = _model(
        [helper.make_node("MatMul", ["a", "w"], ["m"]),
         helper.make_node("Gemm", ["g", "v"], ["o"], transA=1)],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 5, 7, 11]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, [6, 4])],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        [_weights("w", 11, 13), _weights("v", 6, 9)],
    )
    macs = count_macs(model, batch_size=3)
    assert macs.by_op == {"MatMul": 3 * 5 * 7 * 11 * 13, "Gemm": 4 * 9 * 6}


def test_macs_fall_back_to_measured_shapes_when_inference_cannot_see_through_an_op():
    # ONNX shape inference does not know com.microsoft.Gelu, so the MatMul's input shape is
    # unknown statically; the counter measures it by running the graph.
    model = _model(
        [helper.make_node("Gelu", ["x"], ["h"], domain="com.microsoft"),
         helper.make_node("MatMul", ["h", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weights("w", 12, 7)],
    )
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    macs = count_macs(model, batch_size=4)
    assert macs.shape_source == "onnxruntime"
    assert macs.total == 4 * 10 * 12 * 7


def test_macs_of_an_exported_model_match_its_layers(tiny_onnx):
    path, _ = tiny_onnx
    assert count_macs(path, batch_size=1).total == TINY_MACS
    assert count_macs(path, batch_size=5).total == 5 * TINY_MACS


def test_each_node_is_counted_once_under_the_kind_its_kernel_runs_as():
    # dense Conv 4→8 3×3 and depthwise 3×3 on 8 channels over 6×6; tokens (36 × 8) @ W, @ Transpose(V)
    # (folded to a constant by onnxruntime), @ an overridable initializer (a graph input: not
    # constant), token · tokenᵀ, and a Gemm head.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 6, 6])
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
         helper.make_node("Conv", ["c", "dw"], ["d"], group=8, kernel_shape=[3, 3], pads=[1] * 4),
         helper.make_node("Reshape", ["d", "shape"], ["r"]),
         helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["t", "p"], ["m1"]),
         helper.make_node("Transpose", ["v"], ["vt"]),
         helper.make_node("MatMul", ["m1", "vt"], ["m2"]),
         helper.make_node("MatMul", ["m2", "u"], ["m3"]),
         helper.make_node("Transpose", ["m3"], ["m3t"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["m3", "m3t"], ["a"]),
         helper.make_node("ReduceMean", ["m3"], ["pooled"], axes=[1], keepdims=0),
         helper.make_node("Gemm", ["pooled", "h"], ["y"], transB=1)],
        [x, helper.make_tensor_value_info("u", TensorProto.FLOAT, [8, 8])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weights("w", 8, 4, 3, 3), _weights("dw", 8, 1, 3, 3), _weights("p", 8, 8), _weights("v", 8, 8),
         _weights("u", 8, 8), _weights("h", 10, 8),
         numpy_helper.from_array(np.array([0, 8, 36], np.int64), "shape")],
    )
    macs = count_macs(model, batch_size=2)
    assert macs.by_kind == {"conv": 2 * 8 * 36 * 4 * 9, "depthwise conv": 2 * 8 * 36 * 9,
                            "weights": 2 * (2 * 36 * 8 * 8) + 2 * 10 * 8, "activations": 2 * 36 * 8 * 8 + 2 * 36 * 36 * 8}
    assert macs.nodes_by_kind == {"conv": 1, "depthwise conv": 1, "weights": 3, "activations": 2}
    assert sum(macs.by_kind.values()) == macs.total
