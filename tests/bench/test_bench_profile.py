"""onnxruntime's profile summed per op type, and the GEMM kernels' work and rate."""

from __future__ import annotations

import json

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from focalinfer.bench import profile
from focalinfer.bench.profile import at_the_limit, summarize_profile
from focalinfer.cli import cli
from tinynet import TINY, TINY_MACS


def _two_kinds_of_matmul(path):
    """x (2, 5, 8) @ W (8, 16) + b, then z @ zᵀ: one weight GEMM (1280 MACs), one activation GEMM (800)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 16), dtype=np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(16, dtype=np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"]),
             helper.make_node("Transpose", ["z"], ["zt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["z", "zt"], ["out"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 5, 5])], [weight, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_profile_sums_kernel_time_by_op_type(tiny_onnx):
    path, _ = tiny_onnx
    figures = profile.profile_op_types(path, batch=2, runs=2, threads=1)
    ops = {row["op"]: row for row in figures["op_types"]}
    assert "MatMul" in ops or "FusedMatMul" in ops or "Gemm" in ops
    assert any(op.startswith("Conv") or op == "FusedConv" for op in ops)
    assert abs(sum(row["share"] for row in figures["op_types"]) - 1.0) < 0.01
    assert figures["per_run_ms"] > 0


def test_profile_counts_each_gemm_kind_exactly_after_onnxruntime_fuses(tmp_path):
    figures = profile.profile_op_types(_two_kinds_of_matmul(tmp_path / "two.onnx"), batch=2, runs=3, threads=1)
    gemm = {row["kind"]: row for row in figures["gemm"]}
    # onnxruntime runs the first as Gemm (MatMul+Add) and the second as FusedMatMul (Transpose folded in)
    assert {row["op"] for row in figures["op_types"]} >= {"Gemm", "FusedMatMul"}
    assert gemm["weights"]["macs"] == 2 * 5 * 16 * 8 and gemm["weights"]["nodes"] == 1
    assert gemm["activations"]["macs"] == 2 * 5 * 5 * 16 and gemm["activations"]["nodes"] == 1
    for row in gemm.values():
        assert row["gflops"] > 0 and 0 < row["share"] < 1


def _event(ts, dur, args, name="mm"):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": args}


def test_summary_leaves_out_the_warm_up_run_and_rates_each_kind():
    weight = _args("MatMul", [[1, 1000, 100]], [[1, 1000, 200]])  # 2e7 MACs
    attention = _args("FusedMatMul", [[1, 10, 100], [1, 100, 10]], [[1, 10, 10]])  # 1e4 MACs
    events = []
    for run, start in enumerate((0, 1000, 2000)):
        events.append({"cat": "Session", "name": "model_run", "ts": start, "dur": 900})
        events.append(_event(start + 1, 10_000 if run == 0 else 400, weight, "proj"))  # a slow warm-up
        events.append(_event(start + 2, 50, attention, "qk"))
        events.append(_event(start + 3, 50, _args("Softmax", [[1, 10, 10]], [[1, 10, 10]]), "softmax"))
    figures = summarize_profile(events, runs=2)
    assert figures["per_run_ms"] == 0.5
    gemm = {row["kind"]: row for row in figures["gemm"]}
    assert gemm["weights"] == {"kind": "weights", "ms": 0.4, "share": 0.8, "nodes": 1, "macs": 20_000_000,
                               "gflops": 100.0}  # 2 × 2e7 flop in 400 µs
    assert gemm["activations"]["macs"] == 10_000 and gemm["activations"]["gflops"] == 0.4
    assert [row["op"] for row in figures["op_types"]] == ["MatMul", "FusedMatMul", "Softmax"]


def _args(op, inputs, outputs, parameter_size=0):
    return {"op_name": op, "parameter_size": str(parameter_size),
            "input_type_shape": [{"float": s} for s in inputs], "output_type_shape": [{"float": s} for s in outputs]}


def test_gemm_kernel_reads_the_shared_dimension_from_the_shapes():
    # weight pre-packed: only the activation is listed
    assert profile.gemm_kernel(_args("MatMul", [[4, 3136, 96]], [[4, 3136, 384]])) == ("weights", 4 * 3136 * 384 * 96)
    # Gemm lists its bias, never a second matrix
    assert profile.gemm_kernel(_args("Gemm", [[10, 8], [16]], [[10, 16]], 64)) == ("weights", 10 * 16 * 8)
    # q·kᵀ: both operands are activations
    assert profile.gemm_kernel(_args("FusedMatMul", [[4, 64, 3, 49, 32], [4, 64, 3, 32, 81]],
                                     [[4, 64, 3, 49, 81]])) == ("activations", 4 * 64 * 3 * 49 * 81 * 32)
    # A read transposed (transA): the shared dimension is A's row count
    assert profile.gemm_kernel(_args("FusedMatMul", [[2, 7, 5], [2, 7, 3]], [[2, 5, 3]])) == ("activations", 2 * 5 * 3 * 7)
    # a constant second matrix that was not pre-packed counts as weights
    assert profile.gemm_kernel(_args("MatMul", [[2, 5, 8], [8, 16]], [[2, 5, 16]], 512))[0] == "weights"


def test_conv_kernels_are_rated_dense_or_depthwise_and_only_dense_ones_count_as_matrix_work():
    # Focal-fast-S's stem: 7×7, 3 → 96 channels; VAN's depthwise 5×5 on 64 channels
    stem = _args("Conv", [[1, 3, 224, 224], [96, 3, 7, 7], [96]], [[1, 96, 56, 56]])
    depthwise = _args("Conv", [[2, 64, 56, 56], [64, 1, 5, 5], [64]], [[2, 64, 56, 56]])
    assert profile.gemm_kernel(stem) == ("conv", 96 * 56 * 56 * 3 * 7 * 7)
    assert profile.gemm_kernel(depthwise) == ("depthwise conv", 2 * 64 * 56 * 56 * 25)
    assert profile.gemm_kernel(_args("Conv", [[1, 3, 224, 224]], [[1, 96, 56, 56]])) is None  # no weight shape
    run = {"batch_size": 1, "per_run_ms": 10.0,
           "gemm": [{"kind": "conv", "ms": 4.0, "macs": 10 ** 8}, {"kind": "depthwise conv", "ms": 5.0, "macs": 10 ** 6}]}
    bound = at_the_limit(run, 100.0)  # the dense Conv at 100 GFLOP/s: 2 ms; the depthwise one as measured
    assert bound["gemm_ms"] == 4.0 and bound["other_ms"] == 6.0 and bound["gemm_at_limit_ms"] == 2.0


def test_gemm_kernel_ignores_other_ops_and_missing_shapes():
    assert profile.gemm_kernel(_args("Add", [[2, 5], [2, 5]], [[2, 5]])) is None
    assert profile.gemm_kernel({"op_name": "MatMul"}) is None
    assert profile.gemm_kernel(_args("MatMul", [[8]], [[16]])) is None


TINY_GEMM_MACS = 256 * 8 * 16 + 256 * 16 * 8 + 8 * 10  # fc1, fc2 and the head; the stem is a Conv
TINY_STEM_MACS = TINY_MACS - TINY_GEMM_MACS


def test_bench_profile_command_writes_its_docs_section_and_exact_gemm_work(tiny_model, tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nKeep me.\n")
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(cli, ["bench", "profile", "--model", TINY, "--batch-sizes", "1,2", "--threads", "1",
                                      "--workdir", str(tmp_path / "work"), "--docs", str(docs), "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert [p["batch_size"] for p in figures["profiles"]] == [1, 2]
    assert figures["gemm"]["limit_gflops"] > 0 and figures["machine"]["threads"] == 1
    for p in figures["profiles"]:
        weights = next(g for g in p["gemm"] if g["kind"] == "weights")
        assert weights["macs"] == p["batch_size"] * TINY_GEMM_MACS
        conv = next(g for g in p["gemm"] if g["kind"] == "conv")
        assert conv["macs"] == p["batch_size"] * TINY_STEM_MACS
        assert at_the_limit(p, figures["gemm"]["limit_gflops"])["img_per_s_bound"] > 1e3 / p["per_image_ms"]
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nKeep me.\n")
    assert "<!-- BEGIN focalinfer bench: profile (generated by `focalinfer bench profile`" in text and f"### Profile: {TINY}, rewritten graph" in text
    assert "activation × weight (Linear, 1×1 projections)" in text and "img/s bound" in text
    assert "onnxruntime profile of the rewritten graph at batch 2" in result.output


def test_bench_profile_refuses_bad_flags_before_any_work(tiny_model, tmp_path):
    work = tmp_path / "work"
    bad_batch = CliRunner().invoke(cli, ["bench", "profile", "--model", TINY, "--batch-sizes", "0,4",
                                         "--workdir", str(work)])
    assert bad_batch.exit_code == 2 and "batch sizes must be 1 or more" in bad_batch.output
    (tmp_path / "adir").mkdir()
    bad_docs = CliRunner().invoke(cli, ["bench", "profile", "--model", TINY, "--docs", str(tmp_path / "adir"),
                                        "--workdir", str(work)])
    assert bad_docs.exit_code != 0 and "is a directory" in bad_docs.output
    assert not work.exists()
