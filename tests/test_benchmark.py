"""focalinfer bench all: MAC counter, timing harness, docs sections, JSON, the CPU-only graph."""

from __future__ import annotations

import hashlib
import itertools
import json
import time

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from focalinfer import registry
from focalinfer.bench import run as benchmark
from focalinfer.bench import cpu_graph
from focalinfer.backend import onnxrt
from focalinfer.bench.macs import count_macs
from focalinfer.errors import FocalinferError

TINY = "bench-tiny"


class TinyNet(nn.Module):
    """Conv + BN stem, a pre-norm GELU MLP over tokens, a linear head: every op family the
    CPU fusions and the MAC counter care about, at a size that exports in a second."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = x + self.mlp(self.norm(x))
        return self.head(x.mean(1))


# Conv 3→8, 3×3, 16×16 output; fc1 8→16 and fc2 16→8 over 256 tokens; head 8→10.
TINY_MACS = 8 * 16 * 16 * 3 * 9 + 256 * 8 * 16 + 256 * 16 * 8 + 8 * 10


@pytest.fixture
def tiny_model(monkeypatch):
    registry.model_names()  # load the real families first, so the fixture only adds one entry
    spec = registry.ModelSpec(
        name=TINY, family="test", builder=TinyNet, input_size=32,
        transforms={"official": registry.official_transform(32)}, checkpoint_layout="model",
        source="tests/test_benchmark.py", num_classes=10,
    )
    monkeypatch.setitem(registry._REGISTRY, TINY, spec)
    return spec


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The tiny model exported plainly (dynamic batch, opset 11), with its PyTorch twin."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=11,
                      input_names=["image"], output_names=["class"],
                      dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}})
    return path, model


# --- MAC counter on graphs with known MACs ------------------------------------------------

def _model(nodes, inputs, outputs, initializers, opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _weights(name, *shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def test_macs_of_a_grouped_strided_conv():
    # 2 × 16 × 32 × 32 input, 8 groups, 3×3 stride 2 pad 1 → 2 × 24 × 16 × 16 output.
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=8, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weights("w", 24, 2, 3, 3)],
    )
    macs = count_macs(model, batch_size=2)
    assert macs.total == 2 * 24 * 16 * 16 * (16 // 8) * 9
    assert macs.per_image == 24 * 16 * 16 * 2 * 9
    assert macs.nodes == {"Conv": 1} and macs.shape_source == "onnx"


def test_macs_of_a_batched_matmul_and_a_transposed_gemm():
    # MatMul [b, 5, 7, 11] @ [11, 13] and Gemm(transA) [6, 4]^T @ [6, 9] → 4 × 9.
    model = _model(
        [helper.make_node("MatMul", ["a", "w"], ["m"]),
         helper.make_node("Gemm", ["g", "v"], ["o"], transA=1)],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 5, 7, 11]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, [6, 4])],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        [_weights("w", 11, 13), _weights("v", 6, 9)],
    )
    macs = count_macs(model, batch_size=3)
    assert macs.by_op == {"MatMul": 3 * 5 * 7 * 11 * 13, "Gemm": 4 * 9 * 6}


def test_macs_fall_back_to_measured_shapes_when_inference_cannot_see_through_an_op():
    # ONNX shape inference does not know com.microsoft.Gelu, so the MatMul's input shape is
    # unknown statically; the counter measures it by running the graph.
    model = _model(
        [helper.make_node("Gelu", ["x"], ["h"], domain="com.microsoft"),
         helper.make_node("MatMul", ["h", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weights("w", 12, 7)],
    )
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    macs = count_macs(model, batch_size=4)
    assert macs.shape_source == "onnxruntime"
    assert macs.total == 4 * 10 * 12 * 7


def test_macs_of_an_exported_model_match_its_layers(tiny_onnx):
    path, _ = tiny_onnx
    assert count_macs(path, batch_size=1).total == TINY_MACS
    assert count_macs(path, batch_size=5).total == 5 * TINY_MACS


# --- timing harness -------------------------------------------------------------------------

def test_interleaved_timing_rotates_backends_and_reports_ratios():
    calls = []

    def sleeper(name, seconds):
        def run(_batch):
            calls.append(name)
            time.sleep(seconds)
        return run

    runners = {"fast": sleeper("fast", 0.004), "eager": sleeper("eager", 0.008)}
    timings = benchmark.time_interleaved(runners, np.zeros(2), rounds=3, budget_s=0.02, min_iters=2, warmup=1,
                                         switch_pause_s=0.0)
    assert calls[:2] == ["fast", "eager"]  # warm-up, one each
    # Rounds run fast,eager / eager,fast / fast,eager: runs of equal names then read F E F E
    # (without the rotation they would read F E F E F E).
    assert [name for name, _ in itertools.groupby(calls[2:])] == ["fast", "eager", "fast", "eager"]
    assert all(len(r) >= 2 for t in timings.values() for r in t["latencies_ms"])
    summary = benchmark.summarize_timings(timings, batch_size=2)
    assert 1.4 < summary["ratio_vs_eager"]["fast"] < 2.6
    fast = summary["results"]["fast"]
    assert fast["latency_ms"]["p50"] <= fast["latency_ms"]["p90"] <= fast["latency_ms"]["p99"]
    assert fast["latency_ms"]["p50"] >= 4.0
    assert fast["img_per_s"] == pytest.approx(2 / (fast["latency_ms"]["p50"] / 1000), rel=1e-3)
    assert fast["img_per_s_mean"] == pytest.approx(2 / (fast["latency_ms"]["mean"] / 1000), rel=1e-3)


def test_harness_times_a_tiny_model_on_onnxruntime_and_eager(tiny_onnx):
    path, model = tiny_onnx
    session = onnxrt.make_session(path, threads=1)

    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    runners = {"ort": lambda x: session.run(None, {"image": x}), "eager": eager}
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(runners["ort"](x)[0], eager(x).numpy(), atol=1e-5)
    summary = benchmark.summarize_timings(
        benchmark.time_interleaved(runners, x, rounds=2, budget_s=0.05, min_iters=3, switch_pause_s=0.01), batch_size=4)
    assert set(summary["results"]) == {"ort", "eager"}
    assert summary["results"]["ort"]["calls"] >= 6 and summary["results"]["ort"]["img_per_s"] > 0
    assert summary["ratio_vs_eager"]["ort"] > 0


def test_foreign_cpu_is_machine_busy_time_minus_our_own(monkeypatch):
    readings = iter([(100.0, 10.0), (103.0, 11.0)])  # (machine busy s, own CPU s) at enter, exit
    clock = iter([50.0, 52.0])
    current = [0.0, 0.0]

    def busy():
        value = next(readings)
        current[:] = value
        return value[0]

    monkeypatch.setattr(benchmark, "_machine_busy_s", busy)
    monkeypatch.setattr(benchmark, "_own_cpu_s", lambda: current[1])
    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(benchmark.os, "cpu_count", lambda: 2)
    with benchmark.ForeignCpu() as load:
        pass
    # 3 s busy in 2 s on 2 CPUs, 1 s of it ours: others used 2 / 4 of the machine.
    assert load.share == 0.5


def test_foreign_cpu_sees_a_busy_child_process():
    import subprocess
    import sys

    with benchmark.ForeignCpu() as load:
        child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 0.8\nwhile time.time() < end: pass"])
        child.wait()
    assert load.share >= 0.25  # one of the CPUs was busy with someone else's work


def test_a_disturbed_batch_size_is_measured_again_and_the_calmest_attempt_kept(monkeypatch):
    shares = iter([0.5, 0.3, 0.05, 0.9])

    class FakeLoad:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.share = next(shares)

    monkeypatch.setattr(benchmark, "ForeignCpu", FakeLoad)
    monkeypatch.setattr(benchmark, "SWITCH_PAUSE_S", 0.0)
    waits = []
    monkeypatch.setattr(benchmark, "wait_for_quiet", lambda share, wait: waits.append((share, wait)))
    settings = benchmark.BenchSettings(models=[], batch_sizes=[1], rounds=1, budget_s=0.0, min_iters=1,
                                       remeasure=2, max_foreign_cpu=0.1, quiet_wait_s=7.0)
    lines = []
    summary = benchmark.measure_batch({"ort": lambda x: None, "eager": lambda x: None}, np.zeros((1, 3)),
                                      settings, "m", log=lines.append)
    assert summary["attempts"] == 3 and summary["foreign_cpu"] == 0.05
    assert waits == [(0.1, 7.0), (0.1, 7.0)] and "50% of the CPUs" in lines[0]
    settings.remeasure = 0
    assert benchmark.measure_batch({"ort": lambda x: None}, np.zeros((1, 3)), settings, "m")["foreign_cpu"] == 0.9


def test_best_figures_pick_each_backends_own_best_batch():
    batches = [
        {"batch_size": 1, "results": {"ort": {"img_per_s": 10.0}, "eager": {"img_per_s": 8.0}}},
        {"batch_size": 16, "results": {"ort": {"img_per_s": 30.0}, "eager": {"img_per_s": 5.0}}},
    ]
    best = benchmark.best_figures(batches, ["ort", "eager"])
    assert best["best"] == {"ort": {"batch_size": 16, "img_per_s": 30.0}, "eager": {"batch_size": 1, "img_per_s": 8.0}}
    assert best["best_ratio_vs_eager"] == {"ort": 3.75}


# --- docs sections -----------------------------------------------------------------------

def test_generated_sections_are_replaced_and_hand_written_text_is_kept():
    text = ("# Benchmarks\n\nLead's note on preprocess.\n\n"
            + benchmark.MARKER_BEGIN.format(name="run") + "\nold run\n" + benchmark.MARKER_END.format(name="run")
            + "\n\nHand-written eval remarks, *kept*.\n")
    once = benchmark.replace_sections(text, {"run": "new run", "inference": "table"})
    assert "old run" not in once and "new run" in once
    assert once.startswith("# Benchmarks\n\nLead's note on preprocess.\n\n")
    assert "\n\nHand-written eval remarks, *kept*.\n" in once
    # A section not in the file is appended after the hand-written text.
    assert once.index("Hand-written eval remarks") < once.index("table")
    twice = benchmark.replace_sections(once, {"run": "newer run"})
    assert twice == once.replace("new run", "newer run")
    assert twice.count(benchmark.MARKER_END.format(name="run")) == 1


def test_sections_with_regex_characters_in_the_body_are_written_verbatim():
    body = r"a \1 backslash and $dollar (group)"
    out = benchmark.replace_sections("", {"run": "x"})
    out = benchmark.replace_sections(out, {"run": body})
    assert body in out


# --- the whole command on a tiny registered model -----------------------------------------

def test_quick_bench_on_a_tiny_model_writes_json_docs_and_plot(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "SWITCH_PAUSE_S", 0.02)  # the tiny model's threads idle at once
    monkeypatch.setattr(benchmark, "bench_preprocess_stage",
                        lambda settings: {"images": settings.preprocess_count, "single_vs_baseline": 2.5})

    def eval_missing(settings):
        raise FocalinferError("no eval bench here")

    monkeypatch.setattr(benchmark, "bench_eval_stage", eval_missing)
    docs = tmp_path / "docs" / "benchmarks.md"
    docs.parent.mkdir()
    docs.write_text("# Benchmarks\n\nKeep me.\n")
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    result = CliRunner().invoke(_cli(), [
        "bench", "all", "--quick", "--models", TINY, "--batch-sizes", "1,16", "--json", str(out),
        "--docs", str(docs), "--plot", str(plot), "--workdir", str(tmp_path / "work"), "--threads", "1",
        "--backends", "ort,ort_naive,ort_cpu,eager",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["schema"] == benchmark.SCHEMA and figures["quick"] is True
    assert figures["command"].startswith("focalinfer bench all --quick")
    assert {"cpu", "threads", "torch", "onnxruntime"} <= set(figures["machine"])
    assert figures["gemm"]["limit_gflops"] == max(figures["gemm"][k] for k in
                                                  ("torch_gflops", "numpy_gflops", "onnxruntime_gflops"))
    assert figures["preprocess"] == {"images": 120, "single_vs_baseline": 2.5}
    assert "no eval bench here" in figures["eval"]["skipped"]
    tiny = figures["models"][TINY]
    assert [b["batch_size"] for b in tiny["batches"]] == [1, 16]
    assert set(tiny["backends"]) == {"ort", "ort_naive", "ort_cpu", "eager"}  # the tiny MLP fuses
    for batch in tiny["batches"]:
        assert set(batch["ratio_vs_eager"]) == {"ort", "ort_naive", "ort_cpu"}
        assert batch["attempts"] == 1 and 0 <= batch["foreign_cpu"] <= 1  # --quick never re-measures
        for backend in tiny["backends"]:
            res = batch["results"][backend]
            assert res["img_per_s"] > 0 and 0 < res["fraction_of_limit"] < 1
            assert set(res["latency_ms"]) == {"p50", "p90", "p99", "mean"}
    assert tiny["macs_per_image"] == {"rewritten": TINY_MACS, "naive": TINY_MACS}
    graphs = tiny["graphs"]
    assert graphs["naive_nodes"] > 0 and graphs["rewritten_nodes"] > 0
    assert "BatchNormalization" in graphs["ops_removed_by_rewrites"] or graphs["naive_nodes"] >= graphs["rewritten_nodes"]
    assert graphs["cpu_graph"]["parity"]["passed"] is True
    targets = {t["target"]: t for t in figures["targets"]}
    focal = [t for t in targets.values() if t["model"] == "focal-fast-s"]
    assert len(focal) == 2 and all(t["met"] is None and t["not_measured"] for t in focal)
    assert targets[f"{TINY}: best onnxruntime / best eager img/s"]["value"] == tiny["best_ratio_vs_eager"]["ort"]

    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nKeep me.\n")
    for section in ("run", "preprocess", "eval", "inference", "graphs"):
        assert benchmark.MARKER_BEGIN.format(name=section) in text
    assert "quick run" in text and f"#### {TINY}" in text and figures["machine"]["cpu"] in text
    assert "QUICK run" in result.output
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not plot.exists() and "pip install 'focalinfer[plot]'" in result.output
    else:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A rerun reuses the exports (no second export) and keeps the hand-written text once.
    rerun = CliRunner().invoke(_cli(), [
        "bench", "all", "--quick", "--models", TINY, "--batch-sizes", "1", "--skip", "preprocess,eval",
        "--docs", str(docs), "--workdir", str(tmp_path / "work"), "--threads", "1",
    ])
    assert rerun.exit_code == 0, rerun.output
    assert "reusing checkpoint and exports" in rerun.output and "export(s)" not in rerun.output
    quick_default = json.loads((tmp_path / "work" / "partial-results.json").read_text())["models"][TINY]
    assert set(quick_default["backends"]) == {"ort", "eager"}  # --quick times the runner's graph against eager
    text2 = docs.read_text()
    assert text2.count("Keep me.") == 1 and text2.count(benchmark.MARKER_BEGIN.format(name="run")) == 1
    assert "single_vs_baseline" in text2  # the preprocess section of the first run was left alone


class FrozenBatchNet(TinyNet):
    """Computes its batch count with int(), which tracing freezes (as the official Focal code does)."""

    def forward(self, x):
        x = self.stem(x)
        batch = int(x.shape[0])
        x = x.reshape(batch, 8, -1).transpose(1, 2)
        x = x + self.mlp(self.norm(x))
        return self.head(x.mean(1))


def test_a_graph_whose_dynamic_batch_fails_parity_is_exported_per_batch_size(tiny_model, tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setitem(registry._REGISTRY, TINY, dataclasses.replace(tiny_model, builder=FrozenBatchNet))
    prepared = benchmark.prepare_model(TINY, tmp_path, [1, 3], log=lambda line: None, threads=1)
    for graph in prepared.graphs.values():
        assert not graph.dynamic and sorted(graph.paths) == ["1", "3"] and graph.error is None
        assert "dynamic-batch export fails parity" in graph.note
    assert prepared.macs["rewritten"]["per_image"] == TINY_MACS
    runners = benchmark.ModelRunners(prepared, threads=1)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
    by_backend = runners.for_batch(3)
    assert {"ort", "ort_naive", "eager"} <= set(by_backend)
    eager = by_backend["eager"](x)[0]
    for backend in ("ort", "ort_naive"):
        np.testing.assert_allclose(by_backend[backend](x)[0], eager, atol=1e-4)
    assert runners.paths(3)["ort"].name == f"{TINY}.bs3.onnx"
    again = benchmark.prepare_model(TINY, tmp_path, [1, 3, 4], log=lambda line: None, threads=1)
    assert sorted(again.graphs["rewritten"].paths) == ["1", "3", "4"]  # only batch 4 was added


def _cli():
    from focalinfer.cli import cli

    return cli


def test_bad_flags_are_one_line_errors(tiny_model):
    runner = CliRunner()
    unknown = runner.invoke(_cli(), ["bench", "all", "--quick", "--models", "nope", "--skip", "preprocess,eval"])
    assert unknown.exit_code == 2 and "unknown model 'nope'" in unknown.output and "Traceback" not in unknown.output
    bad = runner.invoke(_cli(), ["bench", "all", "--quick", "--batch-sizes", "1,x"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output
    stage = runner.invoke(_cli(), ["bench", "all", "--quick", "--skip", "everything"])
    assert stage.exit_code == 2 and "choose from" in stage.output
    backends = runner.invoke(_cli(), ["bench", "all", "--quick", "--backends", "eager,tensorrt"])
    assert backends.exit_code == 2 and "including ort" in backends.output


# --- the CPU-only graph -----------------------------------------------------------------------

def test_cpu_graph_is_written_beside_fuses_and_keeps_parity(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    record = cpu_graph.build_cpu_graph(path, samples=4)
    assert record["path"] == str(path.with_name("tiny.cpu.onnx"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the ATC graph is untouched
    assert record["fused"].get("LayerNormalization") == 1 and record["fused"].get("Gelu", 0) + \
        record["fused"].get("BiasGelu", 0) == 1
    assert record["nodes_after"] < record["nodes_before"]
    parity = record["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= parity["bound"]
    ops = [n.op_type for n in onnx.load(record["path"]).graph.node]
    assert "Erf" not in ops and ops.count("ReduceMean") == 1  # only the token pooling is left


def test_cpu_graph_parity_catches_a_graph_that_computes_something_else(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    other = onnx.load(str(path))
    weight = next(t for t in other.graph.initializer if t.name == "head.weight")
    values = numpy_helper.to_array(weight) * 1.01
    weight.CopyFrom(numpy_helper.from_array(values.astype(np.float32), weight.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(other, str(changed))
    parity = cpu_graph.cpu_graph_parity(path, changed)
    assert not parity["passed"] and parity["max_abs_diff"] > parity["bound"]


def test_cpu_graph_never_replaces_the_exported_graph(tiny_onnx):
    path, _ = tiny_onnx
    with pytest.raises(FocalinferError, match="must not replace"):
        cpu_graph.build_cpu_graph(path, out=path)


def test_session_options_are_the_chosen_ones():
    import onnxruntime as ort

    options = onnxrt.session_options(threads=3)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.enable_cpu_mem_arena and options.enable_mem_pattern


def test_optimized_cache_is_reused_and_rebuilt_when_the_graph_changes(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    source = tmp_path / "m.onnx"
    source.write_bytes(path.read_bytes())
    cache = tmp_path / "m.opt.onnx"
    x = np.ones((2, 3, 32, 32), np.float32)
    first = onnxrt.make_session(source, threads=1, optimized_cache=cache).run(None, {"image": x})[0]
    stamp = cache.stat().st_mtime_ns
    again = onnxrt.make_session(source, threads=1, optimized_cache=cache).run(None, {"image": x})[0]
    assert cache.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again, first, atol=1e-6)
    time.sleep(0.01)
    source.write_bytes(path.read_bytes())  # same bytes, new mtime: the key no longer matches
    onnxrt.make_session(source, threads=1, optimized_cache=cache)
    assert cache.stat().st_mtime_ns != stamp


def test_profile_sums_kernel_time_by_op_type(tiny_onnx):
    path, _ = tiny_onnx
    profile = cpu_graph.profile_op_types(path, batch=2, runs=2, threads=1)
    ops = {row["op"]: row for row in profile["op_types"]}
    assert "MatMul" in ops or "FusedMatMul" in ops or "Gemm" in ops
    assert any(op.startswith("Conv") or op == "FusedConv" for op in ops)
    assert abs(sum(row["share"] for row in profile["op_types"]) - 1.0) < 0.01
    assert profile["per_run_ms"] > 0


def test_bench_preprocess_runs_float32_and_uint8_side_by_side(tmp_path):
    from focalinfer.bench.preprocess import bench_preprocess

    figures = bench_preprocess(count=3, rounds=2, workers=1, workdir=tmp_path)
    assert (figures["float32_bytes_per_image"], figures["uint8_bytes_per_image"]) == (602_112, 150_528)
    for key in ("baseline", "workers_1", "uint8_workers_1"):
        assert figures[f"{key}_img_per_s"] > 0
    assert figures["uint8_vs_float32_workers_1"] > 0 and figures["cpu"]
    assert not list(tmp_path.iterdir())  # its scratch folder is removed
