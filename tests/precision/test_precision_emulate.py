"""The fp16 emulator, op type by op type, against a direct numpy fp16 computation.

Reference rule (docs/precision.md): inputs and weights stored as fp16 (round to nearest even,
saturating at ±65,504), the op computed on those values (numpy float16 arithmetic, or fp32 where
the NPU accumulates wider: Cube ops, reductions), the result stored as fp16 with saturation.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from focalinfer.backend.onnxrt import make_session
from focalinfer.precision.emulate import (CUBE_OPS, FP16, FP16_MAX, FP32, analyse, emulate, precision_plan,
                                          round_fp16)

RNG = np.random.default_rng(7)


def saturate(values) -> np.ndarray:
    """numpy's fp16 gives inf on overflow; the 310P saturates to ±65,504."""
    values = np.asarray(values, np.float16)
    return np.where(np.isinf(values), np.sign(values) * np.float16(FP16_MAX), values).astype(np.float16)


def fp16(values) -> np.ndarray:
    """Store values as fp16 on the 310P."""
    return saturate(np.asarray(values, np.float32).astype(np.float16))


def single_node(op_type, inputs: dict, weights: dict, out_shape, opset=13, **attrs):
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, v.shape) for n, v in inputs.items()]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in weights.items()]
    node = helper.make_node(op_type, list(inputs) + list(weights), ["y"], name=f"the_{op_type}", **attrs)
    graph = helper.make_graph([node], "one", graph_inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model, feeds, optimization="all"):
    return make_session(model, optimization=optimization).run(None, feeds)[0]


def run_emulated(model, feeds, mode="force_fp16", keep=(), optimization="all"):
    info = analyse(model)
    return run(emulate(info, mode, info.indices(keep)), feeds, optimization)


def ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in fp16 steps between two arrays of fp16 values."""
    def ordinal(x):
        bits = np.asarray(x, np.float16).view(np.int16).astype(np.int32)
        return np.where(bits < 0, -(bits & 0x7FFF), bits)
    return np.abs(ordinal(a) - ordinal(b))


def wide(shape, scale=1.0):
    """Random values with more bits than fp16 holds."""
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


X = wide((4, 8), 30.0)
X[0, :3] = [60000.0, -61000.0, 1 + 2 ** -11]  # near the top, and a tie (rounds to even: 1.0)
W = wide((4, 8), 30.0)
W[0, :2] = [30000.0, -30000.0]  # sums beyond 65,504
POSITIVE = np.abs(X) + 0.5
x16, w16 = fp16(X).astype(np.float32), fp16(W).astype(np.float32)
erf = np.vectorize(math.erf)

# op type → (graph inputs, weights, attributes, reference from the fp16-stored values, exact?)
ELEMENTWISE = {
    "Add": ({"x": X}, {"w": W}, {}, lambda: np.add(fp16(X), fp16(W)), True),
    "Sub": ({"x": X}, {"w": W}, {}, lambda: np.subtract(fp16(X), fp16(W)), True),
    "Mul": ({"x": X}, {"w": W}, {}, lambda: np.multiply(fp16(X), fp16(W)), True),
    "Div": ({"x": X}, {"w": W + 100}, {}, lambda: np.divide(fp16(X), fp16(W + 100)), True),
    "Pow": ({"x": X}, {"two": np.float32(2.0)}, {}, lambda: np.power(fp16(X), np.float16(2)), True),
    "Sqrt": ({"x": POSITIVE}, {}, {}, lambda: np.sqrt(fp16(POSITIVE)), True),
    "Relu": ({"x": X}, {}, {}, lambda: np.maximum(fp16(X), np.float16(0)), True),
    "Exp": ({"x": X / 3}, {}, {}, lambda: np.exp(fp16(X / 3)), False),
    "Tanh": ({"x": X / 30}, {}, {}, lambda: np.tanh(fp16(X / 30)), False),
    "Sigmoid": ({"x": X / 10}, {}, {}, lambda: 1 / (1 + np.exp(-fp16(X / 10).astype(np.float32))), False),
    "Erf": ({"x": X / 30}, {}, {}, lambda: erf(fp16(X / 30).astype(np.float64)), False),
}


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE))
def test_elementwise_ops_match_numpy_fp16(op_type):
    inputs, weights, attrs, reference, exact = ELEMENTWISE[op_type]
    model = single_node(op_type, inputs, weights, list(X.shape), **attrs)
    got = run_emulated(model, inputs)
    want = saturate(reference())
    assert np.all(np.abs(got) <= FP16_MAX) and np.array_equal(got, got.astype(np.float16).astype(np.float32))
    distance = ulps_apart(got, want)
    if exact:  # one rounding of an exactly computed fp32 result: bit for bit
        assert distance.max() == 0, (got, want)
    else:  # transcendental kernels differ by a few fp32 ulps, which can tip one fp16 rounding
        assert distance.max() <= 1 and (distance == 0).mean() >= 0.9
    # ... and the emulation is not plain fp32:
    assert not np.array_equal(got, run(model, inputs))


def test_overflow_saturates_instead_of_inf():
    got = run_emulated(single_node("Add", {"x": X}, {"w": W}, list(X.shape)), {"x": X})
    assert got[0, 0] == FP16_MAX and got[0, 1] == -FP16_MAX


REDUCTIONS = {
    "ReduceMean": ({"axes": [-1]}, lambda v: v.mean(axis=-1, keepdims=True)),
    "ReduceSum": ({"axes": [-1]}, lambda v: v.sum(axis=-1, keepdims=True)),
    "Softmax": ({"axis": -1}, lambda v: np.exp(v - v.max(-1, keepdims=True)) / np.exp(v - v.max(-1, keepdims=True)).sum(-1, keepdims=True)),
}


@pytest.mark.parametrize("op_type", sorted(REDUCTIONS))
def test_reductions_accumulate_in_fp32_and_store_fp16(op_type):
    attrs, reference = REDUCTIONS[op_type]
    x = X / 10 if op_type == "Softmax" else X
    model = single_node(op_type, {"x": x}, {}, None, opset=11, **attrs)
    got = run_emulated(model, {"x": x})
    want = saturate(reference(fp16(x).astype(np.float64)).astype(np.float32))
    assert ulps_apart(got, want).max() <= 1 and (ulps_apart(got, want) == 0).mean() >= 0.9


def conv2d(x, w, b):
    n, c, h, wd = x.shape
    k = w.shape[2]
    out = np.zeros((n, w.shape[0], h - k + 1, wd - k + 1), np.float64)
    for i in range(h - k + 1):
        for j in range(wd - k + 1):
            out[:, :, i, j] = np.tensordot(x[:, :, i:i + k, j:j + k], w, axes=([1, 2, 3], [1, 2, 3]))
    return out + b[None, :, None, None]


def loud(shape, scale):
    """``wide`` values whose first row is 30x larger: outputs from it pass 65,504."""
    values = wide(shape, scale)
    values.reshape(shape[0], -1)[0] *= 30
    return values


CUBE = {
    "MatMul": ({"x": loud((2, 3, 8), 40)}, {"w": wide((8, 5), 40)}, {},
               lambda x, w: x @ w),
    "Gemm": ({"x": loud((3, 8), 40)}, {"w": wide((5, 8), 40), "c": wide((5,), 40)}, {"transB": 1},
             lambda x, w, c: x @ w.T + c),
    "Conv": ({"x": wide((1, 3, 5, 5), 40)}, {"w": loud((4, 3, 3, 3), 40), "b": wide((4,), 40)}, {},
             conv2d),
}


@pytest.mark.parametrize("op_type", sorted(CUBE))
def test_cube_ops_take_fp16_and_accumulate_wider(op_type):
    inputs, weights, attrs, reference = CUBE[op_type]
    values = [fp16(v).astype(np.float64) for v in list(inputs.values()) + list(weights.values())]
    want = saturate(reference(*values).astype(np.float32))
    model = single_node(op_type, inputs, weights, list(want.shape), **attrs)
    got = run_emulated(model, inputs)
    assert (np.abs(want) == FP16_MAX).any()  # the case includes saturated outputs
    assert ulps_apart(got, want).max() <= 1 and (ulps_apart(got, want) == 0).mean() >= 0.9
    assert not np.allclose(got, run(model, inputs), rtol=1e-6, atol=0)


def test_onnxruntime_keeps_the_roundings_at_every_optimisation_level():
    """The spec's case: x·300·300/1000 with x = 1 is 90 in fp32, 65.504 with fp16 saturation."""
    nodes = [helper.make_node("Mul", ["x", "a"], ["p"], name="m1"), helper.make_node("Mul", ["p", "a"], ["q"], name="m2"),
             helper.make_node("Div", ["q", "k"], ["y"], name="d")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(np.array([300.0], np.float32), "a"),
                               numpy_helper.from_array(np.array([1000.0], np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    feed = {"x": np.ones(1, np.float32)}
    assert run(model, feed)[0] == pytest.approx(90.0)
    for level in ("all", "extended", "basic", "none"):
        assert run_emulated(model, feed, optimization=level)[0] == np.float16(65.504)
    # m2 in fp32 stores 90,000, but an fp16 reader still gets it saturated; with the reader kept too, 90.
    assert run_emulated(model, feed, keep=["m2"])[0] == np.float16(65.504)
    assert run_emulated(model, feed, keep=["m2", "d"])[0] == pytest.approx(90.0)


def test_weights_round_to_nearest_even_and_saturate():
    values = np.array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000.0, -1e9, 1e-9, 0.1], np.float32)
    assert round_fp16(values).tolist() == [1.0, 1 + 2 ** -9, FP16_MAX, -FP16_MAX, 0.0, float(np.float16(0.1))]
    model = single_node("Mul", {"x": np.ones(6, np.float32)}, {"w": values}, [6])
    assert run_emulated(model, {"x": np.ones(6, np.float32)}).tolist() == round_fp16(values).tolist()


def test_data_movement_passes_fp16_values_without_new_roundings():
    g = [helper.make_node("Mul", ["x", "w"], ["m"], name="mul"),
         helper.make_node("Transpose", ["m"], ["t"], name="transpose", perm=[1, 0]),
         helper.make_node("Reshape", ["t", "shape"], ["y"], name="reshape")]
    graph = helper.make_graph(g, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32])],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(np.array([32], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    emulated = emulate(analyse(model), "force_fp16")
    casts = [n for n in emulated.graph.node if n.op_type == "Cast"]
    assert len(casts) == 4  # the input x before mul, and mul's output; nothing after the moves
    got = run(emulated, {"x": X})
    assert np.array_equal(got, saturate(np.multiply(fp16(X), fp16(W))).T.reshape(-1))


def test_graph_outputs_keep_their_names():
    model = single_node("Add", {"x": X}, {"w": W}, list(X.shape))
    emulated = emulate(analyse(model), "force_fp16")
    assert [o.name for o in emulated.graph.output] == ["y"] and [i.name for i in emulated.graph.input] == ["x"]
    onnx.checker.check_model(emulated)


def chain_model():
    """x → Conv → Add → Pow → MatMul-like Gemm: one Cube op at each end, vector ops between."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
        helper.make_node("Add", ["a", "b"], ["c"], name="add"),
        helper.make_node("Pow", ["c", "two"], ["d"], name="pow"),
        helper.make_node("Relu", ["d"], ["e"], name="relu"),
        helper.make_node("MatMul", ["e", "w2"], ["y"], name="mm2"),
    ]
    inits = [numpy_helper.from_array(wide((8, 8), 3), "w1"), numpy_helper.from_array(wide((8,), 3), "b"),
             numpy_helper.from_array(np.float32(2.0), "two"), numpy_helper.from_array(wide((8, 4), 3), "w2")]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_mode_tables():
    info = analyse(chain_model())
    names = [n.name for n in info.nodes]

    def plan(mode, keep=()):
        return dict(zip(names, precision_plan(info, mode, info.indices(keep))))

    assert set(plan("force_fp16").values()) == {FP16}
    cube_only = plan("allow_fp32_to_fp16")
    assert [n for n, p in cube_only.items() if p == FP16] == ["mm1", "mm2"]
    assert all(info.nodes[i].op_type in CUBE_OPS for i, p in enumerate(cube_only.values()) if p == FP16)
    forced = plan("force_fp32")
    assert forced["mm1"].inputs_fp16 and not forced["mm1"].outputs_fp16 and forced["add"] == FP32
    mixed = plan("allow_mix_precision")
    # add follows mm1 (fp16); pow is on the black list; relu follows pow (fp32); mm2 is white.
    assert (mixed["add"], mixed["pow"], mixed["relu"], mixed["mm2"]) == (FP16, FP32, FP32, FP16)
    assert plan("force_fp16", keep=["pow"])["pow"] == FP32


def test_kept_node_stays_fp32_and_its_fp16_reader_rounds_its_input():
    model = chain_model()
    x = wide((4, 8), 3)
    info = analyse(model)
    got = run(emulate(info, "force_fp16", info.indices(["add", "pow", "relu"])), {"x": x})
    a = fp16(fp16(x).astype(np.float64) @ fp16(numpy_helper.to_array(model.graph.initializer[0])).astype(np.float64))
    c = a.astype(np.float32) + numpy_helper.to_array(model.graph.initializer[1])  # fp32, unrounded bias
    e = np.maximum(c * c, 0)
    w2 = fp16(numpy_helper.to_array(model.graph.initializer[3])).astype(np.float64)
    want = saturate((fp16(e).astype(np.float64) @ w2).astype(np.float32))
    assert ulps_apart(got, want).max() <= 1


def test_allow_fp32_to_fp16_leaves_vector_ops_exact():
    model = single_node("Add", {"x": X}, {"w": W}, list(X.shape))
    assert np.array_equal(run_emulated(model, {"x": X}, mode="allow_fp32_to_fp16"), run(model, {"x": X}))
