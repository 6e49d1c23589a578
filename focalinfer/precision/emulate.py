"""Emulate ATC's fp16 on onnxruntime CPU: the fp32 graph with explicit fp16 rounding inserted.

Converting the model to an fp16 ONNX is not an emulation: onnxruntime's CPU provider has no fp16
kernel for most ops, inserts casts, runs fp32 and removes the casts between neighbours, so an
overflow disappears (docs/precision.md). Instead the graph stays fp32 and every value the NPU
would hold in fp16 is rounded explicitly with ``Clip(±65504) → Cast(fp16) → Cast(fp32)``:

- the outputs of each node that runs in fp16 (310P saturates: an overflow becomes ±65504);
- the float inputs of each fp16 node that are not fp16 values already (the graph input, a kept
  fp32 node's output, an initializer: ATC casts those before the node);
- nothing else: arithmetic between roundings stays fp32, as Cube units accumulate wider than
  they store.

Which nodes run in fp16 is a per-mode rule (:func:`precision_plan`); a keep-dtype list forces
nodes to fp32. Rounding is skipped where it cannot change a value: the output of a data-movement
op (Reshape, Transpose, Gather, …) whose inputs are fp16 values already is one too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from focalinfer.errors import FocalinferError

FP16_MAX = 65504.0
# Largest magnitude that rounds to zero in fp16 (half the smallest subnormal; ties go to even = 0).
FP16_FLUSH = 2.0 ** -25

MODES = ("force_fp16", "allow_fp32_to_fp16", "allow_mix_precision")
# ATC's fp32 fallbacks, emulated for the advice when no keep list passes, in the order advised
# (force_fp32 = cube_fp16in_fp32out; it is not a --mode choice).
ADVICE_MODES = ("allow_fp32_to_fp16", "force_fp32")

# Ops that run on the Cube unit (fp16 in every mode but must_keep_origin_dtype). Einsum becomes
# BatchMatMul in ATC.
CUBE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum"})
# Ops whose output on fp16 inputs is an fp16 value again (they move, select or compare values):
# rounding after them changes nothing, and keeping them in fp32 gains nothing.
EXACT_OPS = frozenset({
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout",
    "Gather", "GatherElements", "GatherND", "Slice", "Split", "Concat", "Expand", "Tile",
    "DepthToSpace", "SpaceToDepth", "Where", "Relu", "Neg", "Abs", "Max", "Min",
    "MaxPool", "GlobalMaxPool", "ReduceMax", "ReduceMin", "TopK",
})
# allow_mix_precision: ATC reads each op's precision_reduce flag from the installed CANN's
# ops-info files; the 310P files are not public. Assumed here (docs/precision.md): Cube ops are
# the white list; this black list, TensorFlow's auto-mixed-precision deny list (Exp, Log, Pow,
# Softmax, reductions) plus the rest of a LayerNorm's variance chain, stays fp32; every other op
# follows the precision of the op that feeds it.
MIX_BLACK_OPS = frozenset({
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum",
    "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "LayerNormalization",
})
# Float inputs that are parameters, not data: never rounded.
NON_DATA_INPUTS = {"Resize": {1, 2}, "Upsample": {1}, "Clip": {1, 2}}

_FLOAT = 1  # onnx.TensorProto.FLOAT
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16


@dataclass(frozen=True)
class NodeInfo:
    index: int
    name: str
    op_type: str
    float_inputs: tuple[tuple[int, str], ...]  # (input position, tensor name) of float data inputs
    float_outputs: tuple[str, ...]

    @property
    def is_candidate(self) -> bool:
        """A node whose precision matters: it computes float values (not only moves them)."""
        return bool(self.float_outputs) and self.op_type not in EXACT_OPS


@dataclass
class GraphInfo:
    """What the emulator and the search need to know about the fp32 graph, computed once."""

    model: object  # onnx.ModelProto, fp32, untouched
    nodes: list[NodeInfo]
    producer: dict[str, int]  # tensor → index of the node that writes it
    consumers: dict[str, list[int]]  # tensor → indices of the nodes that read it
    graph_inputs: list[str]
    initializers: dict[str, np.ndarray]  # float initializers and float Constant-node values
    opset: int
    ranks: dict[str, int]  # float tensor → rank, where shape inference knows it

    @property
    def candidates(self) -> list[int]:
        return [n.index for n in self.nodes if n.is_candidate]

    def names(self, indices: Iterable[int]) -> list[str]:
        return [self.nodes[i].name for i in sorted(indices)]

    def indices(self, names: Iterable[str]) -> set[int]:
        by_name = {n.name: n.index for n in self.nodes}
        return {by_name[name] for name in names}


def round_fp16(values: np.ndarray) -> np.ndarray:
    """What storing fp32 values as fp16 on the 310P gives: saturate at ±65504, round to nearest even."""
    values = np.asarray(values, np.float32)
    return np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16).astype(np.float32)


def analyse(model) -> GraphInfo:
    """Producers, consumers and float tensors of an fp32 ONNX (``onnx.ModelProto``)."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in graph.node for attr in node.attribute):
        raise FocalinferError("the ONNX has control-flow subgraphs (If/Loop/Scan); the precision emulator "
                              "handles flat graphs only (export with focalinfer export)")
    float_tensors, ranks = _float_tensors(model)
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer
                    if init.data_type == _FLOAT}
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant" and node.output[0] in float_tensors:
            initializers[node.output[0]] = numpy_helper.to_array(
                next(a.t for a in node.attribute if a.name == "value"))
        skip = NON_DATA_INPUTS.get(node.op_type, set())
        float_inputs = tuple((pos, name) for pos, name in enumerate(node.input)
                             if name and name in float_tensors and pos not in skip)
        float_outputs = tuple(name for name in node.output if name in float_tensors)
        if node.op_type == "Constant":
            float_outputs = ()  # a constant is an initializer in all but name
        nodes.append(NodeInfo(index, node.name, node.op_type, float_inputs, float_outputs))
        for name in node.output:
            producer[name] = index
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    init_names = {init.name for init in graph.initializer}
    graph_inputs = [i.name for i in graph.input if i.name not in init_names]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 11)
    return GraphInfo(model, nodes, producer, consumers, graph_inputs, initializers, opset, ranks)


def check_node_names(info: GraphInfo, source: str) -> None:
    """ATC's --keep_dtype names nodes: every float node needs a unique, non-empty name."""
    from collections import Counter

    counts = Counter(n.name for n in info.nodes if n.float_outputs)
    empty = counts.pop("", 0)
    dups = sorted(name for name, count in counts.items() if count > 1)
    if empty or dups:
        what = f"{empty} unnamed node(s)" if empty else f"duplicate node names ({', '.join(dups[:3])})"
        raise FocalinferError(f"{source}: {what}; ATC's --keep_dtype needs unique node names, "
                              "re-export with focalinfer export (or name the nodes)")


def _float_tensors(model) -> tuple[set[str], dict[str, int]]:
    """The fp32 tensors of the graph and the ranks known for them (types from onnx shape
    inference, rules for the rest)."""
    import onnx

    graph = model.graph
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    try:
        # On a weightless copy: only types and ranks matter, and the weights are large.
        values += list(onnx.shape_inference.infer_shapes(_without_weights(model), strict_mode=False).graph.value_info)
    except Exception:  # inference is only a source of types; the rules below cover the rest
        pass
    types: dict[str, int] = {init.name: init.data_type for init in graph.initializer}
    ranks: dict[str, int] = {}
    for value in values:
        types.setdefault(value.name, value.type.tensor_type.elem_type)
        if value.type.tensor_type.HasField("shape"):
            ranks.setdefault(value.name, len(value.type.tensor_type.shape.dim))
    for node in graph.node:
        for name in node.output:
            if types.get(name, 0) == 0:
                types[name] = _rule_type(node, types)
    floats = {name for name, t in types.items() if t == _FLOAT}
    return floats, {name: rank for name, rank in ranks.items() if name in floats}


_NON_FLOAT_OUTPUT_OPS = {"Shape", "Size", "ArgMax", "ArgMin", "NonZero", "Equal", "Less", "Greater",
                         "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf",
                         "TopK"}


def _rule_type(node, types: dict[str, int]) -> int:
    if node.op_type == "Cast":
        return next(a.i for a in node.attribute if a.name == "to")
    if node.op_type in _NON_FLOAT_OUTPUT_OPS:
        return 0
    return _FLOAT if any(types.get(name) == _FLOAT for name in node.input) else 0


def _without_weights(model):
    """``model`` with each initializer replaced by a graph input of the same type and shape."""
    from onnx import helper

    graph = model.graph
    known = {i.name for i in graph.input}
    inputs = list(graph.input) + [helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
                                  for init in graph.initializer if init.name not in known]
    light = helper.make_model(helper.make_graph(list(graph.node), graph.name, inputs, list(graph.output),
                                                value_info=list(graph.value_info)),
                              opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    return light


# --- which nodes run in fp16 ---------------------------------------------------------------


@dataclass(frozen=True)
class NodePrecision:
    inputs_fp16: bool  # its float inputs are cast to fp16 before it
    outputs_fp16: bool  # it stores its float outputs in fp16


FP16 = NodePrecision(True, True)
FP32 = NodePrecision(False, False)
CUBE_FP32_OUT = NodePrecision(True, False)  # force_fp32: fp16 in, fp32 out on the Cube


def precision_plan(info: GraphInfo, mode: str, keep: Iterable[int] = ()) -> list[NodePrecision]:
    """Per node, whether it runs in fp16 under ATC ``--precision_mode=mode`` with ``keep`` in fp32."""
    keep = set(keep)
    plan: list[NodePrecision] = []
    for node in info.nodes:
        if node.index in keep or not node.float_outputs:
            plan.append(FP32)
        elif mode == "force_fp16":
            plan.append(FP16)
        elif mode == "allow_fp32_to_fp16":
            plan.append(FP16 if node.op_type in CUBE_OPS else FP32)
        elif mode == "force_fp32":
            plan.append(CUBE_FP32_OUT if node.op_type in CUBE_OPS else FP32)
        elif mode == "allow_mix_precision":
            plan.append(_mix_precision(info, node, plan))
        else:
            raise ValueError(f"unknown precision mode {mode!r}")
    return plan


def _mix_precision(info: GraphInfo, node: NodeInfo, plan: list[NodePrecision]) -> NodePrecision:
    if node.op_type in CUBE_OPS:
        return FP16
    if node.op_type in MIX_BLACK_OPS:
        return FP32
    # Gray ops follow the node feeding their first computed input (graph inputs are fp32).
    for _, name in node.float_inputs:
        source = info.producer.get(name)
        if source is not None and info.nodes[source].op_type != "Constant":
            return FP16 if plan[source].outputs_fp16 else FP32
    return FP32


# --- the emulated graph --------------------------------------------------------------------


class WeightStore:
    """The float initializers, as originals and fp16-rounded copies, for the graphs built here.

    Without ``directory`` the tensors are inline (small graphs). With it, every tensor is written
    once to ``<directory>/weights.bin`` and each graph refers to it as external data, so a new
    candidate graph costs a small file instead of re-serialising the weights (Focal-fast-S: 250 MB).
    """

    FILE = "weights.bin"

    def __init__(self, info: GraphInfo, directory=None):
        from onnx import numpy_helper

        self.info = info
        self._tensors: dict[tuple[str, bool], object] = {}
        self.exact = {name for name, values in info.initializers.items() if _is_fp16_exact(values)}
        originals = [init for init in info.model.graph.initializer]
        if directory is None:
            for init in originals:
                self._tensors[(init.name, False)] = init
            return
        path = Path(directory) / self.FILE
        with open(path, "wb") as f:
            for init in originals:
                if init.name not in info.initializers or 4 * int(np.prod(init.dims)) < 4096:
                    # Shapes, indices and scalars stay inline: onnxruntime's shape inference reads them.
                    self._tensors[(init.name, False)] = init
                    continue
                values = numpy_helper.to_array(init)
                self._tensors[(init.name, False)] = self._external(f, init.name, values)
                if init.name in info.initializers and init.name not in self.exact:
                    self._tensors[(init.name, True)] = self._external(f, f"{init.name}__fp16", round_fp16(values))

    def _external(self, f, name: str, values: np.ndarray):
        import onnx
        from onnx import helper

        offset = -f.tell() % 4096  # page-aligned, so onnxruntime can map it
        f.write(b"\0" * offset)
        tensor = onnx.TensorProto(name=name, dims=list(values.shape),
                                  data_type=helper.np_dtype_to_tensor_dtype(values.dtype))
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self.FILE), ("offset", str(f.tell())), ("length", str(values.nbytes))):
            tensor.external_data.add(key=key, value=value)
        f.write(np.ascontiguousarray(values).tobytes())
        return tensor

    def tensor(self, name: str, rounded: bool = False):
        if rounded and (name, True) not in self._tensors:
            from onnx import numpy_helper

            self._tensors[(name, True)] = numpy_helper.from_array(round_fp16(self.info.initializers[name]),
                                                                  f"{name}__fp16")
        return self._tensors[(name, rounded)]


def emulate(info: GraphInfo, mode: str, keep: Iterable[int] = (), weights: WeightStore | None = None):
    """The emulated graph (``onnx.ModelProto``) of ``mode`` with the nodes in ``keep`` in fp32."""
    return build_model(info, precision_plan(info, mode, keep), weights)


def build_model(info: GraphInfo, plan: list[NodePrecision], weights: WeightStore | None = None,
                extra_nodes: Iterable = (), extra_outputs: Iterable = ()):
    """The graph with the roundings ``plan`` implies (plus probe nodes and outputs, for ranges.py)."""
    from onnx import helper

    weights = weights or WeightStore(info)
    nodes, rounded_inits = _rounded_nodes(info, plan, weights)
    nodes += list(extra_nodes)
    used = {name for node in nodes for name in node.input}
    initializers = [weights.tensor(init.name) for init in info.model.graph.initializer if init.name in used]
    initializers += [weights.tensor(name, rounded=True) for name in rounded_inits]
    initializers += _bounds() if "__fp16_max" in used else []
    source = info.model.graph
    graph = helper.make_graph(nodes, source.name, list(source.input), list(source.output) + list(extra_outputs),
                              initializers, value_info=list(source.value_info))
    model = helper.make_model(graph, opset_imports=list(info.model.opset_import))
    model.ir_version = info.model.ir_version
    return model


def _rounded_nodes(info: GraphInfo, plan: list[NodePrecision], weights: WeightStore) -> tuple[list, list[str]]:
    """The graph's nodes with rounding inserted, and the initializers used in rounded form."""
    import onnx

    nodes: list = []
    copies: dict[str, str] = {}  # tensor → its rounded copy, shared by all its fp16 consumers
    rounded_inits: list[str] = []
    # Tensors that hold fp16 values already: rounding them again would change nothing.
    exact = set(weights.exact)
    for node, meta, precision in zip(info.model.graph.node, info.nodes, plan):
        new = onnx.NodeProto()
        new.CopyFrom(node)
        if precision.inputs_fp16:
            for pos, name in meta.float_inputs:
                if name in exact:
                    continue
                if name not in copies:
                    if name in info.initializers and name not in info.producer:
                        copies[name] = weights.tensor(name, rounded=True).name
                        rounded_inits.append(name)
                    else:
                        copies[name] = f"{name}__fp16"
                        _round_into(name, copies[name], nodes, info.opset)
                    exact.add(copies[name])
                new.input[pos] = copies[name]
        moves_fp16_values = meta.op_type in EXACT_OPS and all(new.input[pos] in exact for pos, _ in meta.float_inputs)
        if moves_fp16_values:
            exact.update(meta.float_outputs)
        if not precision.outputs_fp16 or moves_fp16_values:
            nodes.append(new)
            continue
        for pos, name in enumerate(new.output):
            if name in meta.float_outputs:
                new.output[pos] = f"{name}__fp32"
        nodes.append(new)
        for name in meta.float_outputs:
            _round_into(f"{name}__fp32", name, nodes, info.opset)
            exact.add(name)
    return nodes, rounded_inits


def _is_fp16_exact(values: np.ndarray) -> bool:
    values = np.asarray(values, np.float32)
    return bool(np.all(np.abs(values) <= FP16_MAX)
                and np.array_equal(values, values.astype(np.float16).astype(np.float32)))


def _bounds() -> list:
    from onnx import numpy_helper

    return [numpy_helper.from_array(np.array(-FP16_MAX, np.float32), "__fp16_min"),
            numpy_helper.from_array(np.array(FP16_MAX, np.float32), "__fp16_max")]


def _round_into(source: str, target: str, nodes: list, opset: int) -> None:
    """``target = Cast(Cast(Clip(source, ±65504), fp16), fp32)``: the fp16 store, saturating."""
    from onnx import helper

    clipped, half = f"{target}__clip", f"{target}__half"
    if opset >= 11:
        nodes.append(helper.make_node("Clip", [source, "__fp16_min", "__fp16_max"], [clipped], name=clipped))
    else:
        nodes.append(helper.make_node("Clip", [source], [clipped], name=clipped, min=-FP16_MAX, max=FP16_MAX))
    nodes.append(helper.make_node("Cast", [clipped], [half], name=half, to=_FLOAT16))
    nodes.append(helper.make_node("Cast", [half], [target], name=f"{target}__cast", to=_FLOAT))
