"""The ATC lint: each rule on a tiny hand-built graph, the packaged op table, the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from focalinfer.cli import cli
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.export.lint import atc_op_table, atc_supported_ops, lint_onnx

REPO = Path(__file__).resolve().parents[2]
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def make_model(nodes, inputs, outputs, initializers=(), opset=11, domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=imports)


def value(name, dtype=FLOAT, shape=(1, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def rules(result, severity=None):
    return sorted({f.rule for f in result.findings if severity in (None, f.severity)})


def relu_model(opset=11, shape=(1, 4)):
    return make_model([helper.make_node("Relu", ["x"], ["y"])], [value("x", shape=shape)],
                      [value("y", shape=shape)], opset=opset)


# --- op table ------------------------------------------------------------------------------

def test_packaged_table_covers_opsets_8_to_18_with_its_source():
    table = atc_op_table()
    assert sorted(int(k) for k in table["opsets"]) == list(range(8, 19))
    source = table["source"]
    assert source["repository"].endswith("Ascend/msit") and "Mulan PSL v2" in source["license"]
    assert len(source["commit"]) == 40
    assert {"Conv", "MatMul", "Softmax", "Gather", "TopK"} <= atc_supported_ops(11)
    assert "LayerNormalization" not in atc_supported_ops(13) and "LayerNormalization" in atc_supported_ops(17)
    assert atc_supported_ops(19) is None


def test_generator_reads_the_upstream_line_format(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_atc_ops", REPO / "tools" / "gen_atc_ops.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    yaml = tmp_path / "onnx.yaml"
    lines = ["# licence header", "ai.onnx::11::Conv: Conv2D", 'ai.onnx::12::SequenceAt""ai.onnx::13::SequenceAt: SequenceAt',
             "npu::1::NPUCiou: CIoU", "aten::adaptive_max_pool2d: AdaptiveMaxPool2d"]
    lines += [f"ai.onnx::{v}::Relu: Relu" for v in range(8, 19)]
    yaml.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ops.json"
    assert gen.main([str(yaml), "--commit", "c" * 40, "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["opsets"]["11"] == ["Conv", "Relu"]
    assert document["opsets"]["12"] == ["Relu", "SequenceAt"] and document["opsets"]["13"] == ["Relu", "SequenceAt"]
    assert document["source"]["commit"] == "c" * 40


def test_packaged_table_matches_the_generator_output_format():
    text = (REPO / "focalinfer" / "data" / "atc_onnx_ops.json").read_text()
    assert json.loads(text) == atc_op_table()
    assert "Mulan PSL v2" in (REPO / "focalinfer" / "data" / "ATC_ONNX_OPS_SOURCE.md").read_text()


# --- errors --------------------------------------------------------------------------------

def test_clean_graph_has_no_findings():
    result = lint_onnx(relu_model(), expect_static=True)
    assert result.findings == [] and result.ok
    assert result.op_histogram == {"Relu": 1} and result.node_count == 1 and result.opset == 11


@pytest.mark.parametrize("opset", [7, 19])
def test_opset_outside_the_table_is_an_error(opset):
    result = lint_onnx(relu_model(opset=opset))
    assert rules(result, "error") == ["opset"] and not result.ok


def test_op_missing_for_the_graph_opset_is_an_error():
    nodes = [helper.make_node("LayerNormalization", ["x", "scale"], ["y"], axis=-1)]
    inits = [const("scale", np.ones(4, np.float32))]
    at13 = lint_onnx(make_model(nodes, [value("x")], [value("y")], inits, opset=13))
    assert rules(at13, "error") == ["unsupported_op"]
    assert at13.errors[0].op_type == "LayerNormalization"
    assert lint_onnx(make_model(nodes, [value("x")], [value("y")], inits, opset=17)).ok


def test_custom_domain_op_is_an_error():
    node = helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")
    result = lint_onnx(make_model([node], [value("x")], [value("y")], domains=["com.microsoft"]))
    assert [(f.rule, f.op_type) for f in result.errors] == [("unsupported_op", "com.microsoft::Gelu")]
    assert result.op_histogram == {"com.microsoft::Gelu": 1}


def test_constant_nodes_are_accepted():
    nodes = [helper.make_node("Constant", [], ["c"], value=const("v", np.ones((1, 4), np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"])]
    assert lint_onnx(make_model(nodes, [value("x")], [value("y")])).findings == []


@pytest.mark.parametrize("op", ["If", "Loop"])
def test_control_flow_is_an_error(op):
    body_out = helper.make_tensor_value_info("b", FLOAT, [1, 4])
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "branch", [], [body_out])
    if op == "If":
        node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
        inputs = [value("x"), value("cond", TensorProto.BOOL, ())]
    else:
        loop_body = helper.make_graph(
            [helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
            [helper.make_tensor_value_info("i", INT64, []), helper.make_tensor_value_info("c_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])])
        node = helper.make_node("Loop", ["trip", "cond"], [], body=loop_body)
        inputs = [value("trip", INT64, ()), value("cond", TensorProto.BOOL, ())]
    result = lint_onnx(make_model([node], inputs, [value("y")]))
    assert rules(result, "error") == ["control_flow"]
    assert result.op_histogram[op] == 1


def test_dynamic_dims_are_errors_only_when_static_was_asked():
    model = relu_model(shape=("batch", 4))
    assert rules(lint_onnx(model, expect_static=True), "error") == ["dynamic_dim"]
    assert lint_onnx(model, expect_static=False).ok


# --- warnings ------------------------------------------------------------------------------

@pytest.mark.parametrize("op,inputs,extra_inits", [
    ("GatherElements", ["x", "idx"], [const("idx", np.zeros((1, 4), np.int64))]),
    ("ScatterND", ["x", "ind", "upd"], [const("ind", np.zeros((1, 1, 2), np.int64)), const("upd", np.ones((1, 1), np.float32))]),
    ("NonZero", ["x"], []),
])
def test_slow_ops_are_warnings(op, inputs, extra_inits):
    out = value("y", INT64 if op == "NonZero" else FLOAT, (2, None) if op == "NonZero" else (1, 4))
    result = lint_onnx(make_model([helper.make_node(op, inputs, ["y"])], [value("x")], [out], extra_inits))
    assert result.ok
    assert [(f.severity, f.rule, f.op_type) for f in result.findings] == [("warning", "slow_op", op)]
    assert result.findings[0].message  # says why


def topk_model(k_array=None, k_input=False, width=8):
    x = value("x", shape=(1, width))
    outs = [value("v", shape=(1, None)), value("i", INT64, (1, None))]
    inits = [] if k_array is None else [const("k", np.asarray(k_array, np.int64))]
    inputs = [x, value("k", INT64, (1,))] if k_input else [x]
    return make_model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)], inputs, outs, inits)


def test_topk_with_computed_k_is_a_warning():
    assert rules(lint_onnx(topk_model(k_input=True))) == ["topk_dynamic_k"]


def test_topk_with_a_constant_small_k_is_clean():
    assert lint_onnx(topk_model([3])).findings == []


def test_topk_with_a_large_k_is_a_warning():
    assert rules(lint_onnx(topk_model([5000], width=6000))) == ["topk_large_k"]


def where_model(shape):
    nodes = [helper.make_node("Where", ["cond", "x", "zero"], ["y"])]
    inits = [const("zero", np.zeros((1,), np.float32))]
    return make_model(nodes, [value("cond", TensorProto.BOOL, shape), value("x", shape=shape)], [value("y", shape=shape)], inits)


def test_where_on_a_large_tensor_is_a_warning():
    assert rules(lint_onnx(where_model((1, 1024, 1025)))) == ["large_where"]
    assert lint_onnx(where_model((1, 64, 64))).findings == []


def test_rank_above_five_found_by_shape_inference():
    # No value_info is given: the 6-D shape is only known through shape inference.
    nodes = [helper.make_node("Reshape", ["x", "shape6"], ["t"]),
             helper.make_node("Transpose", ["t"], ["u"], perm=[0, 1, 3, 2, 4, 5]),
             helper.make_node("Reshape", ["u", "shape2"], ["y"])]
    inits = [const("shape6", np.array([1, 2, 2, 2, 2, 2], np.int64)), const("shape2", np.array([1, 32], np.int64))]
    result = lint_onnx(make_model(nodes, [value("x", shape=(1, 32))], [value("y", shape=(1, 32))], inits))
    high = [f for f in result.findings if f.rule == "high_rank"]
    assert sorted(f.op_type for f in high) == ["Reshape", "Transpose"]
    assert all(f.severity == "warning" for f in result.findings)


def shape_arithmetic_model():
    """y = reshape(x, [shape(x)[0] * 4]): a computed Reshape target with int64 arithmetic."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Mul", ["n", "four"], ["m"]),
        helper.make_node("Unsqueeze", ["m"], ["target"], axes=[0]),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [const("zero", np.array(0, np.int64)), const("four", np.array(4, np.int64))]
    return make_model(nodes, [value("x", shape=(1, 4))], [value("y", shape=(4,))], inits)


def test_dynamic_reshape_and_int64_arithmetic_are_warnings():
    result = lint_onnx(shape_arithmetic_model())
    assert rules(result) == ["dynamic_reshape", "int64_arithmetic"] and result.ok
    int64 = next(f for f in result.findings if f.rule == "int64_arithmetic")
    assert int64.op_type == "Mul" and int64.count == 1


def test_shape_ops_left_in_a_static_graph_are_flagged():
    result = lint_onnx(shape_arithmetic_model(), expect_static=True)
    assert "shape_arithmetic" in rules(result, "warning")


def test_constant_reshape_target_is_clean():
    nodes = [helper.make_node("Reshape", ["x", "target"], ["y"])]
    model = make_model(nodes, [value("x")], [value("y", shape=(4,))], [const("target", np.array([4], np.int64))])
    assert lint_onnx(model).findings == []


def test_dropout_is_flagged_as_training_only():
    model = make_model([helper.make_node("Dropout", ["x"], ["y"])], [value("x")], [value("y")])
    result = lint_onnx(model)
    assert rules(result) == ["training_only"] and result.ok


# --- files and CLI -------------------------------------------------------------------------

def save(model, path):
    onnx.save(model, str(path))
    return str(path)


def test_missing_and_corrupt_files_are_one_line_errors(tmp_path):
    with pytest.raises(FocalinferError, match="not found"):
        lint_onnx(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage\xff")
    with pytest.raises(FocalinferError, match="not a readable ONNX"):
        lint_onnx(tmp_path / "bad.onnx")


def test_bad_soc_name_is_a_usage_error():
    with pytest.raises(UsageError):
        lint_onnx(relu_model(), soc="gpu")


def test_cli_exit_codes_and_json(tmp_path):
    runner = CliRunner()
    clean = save(relu_model(), tmp_path / "clean.onnx")
    warn = save(make_model([helper.make_node("Dropout", ["x"], ["y"])], [value("x")], [value("y")]), tmp_path / "w.onnx")
    bad = save(relu_model(opset=19), tmp_path / "bad.onnx")

    result = runner.invoke(cli, ["lint", clean])
    assert result.exit_code == 0 and "Relu" in result.output and "0 error(s), 0 warning(s)" in result.output
    result = runner.invoke(cli, ["lint", warn])
    assert result.exit_code == 0 and "training_only" in result.output
    result = runner.invoke(cli, ["lint", bad, "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["errors"] == 1 and data["findings"][0]["rule"] == "opset" and data["soc"] == "Ascend310P3"

    dynamic = save(relu_model(shape=("batch", 4)), tmp_path / "dyn.onnx")
    assert runner.invoke(cli, ["lint", dynamic]).exit_code == 0
    assert runner.invoke(cli, ["lint", dynamic, "--static"]).exit_code == 1
    result = runner.invoke(cli, ["lint", str(tmp_path / "none.onnx")])
    assert result.exit_code == 1 and "Traceback" not in result.output and "not found" in result.output
    assert runner.invoke(cli, ["lint", clean, "--soc", "gpu"]).exit_code == 2
