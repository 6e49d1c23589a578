"""Multiply-accumulates of an ONNX graph: Conv, ConvTranspose, MatMul and Gemm.

These ops carry nearly all the arithmetic of the classifiers here; element-wise ops, norms and
softmax are memory-bound and left out, so the count is the work a GEMM-bound machine must do.
Shapes come from ONNX shape inference with the batch fixed; tensors it cannot resolve are
measured by running the graph once in onnxruntime at that batch.

Each counted node also gets a kind, the grouping ``bench profile`` rates against its kernels' time
(:func:`node_kind`): the graph's node says what work there is, whatever kernels a CPU runs it as.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from focalinfer.backend.onnxrt import ORT_DTYPES, make_session

COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# The kinds of counted work bench/profile.py rates (ConvTranspose is counted but not rated).
KINDS = ("weights", "activations", "conv", "depthwise conv")


@dataclass
class MacCount:
    batch_size: int
    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)  # MACs per node_kind()
    nodes_by_kind: dict[str, int] = field(default_factory=dict)
    shape_source: str = "onnx"  # 'onnx' (static inference) or 'onnxruntime' (measured shapes)

    @property
    def per_image(self) -> float:
        return self.total / self.batch_size

    def as_dict(self) -> dict:
        return {**asdict(self), "per_image": self.per_image}


def count_macs(model: str | Path | onnx.ModelProto, batch_size: int = 1) -> MacCount:
    """MACs of one run of ``model`` at ``batch_size`` (a dynamic batch axis is fixed to it)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    model = _with_batch(model, batch_size)
    counted = [n for n in model.graph.node if n.op_type in COUNTED_OPS]
    needed = {name for n in counted for name in _operands(n)}
    shapes = _static_shapes(model)
    source = "onnx"
    missing = {name for name in needed if shapes.get(name) is None}
    if missing:
        shapes.update(_runtime_shapes(model, missing))
        source = "onnxruntime"
    constants = constant_tensors(model.graph, model.ir_version)
    by_op: Counter = Counter()
    nodes: Counter = Counter()
    by_kind: Counter = Counter()
    nodes_by_kind: Counter = Counter()
    for node in counted:
        macs = node_macs(node, shapes)
        by_op[node.op_type] += macs
        nodes[node.op_type] += 1
        kind = node_kind(node, constants)
        if kind:
            by_kind[kind] += macs
            nodes_by_kind[kind] += 1
    return MacCount(batch_size=batch_size, total=int(sum(by_op.values())), by_op=dict(by_op),
                    nodes=dict(nodes), by_kind=dict(by_kind), nodes_by_kind=dict(nodes_by_kind),
                    shape_source=source)


def node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """MACs of one counted node given the shapes of its inputs and output."""
    op = node.op_type
    if op == "Conv":
        # Every output element is a dot product over (Cin/group) × kernel window.
        return math.prod(shapes[node.output[0]]) * math.prod(shapes[node.input[1]][1:])
    if op == "ConvTranspose":
        # Every input element is scattered through a (Cout/group) × kernel window.
        return math.prod(shapes[node.input[0]]) * math.prod(shapes[node.input[1]][1:])
    if op == "MatMul":
        a = shapes[node.input[0]]
        return math.prod(shapes[node.output[0]]) * a[-1]
    if op == "Gemm":
        a = shapes[node.input[0]]
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return math.prod(shapes[node.output[0]]) * k
    raise ValueError(f"no MAC rule for {op}")


def node_kind(node: onnx.NodeProto, constants: set[str]) -> str | None:
    """What limits a counted node, as bench/profile.py's kernel_kind() tells it from a kernel:
    ``conv`` (group 1) or ``depthwise conv`` (grouped); ``weights`` for a Gemm or a MatMul with a
    constant operand (onnxruntime pre-packs it), ``activations`` for activation × activation."""
    if node.op_type == "Conv":
        group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
        return "conv" if group == 1 else "depthwise conv"
    if node.op_type in ("MatMul", "Gemm"):
        return "weights" if node.op_type == "Gemm" or constants & set(node.input[:2]) else "activations"
    return None


def constant_tensors(graph: onnx.GraphProto, ir_version: int) -> set[str]:
    """Tensors onnxruntime sees as constant: initializers (not those a caller may override, which
    graph inputs are from IR version 4 on), Constant outputs, and what is computed from them alone."""
    inputs = {value.name for value in graph.input} if ir_version >= 4 else set()
    constants = {t.name for t in graph.initializer} - inputs
    for node in graph.node:  # ONNX graphs are topologically sorted
        operands = [name for name in node.input if name]
        if node.op_type == "Constant" or (operands and all(name in constants for name in operands)):
            constants.update(node.output)
    return constants


def _operands(node: onnx.NodeProto) -> list[str]:
    """The tensors whose shapes a node's MACs depend on: data, weight, output."""
    return [node.input[0], node.input[1], node.output[0]]


def _with_batch(model: onnx.ModelProto, batch_size: int) -> onnx.ModelProto:
    """A copy whose graph inputs have no symbolic batch axis (shape inference needs numbers)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializers = {t.name for t in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch_size
    return fixed


def _dims(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference can fail on contrib ops; the runtime fallback covers it
        inferred = model
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...] | None] = {t.name: tuple(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.name not in shapes or shapes[value.name] is None:
            shapes[value.name] = _dims(value)
    for node in graph.node:  # weights kept as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            shapes[node.output[0]] = tuple(node.attribute[0].t.dims)
    return shapes


def _runtime_shapes(model: onnx.ModelProto, names: set[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``names`` measured by running the graph once on zeros."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    initializers = {t.name: t for t in probe.graph.initializer}
    shapes = {name: tuple(initializers[name].dims) for name in names if name in initializers}
    for name in sorted(names - outputs - set(shapes)):
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    # No graph rewriting, so every named tensor still exists when the graph runs.
    session = make_session(probe, optimization="none")
    feed = {}
    for value in session.get_inputs():
        dtype = ORT_DTYPES.get(value.type, np.float32)
        feed[value.name] = np.zeros([d if isinstance(d, int) else 1 for d in value.shape], dtype=dtype)
    names_out = [o.name for o in session.get_outputs()]
    for name, array in zip(names_out, session.run(names_out, feed)):
        if name in names:
            shapes[name] = tuple(array.shape)
    return shapes
