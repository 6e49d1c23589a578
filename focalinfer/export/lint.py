"""Static checks of an ONNX graph against what ATC (CANN) converts, and converts well, for Ascend.

Errors are things ATC rejects or that break a static-shape .om: an op missing from ATC's ONNX op
table for the graph's opset (package data derived from Ascend's msit, see
``focalinfer/data/ATC_ONNX_OPS_SOURCE.md``), control flow (Loop/If/Scan), and dynamic input or
output dims when a static graph was asked for. Warnings are ops ATC converts but runs slowly (on
the AI-CPU engine) or only with int32 help; each finding says why.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import onnx
from onnx import TensorProto

from focalinfer.defaults import DEFAULT_SOC
from focalinfer.errors import FocalinferError, UsageError

# The op table is ATC's ONNX parser map, the same for every SoC; the name is recorded, not used.
SOC_PATTERN = re.compile(r"Ascend\w+")
# ATC's ONNX parser turns Constant nodes into weights before op mapping, so the table omits them.
ALWAYS_SUPPORTED = frozenset({"Constant"})
CONTROL_FLOW = frozenset({"Loop", "If", "Scan"})
TRAINING_ONLY = frozenset({"Dropout"})
MAX_FAST_RANK = 5
# Heuristic sizes beyond which the AI-Core kernels stop being a good fit (see docs/export.md).
LARGE_TOPK_K = 4096
LARGE_WHERE_ELEMENTS = 1 << 20
INT64_ARITHMETIC = frozenset({
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Max", "Min", "Range", "CumSum",
    "ReduceSum", "ReduceProd", "Floor", "Ceil",
})
SLOW_OPS = {
    "GatherElements": "element-wise gather with a full-size int64 index tensor; ATC runs it on "
                      "AI-CPU or a slow kernel — a constant-index Gather on one axis does the same work",
    "ScatterND": "usually an in-place slice assignment; runs on AI-CPU — build the tensor with Concat/Slice",
    "ScatterElements": "element-wise scatter with int64 indices; runs on AI-CPU",
    "NonZero": "data-dependent output shape: no static-shape .om, and it runs on AI-CPU",
}


class LintError(FocalinferError):
    pass


@dataclass
class Finding:
    severity: str  # 'error' | 'warning'
    rule: str
    op_type: str
    message: str
    nodes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return max(1, len(self.nodes))

    def as_dict(self) -> dict:
        return {**asdict(self), "count": self.count}


@dataclass
class LintResult:
    path: str | None
    soc: str
    opset: int | None
    node_count: int
    op_histogram: dict[str, int]
    findings: list[Finding]
    expect_static: bool = False

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "soc": self.soc,
            "opset": self.opset,
            "expect_static": self.expect_static,
            "node_count": self.node_count,
            "op_histogram": self.op_histogram,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.as_dict() for f in self.findings],
        }

    def format_text(self) -> str:
        lines = [f"{self.path or 'model'}: opset {self.opset}, {self.node_count} nodes, target {self.soc}"]
        lines += [f"  {op:<24} {n}" for op, n in sorted(self.op_histogram.items(), key=lambda kv: (-kv[1], kv[0]))]
        for finding in self.findings:
            where = ", ".join(finding.nodes[:3]) + (f" (+{len(finding.nodes) - 3} more)" if len(finding.nodes) > 3 else "")
            lines.append(f"{finding.severity}: [{finding.rule}] {finding.op_type} ×{finding.count}: "
                         f"{finding.message}" + (f" — {where}" if where else ""))
        lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def atc_op_table() -> dict:
    """The packaged ATC ONNX op table: {'source': {...}, 'opsets': {'11': [op, ...], ...}}."""
    text = resources.files("focalinfer").joinpath("data/atc_onnx_ops.json").read_text(encoding="utf-8")
    return json.loads(text)


def atc_supported_ops(opset: int) -> frozenset[str] | None:
    ops = atc_op_table()["opsets"].get(str(opset))
    return None if ops is None else frozenset(ops) | ALWAYS_SUPPORTED


def load_onnx(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise LintError(f"{path}: ONNX file not found; pass the path of an exported .onnx")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError, onnx its own errors
        raise LintError(f"{path}: not a readable ONNX model ({type(e).__name__}); re-export it") from None


def default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def lint_onnx(model: onnx.ModelProto | str | Path, *, soc: str = DEFAULT_SOC,
              expect_static: bool = False) -> LintResult:
    """Lint an ONNX model (a ModelProto or a path)."""
    if not SOC_PATTERN.fullmatch(soc):
        raise UsageError(f"--soc {soc!r} is not an Ascend SoC name; pass e.g. --soc {DEFAULT_SOC}")
    path = None
    if not isinstance(model, onnx.ModelProto):
        path = str(model)
        model = load_onnx(model)
    graph = _GraphFacts(model)
    findings = (
        _check_opset(graph)
        + _check_ops(graph)
        + _check_static_io(graph, expect_static)
        + _check_slow_ops(graph)
        + _check_topk(graph)
        + _check_where(graph)
        + _check_rank(graph)
        + _check_reshape_targets(graph)
        + _check_int64_arithmetic(graph)
        + _check_shape_ops(graph, expect_static)
    )
    return LintResult(
        path=path,
        soc=soc,
        opset=graph.opset,
        node_count=len(graph.nodes),
        op_histogram=op_histogram(model),
        findings=findings,
        expect_static=expect_static,
    )


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Op type → count over every node, subgraphs included; ops outside the default domain are
    named ``domain::Op``."""
    counts = Counter(_op_name(node) for node in _all_nodes(model.graph))
    return dict(sorted(counts.items()))


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_nodes(sub)


class _GraphFacts:
    """Nodes, inferred tensor types/shapes and constant values of one model."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = default_opset(model)
        self.nodes = list(_all_nodes(model.graph))
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # a graph onnx cannot infer still gets the op checks
            inferred = model
        self.types: dict[str, onnx.TypeProto] = {}
        for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
            self.types[value.name] = value.type
        self.constants: dict[str, onnx.TensorProto] = {t.name: t for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.output:
                self.constants[node.output[0]] = _constant_tensor(node)
        for tensor in model.graph.initializer:
            self.types.setdefault(tensor.name, onnx.helper.make_tensor_type_proto(tensor.data_type, tensor.dims))

    def elem_type(self, name: str) -> int | None:
        t = self.types.get(name)
        return t.tensor_type.elem_type if t is not None and t.HasField("tensor_type") else None

    def shape(self, name: str) -> list[int | None] | None:
        """Dims (None where unknown/symbolic), or None when even the rank is unknown."""
        t = self.types.get(name)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]

    def constant_ints(self, name: str) -> list[int] | None:
        tensor = self.constants.get(name)
        if tensor is None:
            return None
        return [int(v) for v in onnx.numpy_helper.to_array(tensor).reshape(-1)]


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The value of a Constant node as a tensor (None for sparse/string forms we never read)."""
    for attr in node.attribute:
        if attr.name == "value":
            return attr.t
        if attr.name in ("value_int", "value_ints", "value_float", "value_floats"):
            array = onnx.helper.get_attribute_value(attr)
            dtype = TensorProto.INT64 if attr.name.startswith("value_int") else TensorProto.FLOAT
            dims = [] if attr.name in ("value_int", "value_float") else [len(array)]
            return onnx.helper.make_tensor(node.output[0], dtype, dims,
                                           array if dims else [array])
    return None


def _node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def _grouped(severity: str, rule: str, message_of, nodes) -> list[Finding]:
    """One finding per op type, listing the nodes it concerns."""
    by_op: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        by_op.setdefault(_op_name(node), []).append(node)
    return [Finding(severity, rule, op, message_of(op), [_node_label(n) for n in group])
            for op, group in sorted(by_op.items())]


def _check_opset(graph: _GraphFacts) -> list[Finding]:
    if graph.opset is None:
        return [Finding("error", "opset", "-", "the model imports no default-domain ONNX opset")]
    if atc_supported_ops(graph.opset) is None:
        known = sorted(int(k) for k in atc_op_table()["opsets"])
        return [Finding("error", "opset", "-", f"opset {graph.opset} is outside ATC's ONNX op table "
                        f"(opsets {known[0]}–{known[-1]}); re-export with --opset 11")]
    return []


def _check_ops(graph: _GraphFacts) -> list[Finding]:
    supported = atc_supported_ops(graph.opset) if graph.opset is not None else None
    if supported is None:
        return []
    control = [n for n in graph.nodes if n.op_type in CONTROL_FLOW and n.domain in ("", "ai.onnx")]
    unknown = [n for n in graph.nodes
               if (n.domain not in ("", "ai.onnx") or n.op_type not in supported)
               and not (n.op_type in CONTROL_FLOW and n.domain in ("", "ai.onnx"))]
    return (
        _grouped("error", "control_flow", lambda op: f"{op} (control flow) does not fit a static-shape "
                 "ATC graph; remove the data-dependent Python branch/loop in the model", control)
        + _grouped("error", "unsupported_op", lambda op: f"not in ATC's ONNX op table for opset "
                   f"{graph.opset}; ATC cannot convert it", unknown)
    )


def _check_static_io(graph: _GraphFacts, expect_static: bool) -> list[Finding]:
    if not expect_static:
        return []
    initializer_names = {t.name for t in graph.model.graph.initializer}
    findings = []
    for kind, values in (("input", graph.model.graph.input), ("output", graph.model.graph.output)):
        for value in values:
            if value.name in initializer_names:
                continue
            dims = value.type.tensor_type.shape.dim
            dynamic = [d.dim_param or "?" for d in dims if not (d.HasField("dim_value") and d.dim_value > 0)]
            if dynamic or not value.type.tensor_type.HasField("shape"):
                findings.append(Finding("error", "dynamic_dim", "-",
                                        f"graph {kind} {value.name!r} has dynamic dim(s) {dynamic or 'rank unknown'} "
                                        "but a static graph was asked for; export with a fixed --batch-size",
                                        [value.name]))
    return findings


def _check_slow_ops(graph: _GraphFacts) -> list[Finding]:
    slow = [n for n in graph.nodes if n.op_type in SLOW_OPS]
    training = [n for n in graph.nodes if n.op_type in TRAINING_ONLY]
    return (_grouped("warning", "slow_op", lambda op: SLOW_OPS[op], slow)
            + _grouped("warning", "training_only", lambda op: f"{op} is a training-only op; export the "
                       "model in eval mode", training))


def _check_topk(graph: _GraphFacts) -> list[Finding]:
    dynamic_k, large_k = [], []
    for node in graph.nodes:
        if node.op_type != "TopK":
            continue
        if len(node.input) > 1:
            k = graph.constant_ints(node.input[1])
            if k is None:
                dynamic_k.append(node)
                continue
            k = k[0]
        else:
            k = next((a.i for a in node.attribute if a.name == "k"), 0)
        if k > LARGE_TOPK_K:
            large_k.append(node)
    return (_grouped("warning", "topk_dynamic_k", lambda op: "K is an int64 tensor computed in the graph; "
                     "ATC needs a constant (int32) K for the AI-Core TopK — use a fixed k", dynamic_k)
            + _grouped("warning", "topk_large_k", lambda op: f"k > {LARGE_TOPK_K}: large-k TopK is a sort "
                       "and leaves the fast AI-Core path", large_k))


def _check_where(graph: _GraphFacts) -> list[Finding]:
    large = []
    for node in graph.nodes:
        if node.op_type != "Where" or not node.output:
            continue
        shape = graph.shape(node.output[0])
        if shape is None or None in shape or math.prod(shape) > LARGE_WHERE_ELEMENTS:
            large.append(node)
    return _grouped("warning", "large_where", lambda op: f"Where on a tensor of more than {LARGE_WHERE_ELEMENTS} "
                    "elements (or of unknown size): ATC materialises condition and both branches at full size; "
                    "prefer an additive mask folded to a constant", large)


def _check_rank(graph: _GraphFacts) -> list[Finding]:
    high = []
    for node in graph.nodes:
        if any(len(s) > MAX_FAST_RANK for s in (graph.shape(o) for o in node.output) if s is not None):
            high.append(node)
    return _grouped("warning", "high_rank", lambda op: f"produces a tensor of rank > {MAX_FAST_RANK}; "
                    "ATC's Transpose/Reshape kernels are slow or unsupported beyond 5-D — fold the dims", high)


def _check_reshape_targets(graph: _GraphFacts) -> list[Finding]:
    dynamic = [n for n in graph.nodes
               if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1] not in graph.constants]
    return _grouped("warning", "dynamic_reshape", lambda op: "the target shape is computed in the graph, "
                    "not a constant: ATC keeps the shape arithmetic (int64, often on AI-CPU)", dynamic)


def _check_int64_arithmetic(graph: _GraphFacts) -> list[Finding]:
    int64 = [n for n in graph.nodes
             if n.op_type in INT64_ARITHMETIC and n.output
             and graph.elem_type(n.output[0]) == TensorProto.INT64]
    return _grouped("warning", "int64_arithmetic", lambda op: "int64 arithmetic: Ascend AI Core computes "
                    "int32, so ATC inserts Casts or runs it on AI-CPU — fold it to a constant", int64)


def _check_shape_ops(graph: _GraphFacts, expect_static: bool) -> list[Finding]:
    if not expect_static:
        return []
    shape_nodes = [n for n in graph.nodes if n.op_type in ("Shape", "Size")]
    return _grouped("warning", "shape_arithmetic", lambda op: f"{op} left in a static graph: shape "
                    "arithmetic should have been folded (run onnxsim)", shape_nodes)
