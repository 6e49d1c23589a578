"""`focalinfer bench all` end to end on a tiny registered model; per-model preparation."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from focalinfer import registry
from focalinfer.bench import inference, prepare, report, run, timing
from focalinfer.bench.settings import SCHEMA
from focalinfer.errors import FocalinferError
from focalinfer.metrics import parity_bound
from tinynet import TINY, TINY_MACS, TinyNet


def test_quick_bench_on_a_tiny_model_writes_json_docs_and_plot(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(timing, "SWITCH_PAUSE_S", 0.02)  # the tiny model's threads idle at once
    monkeypatch.setattr(run, "bench_preprocess_stage",
                        lambda settings: {"images": settings.preprocess_count, "single_vs_baseline": 2.5})

    def eval_missing(settings):
        raise FocalinferError("no eval bench here")

    monkeypatch.setattr(run, "bench_eval_stage", eval_missing)
    docs = tmp_path / "docs" / "benchmarks.md"
    docs.parent.mkdir()
    docs.write_text("# Benchmarks\n\nKeep me.\n")
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    result = CliRunner().invoke(_cli(), [
        "bench", "all", "--quick", "--models", TINY, "--batch-sizes", "1,16", "--json", str(out),
        "--docs", str(docs), "--plot", str(plot), "--workdir", str(tmp_path / "work"), "--threads", "1",
        "--backends", "ort,ov,ort_naive,ov_naive,ort_cpu,eager",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["schema"] == SCHEMA and figures["quick"] is True
    assert figures["command"].startswith("focalinfer bench all --quick")
    assert {"cpu", "threads", "torch", "onnxruntime", "openvino"} <= set(figures["machine"])
    runtimes = ("torch_gflops", "onnxruntime_gflops", "openvino_gflops")  # the goal's GEMM limit; numpy is shown only
    assert figures["gemm"]["limit_gflops"] == max(figures["gemm"][k] for k in runtimes) > 0
    assert figures["preprocess"] == {"images": 120, "single_vs_baseline": 2.5}
    assert "no eval bench here" in figures["eval"]["skipped"]
    tiny = figures["models"][TINY]
    assert [b["batch_size"] for b in tiny["batches"]] == [1, 16]
    assert set(tiny["backends"]) == {"ort", "ov", "ort_naive", "ov_naive", "ort_cpu", "eager"}  # the tiny MLP fuses
    assert tiny["peers"] == ["ort_naive", "ov_naive", "eager"]
    for batch in tiny["batches"]:
        assert set(batch["ratio_vs_eager"]) == {"ort", "ov", "ort_naive", "ov_naive", "ort_cpu"}
        results = batch["results"]
        assert batch["fastest"] == max(results, key=lambda b: results[b]["img_per_s"])
        # tests/conftest.py pins --backend auto to onnxruntime, so focalinfer's path is `ort` here.
        ours = batch["ours"]
        assert ours["backend"] == "ort" and ours["img_per_s"] == results["ort"]["img_per_s"]
        assert ours["best_peer"] == max(tiny["peers"], key=lambda b: results[b]["img_per_s"])
        assert ours["vs_best_peer"] > 0 and ours["fraction_of_limit"] == results["ort"]["fraction_of_limit"]
        assert batch["attempts"] == 1 and 0 <= batch["foreign_cpu"] <= 1  # --quick never re-measures
        for backend in tiny["backends"]:
            res = batch["results"][backend]
            # the rate it reached over the machine's limit, whatever both are here (rounded to 4 places)
            fraction = res["img_per_s"] * 2 * TINY_MACS / (figures["gemm"]["limit_gflops"] * 1e9)
            assert res["img_per_s"] > 0 and res["fraction_of_limit"] == pytest.approx(fraction, abs=1e-4)
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
    goal = {g["target"].split(";")[0]: g for g in figures["goal"]}
    # The goal is read from the side-by-side measurement after the sweep, not across its batch sizes.
    side = tiny["side_by_side"]
    assert {f"{p}@{tiny['best'][p]['batch_size']}" for p in tiny["peers"]} < set(side["configs"])
    assert f"focalinfer@{tiny['best_ours']['batch_size']}" in side["configs"] and "focalinfer@16" in side["configs"]
    assert goal[f"{TINY}: focalinfer ÷ best peer (best batches)"]["value"] == side["vs_best_peer"]
    cliff = goal[f"{TINY}: slowest batch 4–64 ÷ best batch"]  # batch 16 is the only one in 4–64 here
    assert cliff["value"] == side["vs_best_batch"]["16"]
    assert cliff["met"] == (cliff["value"] >= 0.85) and "bs 16" in cliff["detail"] and "side by side" in cliff["detail"]
    assert f"{TINY}: fraction of the fp32 GEMM limit (best batch)" not in goal  # only the lead model has that row

    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nKeep me.\n")
    assert "### Goal (issue 13)" in text and "one side-by-side measurement" in text and "focalinfer ÷ best peer" in text and " ◀" in text and " ★" in text
    for section in ("run", "preprocess", "eval", "goal", "inference", "graphs"):
        assert report.MARKER_BEGIN.format(name=section, by="focalinfer bench all") in text
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
    # --quick times focalinfer's path against its peers; the fused CPU graph is left out.
    assert set(quick_default["backends"]) == {"ort", "ov", "ort_naive", "ov_naive", "eager"}
    text2 = docs.read_text()
    assert text2.count("Keep me.") == 1 and text2.count(report.MARKER_BEGIN.format(name="run", by="focalinfer bench all")) == 1
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
    prepared = prepare.prepare_model(TINY, tmp_path, [1, 3], log=lambda line: None, threads=1)
    for graph in prepared.graphs.values():
        assert not graph.dynamic and sorted(graph.paths) == ["1", "3"] and graph.error is None
        assert "dynamic-batch export fails parity" in graph.note
    assert prepared.macs["rewritten"]["per_image"] == TINY_MACS
    runners = inference.ModelRunners(prepared, threads=1)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
    by_backend = runners.for_batch(3)
    assert {"ort", "ort_naive", "eager"} <= set(by_backend)
    eager = by_backend["eager"](x)[0]
    for backend in ("ort", "ort_naive"):  # other kernels than PyTorch's: the export's parity bound
        assert np.abs(by_backend[backend](x)[0] - eager).max() <= parity_bound(eager)
    assert runners.paths(3)["ort"].name == f"{TINY}.bs3.onnx"
    again = prepare.prepare_model(TINY, tmp_path, [1, 3, 4], log=lambda line: None, threads=1)
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


def test_focalinfers_path_is_timed_in_the_micro_batches_auto_chose(tiny_model, tmp_path, monkeypatch):
    from focalinfer.backend.auto import Choice
    from focalinfer.bench.settings import BenchSettings

    monkeypatch.setattr(timing, "SWITCH_PAUSE_S", 0.0)
    chosen = {1: Choice("onnxruntime"), 16: Choice("openvino", 4)}
    monkeypatch.setattr(inference, "ours_choice", lambda prepared, size, threads, log: chosen[size])
    prepared = prepare.prepare_model(TINY, tmp_path, [1, 16], log=lambda line: None, threads=1,
                                     backends=("ort", "ov", "eager"))
    runners = inference.ModelRunners(prepared, 1, ("ort", "ov", "eager"))
    x = np.random.default_rng(2).standard_normal((16, 3, 32, 32), dtype=np.float32)
    whole = runners.for_batch(16)["ov"](x)[0]
    split = runners.ours(chosen[16], 16)(x)[0]
    # 4 images per call compile other kernels than 16 (which ones depends on the CPU): the parity bound
    assert np.abs(split - whole).max() <= parity_bound(whole)

    settings = BenchSettings(models=[TINY], batch_sizes=[1, 16], rounds=1, budget_s=0.0, min_iters=1, remeasure=0,
                             backends=("ort", "ov", "ort_naive", "eager"), profile=False)
    record = inference.bench_model(prepared, settings, limit_gflops=100.0, log=lambda line: None)
    bs1, bs16 = record["batches"]
    assert bs1["ours"]["backend"] == "ort" and "focalinfer" not in bs1["results"]
    assert bs16["ours"]["backend"] == "focalinfer" and bs16["ours"]["runtime"] == "openvino"
    assert bs16["ours"]["micro_batch"] == 4 and bs16["ours"]["img_per_s"] == bs16["results"]["focalinfer"]["img_per_s"]
    # Prepared without the plain export, so eager is the only peer (and ort_naive is not timed).
    assert "focalinfer" in record["backends"] and record["peers"] == ["eager"] and "ort_naive" not in bs16["results"]
    assert all(b["rss_gib"] > 0 for b in record["batches"])  # what each batch size's backends held together
    # The goal's cross-batch comparisons again, interleaved: focalinfer at its best batch and at 16
    # (batch sizes 4-64), eager at its best batch.
    side = record["side_by_side"]
    ours_best = max(record["batches"], key=lambda b: b["ours"]["img_per_s"])["batch_size"]
    want = {f"focalinfer@{s}" for s in {ours_best, 16}} | {f"eager@{record['best']['eager']['batch_size']}"}
    assert set(side["configs"]) == want and side["rounds"] == 1
    assert set(side["vs_best_batch"]) == {"16"} and side["vs_best_peer"] > 0 and 0 < side["fraction_of_limit"]


def test_no_onnxruntime_session_outlives_its_batch_size(tiny_model, tmp_path):
    """A session keeps the arena memory of every shape it ran: kept across batch sizes 1–64, the
    sessions of Focal-fast-S ran a 24 GiB machine out of memory."""
    prepared = prepare.prepare_model(TINY, tmp_path, [1, 2], log=lambda line: None, threads=1, backends=("ort",))
    runners = inference.ModelRunners(prepared, 1, ("ort",))
    runners.for_batch(1)
    first = dict(runners.sessions)
    runners.for_batch(2)
    assert set(runners.sessions) == set(first)  # the dynamic graph: one path for both sizes
    assert all(runners.sessions[path] is not session for path, session in first.items())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim and /proc are glibc/Linux")
def test_memory_freed_between_batch_sizes_goes_back_to_the_os():
    chunks = [bytearray(4000) for _ in range(60_000)]  # ~240 MB of small heap blocks, below mmap's threshold
    chunks = chunks[-1:]  # all but the newest freed: glibc keeps the heap under it
    held = inference.resident_gib()
    assert inference.release_memory() is True
    assert inference.resident_gib() < held - 0.1
    del chunks
