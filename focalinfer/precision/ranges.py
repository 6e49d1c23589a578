"""Range lint: where the fp32 graph holds values fp16 cannot, on the samples.

One probe run of the fp32 graph gives both the reference logits and, per computing node, the
largest |value| it writes (a ``ReduceMax(Abs(x))`` beside each output, so the intermediate tensors
never leave onnxruntime), and per divisor the smallest non-zero |value| and how many values fp16
flushes to zero. Initializers are checked in numpy. Three findings:

- activations beyond 65,504 (fp16 saturates them to ±65,504 on the 310P), with the factor;
- initializers beyond 65,504 (saturated), or whose non-zero values all flush to zero;
- divisors (Div's second input, Reciprocal's input) with values that flush to zero in fp16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from focalinfer.precision.emulate import EXACT_OPS, FP16_FLUSH, FP16_MAX, FP32, GraphInfo, WeightStore, build_model

_MAX = "__range_max__"
_MIN = "__range_min_nonzero__"
_FLUSHED = "__range_flushed__"
# float32 just above 2**-25: values below it (and non-zero) round to zero in fp16.
_FLUSH_LIMIT = float(np.nextafter(np.float32(FP16_FLUSH), np.float32(1)))


@dataclass
class RangeLint:
    activations: list[dict] = field(default_factory=list)  # {node, op_type, tensor, max_abs, times_fp16_max}
    initializers: list[dict] = field(default_factory=list)  # {name, consumers, kind, max_abs | min_nonzero_abs}
    divisors: list[dict] = field(default_factory=list)  # {node, op_type, tensor, min_nonzero_abs, flushed}
    max_abs: dict[str, float] = field(default_factory=dict)  # tensor → max |value| over the samples
    largest: dict | None = None  # the largest node output, in range or not: {node, op_type, max_abs}

    def as_dict(self) -> dict:
        return {"activations": self.activations, "initializers": self.initializers, "divisors": self.divisors,
                "largest": self.largest}

    @property
    def clean(self) -> bool:
        return not (self.activations or self.initializers or self.divisors)


@dataclass
class _Probe:
    maxima: list[tuple[str, int]]  # (tensor, producer index or -1 for a graph input)
    divisors: list[tuple[int, str]]  # (node index, divisor tensor)


def divisor_inputs(info: GraphInfo) -> list[tuple[int, str]]:
    """(node index, tensor) of every float divisor: Div's second input, Reciprocal's input."""
    found = []
    for node in info.nodes:
        position = {"Div": 1, "Reciprocal": 0}.get(node.op_type)
        for pos, name in node.float_inputs:
            if pos == position:
                found.append((node.index, name))
    return found


def probe_model(info: GraphInfo, weights: WeightStore | None = None):
    """The fp32 graph plus one statistic output per probed tensor; and what was probed.

    Each statistic keeps the first axis (``ReduceMax`` over the others): onnxruntime splits a
    reduction across threads by output element, so one scalar per tensor would run on one core.
    """
    from onnx import TensorProto, helper, numpy_helper

    maxima = [(name, -1) for name in info.graph_inputs if name in _float_inputs(info)]
    maxima += [(name, n.index) for n in info.nodes if n.is_candidate for name in n.float_outputs]
    divisors = [(i, t) for i, t in divisor_inputs(info) if t not in info.initializers or t in info.producer]
    nodes, outputs, constants = [], [], []

    def reduce(op_type: str, source: str, target: str, rank: int) -> None:
        axes = list(range(1, rank)) if rank >= 2 else None
        if axes and info.opset >= (13 if op_type == "ReduceSum" else 18):
            constants.append(numpy_helper.from_array(np.array(axes, np.int64), f"{target}_axes"))
            nodes.append(helper.make_node(op_type, [source, f"{target}_axes"], [target], keepdims=0))
        else:
            nodes.append(helper.make_node(op_type, [source], [target], keepdims=0, **({"axes": axes} if axes else {})))
        outputs.append(helper.make_tensor_value_info(target, TensorProto.FLOAT, ["rows"] if axes else []))

    chains = []  # one per probed tensor, in graph order
    for k, (tensor, _) in enumerate(maxima):
        start = len(nodes)
        nodes.append(helper.make_node("Abs", [tensor], [f"{_MAX}{k}_abs"]))
        reduce("ReduceMax", f"{_MAX}{k}_abs", f"{_MAX}{k}", info.ranks.get(tensor, 0))
        chains.append(nodes[start:])
    if divisors:
        constants += [numpy_helper.from_array(np.array(v, np.float32), n)
                      for n, v in (("__range_zero", 0.0), ("__range_inf", np.inf), ("__range_flush", _FLUSH_LIMIT))]
    for k, (_, tensor) in enumerate(divisors):
        start = len(nodes)
        a, zero, nonzero, small, flushed = (f"{_MIN}{k}_{s}" for s in ("abs", "zero", "nz", "small", "flushed"))
        nodes += [
            helper.make_node("Abs", [tensor], [a]),
            helper.make_node("Equal", [a, "__range_zero"], [zero]),
            helper.make_node("Where", [zero, "__range_inf", a], [nonzero]),
            helper.make_node("Less", [nonzero, "__range_flush"], [small]),
            helper.make_node("Cast", [small], [flushed], to=TensorProto.FLOAT),
        ]
        reduce("ReduceMin", nonzero, f"{_MIN}{k}", info.ranks.get(tensor, 0))
        reduce("ReduceSum", flushed, f"{_FLUSHED}{k}", info.ranks.get(tensor, 0))
        chains.append(nodes[start:])
    # onnxruntime orders nodes by a depth-first walk from the graph's leaves, highest node index
    # first. Appended in graph order, the last probe would pull in the whole graph before any
    # probe runs, keeping every probed tensor alive (3.3 GB instead of 0.9 GB for 4 Focal-fast-S
    # images, at 2.3x the fp32 time). In reverse order, each probe runs as soon as its tensor exists.
    chains.sort(key=lambda chain: _produced_at(info, chain[0].input[0]), reverse=True)
    nodes = [node for chain in chains for node in chain]
    model = build_model(info, [FP32] * len(info.nodes), weights, extra_nodes=nodes, extra_outputs=outputs)
    model.graph.initializer.extend(constants)
    return model, _Probe(maxima, divisors)


def _produced_at(info: GraphInfo, tensor: str) -> int:
    return info.producer.get(tensor, -1)


def _float_inputs(info: GraphInfo) -> set[str]:
    return {name for n in info.nodes for _, name in n.float_inputs}


class RangeAccumulator:
    """Folds the probe's per-batch statistics into one RangeLint."""

    def __init__(self, info: GraphInfo, probe: _Probe, output_names: list[str]):
        self.info, self.probe = info, probe
        self.maxima = np.zeros(len(probe.maxima))
        self.min_nonzero = np.full(len(probe.divisors), np.inf)
        self.flushed = np.zeros(len(probe.divisors))
        index = {name: i for i, name in enumerate(output_names)}
        self._max_at = [index[f"{_MAX}{k}"] for k in range(len(probe.maxima))]
        self._min_at = [index[f"{_MIN}{k}"] for k in range(len(probe.divisors))]
        self._flushed_at = [index[f"{_FLUSHED}{k}"] for k in range(len(probe.divisors))]

    def add(self, outputs: list[np.ndarray]) -> None:
        # NaN counts as out of range (np.max propagates it; fmax would drop it).
        batch_max = np.array([np.max(outputs[i]) for i in self._max_at], np.float64)
        self.maxima = np.where(np.isnan(batch_max), np.inf, np.fmax(self.maxima, batch_max))
        if self._min_at:
            self.min_nonzero = np.fmin(self.min_nonzero, [np.min(outputs[i]) for i in self._min_at])
            self.flushed += [np.sum(outputs[i]) for i in self._flushed_at]

    def result(self) -> RangeLint:
        info = self.info
        lint = RangeLint()
        for (tensor, producer), value in zip(self.probe.maxima, self.maxima):
            lint.max_abs[tensor] = float(value)
            if value > FP16_MAX:
                node = info.nodes[producer] if producer >= 0 else None
                lint.activations.append({
                    "node": node.name if node else "(graph input)", "op_type": node.op_type if node else "",
                    "tensor": tensor, "max_abs": float(value), "times_fp16_max": round(float(value) / FP16_MAX, 2)})
        lint.activations.sort(key=lambda f: -f["max_abs"])
        computed = [(value, producer) for (_, producer), value in zip(self.probe.maxima, self.maxima) if producer >= 0]
        if computed:
            value, producer = max(computed)
            lint.largest = {"node": info.nodes[producer].name, "op_type": info.nodes[producer].op_type,
                            "max_abs": float(value), "times_fp16_max": round(float(value) / FP16_MAX, 4)}
        for (index, tensor), low, flushed in zip(self.probe.divisors, self.min_nonzero, self.flushed):
            if flushed > 0:
                node = info.nodes[index]
                lint.divisors.append({"node": node.name, "op_type": node.op_type, "tensor": tensor,
                                      "min_nonzero_abs": float(low), "flushed": int(flushed)})
        lint.initializers = initializer_findings(info)
        return lint


def initializer_findings(info: GraphInfo) -> list[dict]:
    """Float initializers (and Constant values) fp16 cannot hold: beyond ±65,504, or flushed to zero.

    A weight with a few tiny entries is harmless; flushing is reported where it changes what the
    node computes: every non-zero value gone (an epsilon), or any value of a divisor.
    """
    divisors = {tensor for _, tensor in divisor_inputs(info)}
    findings = []
    for name, values in info.initializers.items():
        consumers = [info.nodes[i].name for i in info.consumers.get(name, [])]
        if not consumers:
            continue
        magnitude = np.abs(np.asarray(values, np.float64))
        peak = float(magnitude.max()) if magnitude.size else 0.0
        nonzero = magnitude[magnitude > 0]
        if peak > FP16_MAX:
            findings.append({"name": name, "consumers": consumers, "kind": "beyond fp16 range", "max_abs": peak,
                             "count": int((magnitude > FP16_MAX).sum())})
        flushed = int((nonzero <= FP16_FLUSH).sum())
        if flushed and (flushed == nonzero.size or name in divisors):
            findings.append({"name": name, "consumers": consumers, "kind": "flushes to zero in fp16",
                             "min_nonzero_abs": float(nonzero.min()), "count": flushed})
    return findings


def lint_nodes(info: GraphInfo, lint: RangeLint) -> set[int]:
    """The nodes the range lint says must stay fp32, with their chains.

    An overflowing tensor needs its producer in fp32 and every reader too (an fp16 reader gets a
    saturated copy); readers that only move it (Reshape, Transpose, …) pass the overflow on, so
    their readers join. An out-of-range initializer needs its readers in fp32; a flushed divisor
    needs the Div and the node that computes the divisor.
    """
    by_name = {n.name: n.index for n in info.nodes}
    keep: set[int] = set()

    def readers(tensor: str) -> None:
        for i in info.consumers.get(tensor, []):
            node = info.nodes[i]
            if i in keep or not node.float_outputs:
                continue
            keep.add(i)
            if node.op_type in EXACT_OPS:
                for out in node.float_outputs:
                    readers(out)

    for finding in lint.activations:
        if finding["node"] in by_name:
            keep.add(by_name[finding["node"]])
        readers(finding["tensor"])
    for finding in lint.initializers:
        keep.update(by_name[c] for c in finding["consumers"] if c in by_name and info.nodes[by_name[c]].float_outputs)
    for finding in lint.divisors:
        keep.add(by_name[finding["node"]])
        if finding["tensor"] in info.producer and info.nodes[info.producer[finding["tensor"]]].float_outputs:
            keep.add(info.producer[finding["tensor"]])
    return keep


def format_lint(lint: RangeLint, limit: int = 8) -> list[str]:
    """Lines for the terminal: the worst findings first."""
    if lint.clean:
        peak = lint.largest
        largest = (f" (largest: {peak['node']} ({peak['op_type']}), max |x| {peak['max_abs']:.4g} = "
                   f"{100 * peak['max_abs'] / FP16_MAX:.2g} % of 65,504)") if peak else ""
        return [f"range lint: every activation and initializer fits fp16 on these samples{largest}"]
    lines = []
    if lint.activations:
        lines.append(f"range lint: {len(lint.activations)} node output(s) beyond fp16's 65,504:")
        for f in lint.activations[:limit]:
            lines.append(f"  {f['node']} ({f['op_type'] or 'input'}): max |x| {f['max_abs']:.4g} "
                         f"= {f['times_fp16_max']:g}x fp16 max")
        if len(lint.activations) > limit:
            lines.append(f"  ... {len(lint.activations) - limit} more in precision.json")
    for f in lint.initializers[:limit]:
        value = f.get("max_abs", f.get("min_nonzero_abs"))
        lines.append(f"range lint: initializer {f['name']} {f['kind']} ({f['count']} value(s), e.g. {value:.4g}); "
                     f"read by {', '.join(f['consumers'][:3])}")
    for f in lint.divisors[:limit]:
        lines.append(f"range lint: divisor of {f['node']} flushes to zero in fp16 ({f['flushed']} value(s), "
                     f"min non-zero |x| {f['min_nonzero_abs']:.3g})")
    return lines


def probe(info: GraphInfo, weights: WeightStore | None, evaluator) -> tuple[np.ndarray, RangeLint]:
    """One fp32 run over the samples: the reference logits and the range lint.

    Graph optimisation is off so every probed tensor is the one the exported graph computes.
    """
    model, plan = probe_model(info, weights)
    session = evaluator.session(model, optimization="none")
    names = [o.name for o in session.get_outputs()]
    accumulator = RangeAccumulator(info, plan, names)
    reference = evaluator.run(session, names, each_batch=accumulator.add, emulated=False)
    return reference, accumulator.result()
