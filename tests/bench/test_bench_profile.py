"""onnxruntime's profile summed per op type, and the GEMM kernels' work and rate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from focalinfer.bench import profile
from focalinfer.bench.macs import MacCount, count_macs
from focalinfer.bench.profile import MATRIX_KINDS, at_the_limit, summarize_profile
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
    assert gemm["weights"]["macs"] == 2 * 5 * 16 * 8 and gemm["weights"]["nodes"] == gemm["weights"]["graph_nodes"] == 1
    assert gemm["activations"]["macs"] == 2 * 5 * 5 * 16
    assert gemm["activations"]["nodes"] == gemm["activations"]["graph_nodes"] == 1
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
    work = MacCount(batch_size=1, total=20_010_000, by_kind={"weights": 20_000_000, "activations": 10_000},
                    nodes_by_kind={"weights": 1, "activations": 1})
    figures = summarize_profile(events, runs=2, work=work)
    assert figures["per_run_ms"] == 0.5
    gemm = {row["kind"]: row for row in figures["gemm"]}
    assert gemm["weights"] == {"kind": "weights", "ms": 0.4, "share": 0.8, "nodes": 1, "graph_nodes": 1,
                               "macs": 20_000_000, "gflops": 100.0}  # 2 × 2e7 flop in 400 µs
    assert gemm["activations"]["macs"] == 10_000 and gemm["activations"]["gflops"] == 0.4
    assert [row["op"] for row in figures["op_types"]] == ["MatMul", "FusedMatMul", "Softmax"]


def _args(op, inputs, outputs, parameter_size=0):
    return {"op_name": op, "parameter_size": str(parameter_size),
            "input_type_shape": [{"float": s} for s in inputs], "output_type_shape": [{"float": s} for s in outputs]}


def test_kernel_kind_reads_the_kind_from_the_recorded_inputs():
    # weight pre-packed: only the activation is listed
    assert profile.kernel_kind(_args("MatMul", [[4, 3136, 96]], [[4, 3136, 384]])) == "weights"
    # Gemm lists its bias, never a second matrix
    assert profile.kernel_kind(_args("Gemm", [[10, 8], [16]], [[10, 16]], 64)) == "weights"
    # q·kᵀ, and a kernel that reads A transposed: both operands are activations
    assert profile.kernel_kind(_args("FusedMatMul", [[4, 64, 3, 49, 32], [4, 64, 3, 32, 81]],
                                     [[4, 64, 3, 49, 81]])) == "activations"
    assert profile.kernel_kind(_args("FusedMatMul", [[2, 7, 5], [2, 7, 3]], [[2, 5, 3]])) == "activations"
    # a constant second matrix that was not pre-packed counts as weights
    assert profile.kernel_kind(_args("MatMul", [[2, 5, 8], [8, 16]], [[2, 5, 16]], 512)) == "weights"


def test_conv_kernels_are_dense_or_depthwise_and_only_dense_ones_count_as_matrix_work():
    # Focal-fast-S's stem: 7×7, 3 → 96 channels; VAN's depthwise 5×5 on 64 channels; an AVX-512
    # NCHWc stem whose 8 output channels run padded to 16 is still dense
    stem = _args("Conv", [[1, 3, 224, 224], [96, 3, 7, 7], [96]], [[1, 96, 56, 56]])
    depthwise = _args("Conv", [[2, 64, 56, 56], [64, 1, 5, 5], [64]], [[2, 64, 56, 56]])
    padded = _args("Conv", [[1, 3, 32, 32], [16, 3, 3, 3], [16]], [[1, 16, 16, 16]])
    assert profile.kernel_kind(stem) == profile.kernel_kind(padded) == "conv"
    assert profile.kernel_kind(depthwise) == "depthwise conv"
    assert profile.kernel_kind(_args("FusedConv", [[1, 16, 8, 8], [16, 16, 1, 1]], [[1, 16, 8, 8]])) == "conv"
    assert profile.kernel_kind(_args("Conv", [[1, 3, 224, 224]], [[1, 96, 56, 56]])) is None  # no weight shape
    run = {"batch_size": 1, "per_run_ms": 10.0,
           "gemm": [{"kind": "conv", "ms": 4.0, "macs": 10 ** 8}, {"kind": "depthwise conv", "ms": 5.0, "macs": 10 ** 6}]}
    bound = at_the_limit(run, 100.0)  # the dense Conv at 100 GFLOP/s: 2 ms; the depthwise one as measured
    assert bound["gemm_ms"] == 4.0 and bound["other_ms"] == 6.0 and bound["gemm_at_limit_ms"] == 2.0


def test_kernel_kind_ignores_other_ops_and_missing_shapes():
    assert profile.kernel_kind(_args("Add", [[2, 5], [2, 5]], [[2, 5]])) is None
    assert profile.kernel_kind(_args("ReorderOutput", [[1, 16, 16, 16]], [[1, 8, 16, 16]])) is None
    assert profile.kernel_kind({"op_name": "MatMul"}) is None
    assert profile.kernel_kind(_args("MatMul", [[8]], [[16]])) is None


TINY_GEMM_MACS = 256 * 8 * 16 + 256 * 16 * 8 + 8 * 10  # fc1, fc2 and the head; the stem is a Conv
TINY_STEM_MACS = TINY_MACS - TINY_GEMM_MACS


def _tiny_stem_kernels(form: str, batch: int) -> list[tuple[str, dict, int]]:
    """The tiny model's stem Conv (3 → 8 channels, 3×3 stride 2, BatchNorm and Relu folded in) as
    onnxruntime 1.x profiles it: (kernel name, args, µs).

    ``avx512``: NCHWc with a 16-float block pads the 8 output channels to 16 (weight and output),
    and a ReorderOutput copies the 8 real ones back (what an AMD Zen 4 or Intel AVX-512 CPU records);
    ``avx2``: NCHWc with an 8-float block, nothing padded; ``plain``: no NCHWc (a CPU without it)."""
    image, out = [batch, 3, 32, 32], [batch, 8, 16, 16]
    if form == "plain":
        return [("/stem/stem.0/Conv", _args("FusedConv", [image, [8, 3, 3, 3], [8]], [out], 1024), 30)]
    channels = 16 if form == "avx512" else 8
    padded = [batch, channels, 16, 16]
    return [("/stem/stem.2/Relu_output_0_nchwc", _args("Conv", [image, [channels, 3, 3, 3], [channels]], [padded]), 30),
            ("ReorderOutput", _args("ReorderOutput", [padded], [out]), 5)]


def _tiny_gemm_kernels(batch: int) -> list[tuple[str, dict, int]]:
    return [("/mlp/mlp.0/MatMul", _args("MatMul", [[batch, 256, 8]], [[batch, 256, 16]]), 10),
            ("/mlp/mlp.2/MatMul", _args("MatMul", [[batch, 256, 16]], [[batch, 256, 8]]), 10),
            ("/head/Gemm", _args("Gemm", [[batch, 8], [10]], [[batch, 10]], 40), 2)]


@pytest.mark.parametrize("form", ["avx512", "avx2", "plain"])
@pytest.mark.parametrize("batch", [1, 2])
def test_each_graph_node_is_counted_once_whatever_kernels_the_cpu_runs(tiny_onnx, form, batch):
    # The rule on traces shaped as each kind of CPU writes them, whatever CPU runs this test:
    # the Conv's work is the graph node's (8 channels), its time the Conv kernel's alone.
    work = count_macs(tiny_onnx[0], batch_size=batch)
    kernels = _tiny_stem_kernels(form, batch) + _tiny_gemm_kernels(batch)
    events = []
    for run, start in enumerate((0, 1000)):  # a warm-up run, then the measured one
        events.append({"cat": "Session", "name": "model_run", "ts": start, "dur": 900})
        events += [_event(start + 1 + i, us, args, name) for i, (name, args, us) in enumerate(kernels)]
    gemm = {row["kind"]: row for row in summarize_profile(events, runs=1, work=work)["gemm"]}
    assert gemm["conv"] == {"kind": "conv", "ms": 0.03, "share": round(30 / sum(k[2] for k in kernels), 4),
                            "nodes": 1, "graph_nodes": 1, "macs": batch * TINY_STEM_MACS,
                            "gflops": round(2 * batch * TINY_STEM_MACS / 30e-6 / 1e9, 1)}
    assert gemm["weights"]["macs"] == batch * TINY_GEMM_MACS
    assert gemm["weights"]["nodes"] == gemm["weights"]["graph_nodes"] == 3
    assert set(gemm) == {"conv", "weights"}


def test_a_kind_on_one_side_only_is_listed_without_a_rate():
    # The graph has a depthwise Conv no kernel ran as one; a kernel ran a kind the graph lacks.
    work = MacCount(batch_size=1, total=100, by_kind={"depthwise conv": 100}, nodes_by_kind={"depthwise conv": 1})
    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 900},
              _event(1, 50, _args("FusedMatMul", [[1, 4, 4], [1, 4, 4]], [[1, 4, 4]]), "qk")]
    gemm = {row["kind"]: row for row in summarize_profile(events, runs=1, work=work)["gemm"]}
    assert gemm["depthwise conv"]["macs"] == 100 and gemm["depthwise conv"]["ms"] == 0.0
    assert gemm["activations"]["macs"] == 0 and gemm["activations"]["nodes"] == 1
    assert gemm["depthwise conv"]["gflops"] is None and gemm["activations"]["gflops"] is None


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
        assert all(g["nodes"] == g["graph_nodes"] for g in p["gemm"])  # one kernel per counted node
        # The bound beats the measured rate exactly when the matrix kernels ran below the limit
        # asked for (whatever this machine's limit is): at twice their own rate it must, at half not.
        matrix = [g for g in p["gemm"] if g["kind"] in MATRIX_KINDS]
        own_gflops = 2 * sum(g["macs"] for g in matrix) / (sum(g["ms"] for g in matrix) * 1e-3) / 1e9
        measured = 1e3 / p["per_image_ms"]
        assert at_the_limit(p, 2 * own_gflops)["img_per_s_bound"] > measured > at_the_limit(p, own_gflops / 2)["img_per_s_bound"]
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
