"""Tiny graphs with planted fp16 hazards, and a preprocess-style folder of inputs for them.

Every graph takes a float32 NCHW image ``image`` [N, 3, 4, 4] and returns 10 logits ``class``;
the hazards are the ones the precision issue names (LayerNorm variance, a constant beyond 65,504,
attention logits beyond 65,504) plus one the range lint cannot see (cancellation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from focalinfer.records import Manifest

SHAPE = (3, 4, 4)
FEATURES = 48


class Graph:
    """Nodes and initializers collected while a test graph is written; node names are explicit."""

    def __init__(self, seed: int = 0):
        self.nodes, self.inits = [], []
        self.rng = np.random.default_rng(seed)

    def const(self, name: str, values) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(values, np.float32), name))
        return name

    def int64(self, name: str, values) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def weight(self, name: str, shape, scale: float = 1.0) -> str:
        return self.const(name, self.rng.standard_normal(shape) * scale / np.sqrt(shape[0]))

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def features(self) -> str:
        """image [N, 3, 4, 4] → [N, 48]."""
        return self.op("Flatten", ["image"], "flatten", axis=1)

    def layernorm(self, x: str, prefix: str, width: int, eps: float = 1e-5) -> str:
        """The decomposed LayerNorm torch's exporter writes (opset 11)."""
        mean = self.op("ReduceMean", [x], f"{prefix}/ReduceMean", axes=[-1])
        centred = self.op("Sub", [x, mean], f"{prefix}/Sub")
        square = self.op("Pow", [centred, self.const(f"{prefix}.two", 2.0)], f"{prefix}/Pow")
        var = self.op("ReduceMean", [square], f"{prefix}/ReduceMean_1", axes=[-1])
        shifted = self.op("Add", [var, self.const(f"{prefix}.eps", eps)], f"{prefix}/Add")
        std = self.op("Sqrt", [shifted], f"{prefix}/Sqrt")
        normed = self.op("Div", [centred, std], f"{prefix}/Div")
        scaled = self.op("Mul", [normed, self.const(f"{prefix}.weight", 1 + 0.1 * self.rng.standard_normal(width))],
                         f"{prefix}/Mul")
        return self.op("Add", [scaled, self.const(f"{prefix}.bias", self.rng.standard_normal(width))], f"{prefix}/Add_1")

    def head(self, x: str, width: int) -> str:
        gemm = self.op("MatMul", [x, self.weight("head.weight", (width, 10))], "head/MatMul")
        return self.op("Add", [gemm, self.const("head.bias", 0.1 * self.rng.standard_normal(10))], "class")

    def model(self, batch="batch") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "planted",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, *SHAPE])],
            [helper.make_tensor_value_info("class", TensorProto.FLOAT, [batch, 10])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
        onnx.checker.check_model(model)
        return model


def clean_net() -> onnx.ModelProto:
    """MatMul → LayerNorm → Erf-GELU → MatMul with activations of order 1: fp16 is safe."""
    g = Graph()
    h = g.op("MatMul", [g.features(), g.weight("fc1.weight", (FEATURES, 32))], "fc1/MatMul")
    h = g.layernorm(h, "norm", 32)
    half = g.op("Div", [h, g.const("gelu.sqrt2", np.sqrt(2.0))], "gelu/Div")
    erf = g.op("Erf", [half], "gelu/Erf")
    one = g.op("Add", [erf, g.const("gelu.one", 1.0)], "gelu/Add")
    gelu = g.op("Mul", [g.op("Mul", [h, one], "gelu/Mul"), g.const("gelu.half", 0.5)], "gelu/Mul_1")
    g.head(gelu, 32)
    return g.model()


def layernorm_overflow_net() -> onnx.ModelProto:
    """Activations of a few hundred into a LayerNorm: its Pow and variance pass 65,504."""
    g = Graph()
    h = g.op("MatMul", [g.features(), g.weight("fc1.weight", (FEATURES, 32), scale=400.0)], "fc1/MatMul")
    g.head(g.layernorm(h, "norm", 32), 32)
    return g.model()


def constant_overflow_net() -> onnx.ModelProto:
    """A Div by 2e5 (beyond 65,504: fp16 saturates it, so the quotient is 3x too large)."""
    g = Graph()
    # |h| stays below 65,504; only the divisor does not fit.
    h = g.op("MatMul", [g.features(), g.weight("fc1.weight", (FEATURES, 32), scale=8000.0)], "fc1/MatMul")
    h = g.op("Div", [h, g.const("scale.divisor", 2e5)], "scale/Div")
    h = g.op("Add", [h, g.const("scale.bias", 0.05 * g.rng.standard_normal(32))], "scale/Add")
    g.head(h, 32)
    return g.model()


def attention_overflow_net() -> onnx.ModelProto:
    """Self-attention over 16 tokens whose q·k logits pass 65,504 before the scale."""
    g = Graph()
    tokens = g.op("Transpose", [g.op("Reshape", ["image", g.int64("attn.shape", [0, 3, 16])], "attn/Reshape")],
                  "attn/Transpose", perm=[0, 2, 1])  # [N, 16, 3]
    x = g.op("MatMul", [tokens, g.weight("embed.weight", (3, 16), scale=3.0)], "embed/MatMul")
    q = g.op("MatMul", [x, g.weight("attn.q", (16, 16), scale=120.0)], "attn/q/MatMul")
    k = g.op("MatMul", [x, g.weight("attn.k", (16, 16), scale=120.0)], "attn/k/MatMul")
    v = g.op("MatMul", [x, g.weight("attn.v", (16, 16))], "attn/v/MatMul")
    kt = g.op("Transpose", [k], "attn/k/Transpose", perm=[0, 2, 1])
    logits = g.op("MatMul", [q, kt], "attn/qk/MatMul")
    scaled = g.op("Mul", [logits, g.const("attn.scale", 0.25)], "attn/Mul")
    weights = g.op("Softmax", [scaled], "attn/Softmax", axis=2)
    mixed = g.op("MatMul", [weights, v], "attn/av/MatMul")
    pooled = g.op("ReduceMean", [mixed], "pool/ReduceMean", axes=[1], keepdims=0)  # [N, 16]
    g.head(pooled, 16)
    return g.model()


def cancellation_net() -> onnx.ModelProto:
    """x + 3000 − 3000: fp16 keeps ~2 bits of x there. No range is exceeded; only bisection finds it."""
    g = Graph()
    h = g.op("MatMul", [g.features(), g.weight("fc1.weight", (FEATURES, 32))], "fc1/MatMul")
    h = g.op("Relu", [h], "fc1/Relu")
    for i in range(6):  # harmless nodes around the culprit, for the bisection to clear
        h = g.op("Mul", [h, g.const(f"s{i}.scale", 1.0 + 0.01 * i)], f"s{i}/Mul")
    shifted = g.op("Add", [h, g.const("shift.up", 3000.0)], "shift/Add")
    h = g.op("Sub", [shifted, g.const("shift.down", 3000.0)], "shift/Sub")
    for i in range(6, 10):
        h = g.op("Mul", [h, g.const(f"s{i}.scale", 1.0 + 0.01 * i)], f"s{i}/Mul")
    g.head(h, 32)
    return g.model()


def write_inputs(folder: Path, count: int, seed: int = 1, scale: float = 1.0) -> Path:
    """``count`` float32 NCHW .bin files and a preprocess manifest describing them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        name = f"img_{i:03d}"
        (rng.standard_normal((1, *SHAPE)) * scale).astype(np.float32).tofile(folder / f"{name}.bin")
        files.append({"source": f"{name}.JPEG", "bin": f"{name}.bin"})
    Manifest(model="planted", preset="official", transform={}, shape=[1, *SHAPE],
             bytes_per_file=4 * int(np.prod(SHAPE)), files=files).write(folder)
    return folder


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path
