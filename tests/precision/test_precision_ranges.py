"""The range probe against the intermediate tensors themselves (fetched as graph outputs)."""

from __future__ import annotations



import numpy as np
import onnx
from onnx import helper

import planted
from focalinfer.backend.onnxrt import make_session
from focalinfer.precision.emulate import WeightStore, analyse
from focalinfer.precision.evaluate import Evaluator
from focalinfer.precision.ranges import initializer_findings, lint_nodes, probe, probe_model


def intermediates(model, x, batch_size):
    """Every float node output of ``model`` on ``x``, by name (the independent reference), computed
    in batches of ``batch_size`` as the Evaluator runs them: a kernel may sum in another order at
    another batch size (which one depends on the CPU), so only the same batches give the same bits."""
    info = analyse(model)
    names = [t for n in info.nodes for t in n.float_outputs]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in names
                                if t != "class")
    session = make_session(exposed, optimization="none")
    batches = [session.run(None, {"image": x[i:i + batch_size]}) for i in range(0, len(x), batch_size)]
    return {o.name: np.concatenate(values) for o, values in zip(exposed.graph.output, zip(*batches))}


def test_probe_maxima_equal_the_tensors_maxima(tmp_path):
    model = planted.layernorm_overflow_net()
    x = np.random.default_rng(3).standard_normal((11, *planted.SHAPE)).astype(np.float32)
    info = analyse(model)
    evaluator = Evaluator(x, "image", 4, False, tmp_path)  # 3 batches, the last one short
    reference, lint = probe(info, WeightStore(info, tmp_path), evaluator)
    tensors = intermediates(model, x, 4)
    assert np.array_equal(reference, tensors["class"])
    probed = {t for n in info.nodes if n.is_candidate for t in n.float_outputs}
    assert probed and probed <= set(lint.max_abs)
    for name in probed:
        assert lint.max_abs[name] == np.abs(tensors[name]).max(), name
    assert lint.max_abs["image"] == np.abs(x).max()
    over = {f["node"]: f["max_abs"] for f in lint.activations}
    assert over == {n.name: lint.max_abs[n.float_outputs[0]] for n in info.nodes
                    if n.is_candidate and np.abs(tensors[n.float_outputs[0]]).max() > 65504}
    assert [f["max_abs"] for f in lint.activations] == sorted(over.values(), reverse=True)


def test_probe_graph_is_valid_and_runs_probes_early(tmp_path):
    info = analyse(planted.attention_overflow_net())
    model, _ = probe_model(info, WeightStore(info, tmp_path))
    onnx.checker.check_model(model)
    # The probes come after the graph, latest tensor first (onnxruntime walks from the highest index).
    probes = model.graph.node[len(info.nodes):]
    sources = [info.producer.get(n.input[0], -1) for n in probes if n.op_type == "Abs" and n.input[0] in info.producer]
    assert sources == sorted(sources, reverse=True)


def test_lint_chain_rules():
    info = analyse(planted.attention_overflow_net())
    by_name = {n.name: n.index for n in info.nodes}
    from focalinfer.precision.ranges import RangeLint

    lint = RangeLint(activations=[{"node": "attn/k/MatMul", "op_type": "MatMul", "tensor": "attn/k/MatMul",
                                   "max_abs": 1e5, "times_fp16_max": 1.5}])
    kept = {info.nodes[i].name for i in lint_nodes(info, lint)}
    # the producer, the Transpose that moves the values on, and the MatMul reading them
    assert kept == {"attn/k/MatMul", "attn/k/Transpose", "attn/qk/MatMul"}
    assert by_name["attn/k/Transpose"] in lint_nodes(info, lint)


def test_initializer_findings_skip_harmless_tiny_weights():
    g = planted.Graph()
    weights = g.rng.standard_normal((planted.FEATURES, 10)).astype(np.float32)
    weights[0, 0] = 1e-9  # one weight flushes to zero: harmless, not reported
    h = g.op("MatMul", [g.features(), g.const("fc.weight", weights)], "fc/MatMul")
    h = g.op("Add", [h, g.const("big", np.full(10, 1e6))], "big/Add")
    g.op("Mul", [h, g.const("eps", 1e-10)], "class")
    findings = {f["name"]: f for f in initializer_findings(analyse(g.model()))}
    assert set(findings) == {"big", "eps"}
    assert findings["big"]["kind"] == "beyond fp16 range" and findings["big"]["count"] == 10
    assert findings["eps"]["kind"] == "flushes to zero in fp16" and findings["eps"]["consumers"] == ["class"]



def test_largest_activation_is_reported_even_in_range(tmp_path):
    model = planted.clean_net()
    x = np.random.default_rng(4).standard_normal((6, *planted.SHAPE)).astype(np.float32)
    info = analyse(model)
    _, lint = probe(info, WeightStore(info, tmp_path), Evaluator(x, "image", 4, False, tmp_path))
    tensors = intermediates(model, x, 4)
    name, value = max(((n.name, np.abs(tensors[n.float_outputs[0]]).max()) for n in info.nodes if n.is_candidate),
                      key=lambda item: item[1])
    assert lint.clean and lint.largest["node"] == name and lint.largest["max_abs"] == value
