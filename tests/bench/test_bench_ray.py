"""bench ray: the null model computes nothing and returns real outputs; the bench runs the real --ray
path on a Ray it starts here (and Ray Data beside it); the paper model's arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from focalinfer.bench import ray as bench_ray_module
from focalinfer.bench.ray import (
    DEVICE_COUNTS, EVAL_IMAGES, bench_ray, paper, render_scaling, write_null_inputs, write_null_model,
)


def test_the_null_model_returns_the_first_values_of_its_input(tmp_path):
    import onnx
    import onnxruntime as ort

    path = write_null_model(tmp_path / "null.onnx", size=8, classes=10)
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Flatten", "Slice"]  # nothing computed
    image = np.random.default_rng(0).standard_normal((3, 3, 8, 8), dtype=np.float32)
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    assert out.shape == (3, 10) and (out == image.reshape(3, -1)[:, :10]).all()


@pytest.mark.ray
def test_bench_ray_measures_the_real_path_on_a_ray_it_starts(tmp_path):
    cpu = tmp_path / "benchmarks.json"
    cpu.write_text(json.dumps({"machine": {"cpus_usable": 2},
                               "models": {"focal-fast-s": {"best_ours": {"img_per_s": 5.0}}}}))
    figures = bench_ray("local", images=32, batch_sizes=(1, 16), actors=2, workdir=tmp_path / "work",
                        cpu_figures=cpu, log=lambda line: None)
    assert [(r["batch_size"], r["ship_inputs"]) for r in figures["runs"]] == [(1, False), (1, True), (16, False),
                                                                              (16, True)]
    for run in figures["runs"]:
        assert run["images"] == 32 and len(run["actors"]) == 2 and run["driver_images_per_s"] > 0
        assert run["input_bytes_per_image"] == (3 * 224 * 224 * 4 if run["ship_inputs"] else 0)
        assert run["output_bytes_per_image"] > 1000 * 8  # TXT: 1000 values of "%f " each
    assert [(d["batch_size"], d["images"]) for d in figures["ray_data"]] == [(1, 32), (16, 32)]
    assert not list((tmp_path / "work" / "out").iterdir())  # each run's outputs are removed after it
    models = {(r["model"], r["device"]) for r in figures["paper"]}
    assert models == {("focal-fast-s", "310P3 NPU"), ("focal-fast-s", "CPU node (2 CPUs)"), ("van-b2", "310P3 NPU")}
    text = render_scaling(json.loads(json.dumps(figures)))  # as read back from --json
    assert "| 1 | paths (shared FS) |" in text and "| 16 | paths, through Ray Data |" in text
    assert "50,000 images on 64" in text


def test_paper_model_arithmetic(monkeypatch):
    monkeypatch.setattr(bench_ray_module, "NPU_310P3", {"focal-fast-s": (10.0, 10.0), "van-b2": (100.0, 100.0)})
    measured = {"driver_images_per_s": 100.0, "actor_wall_ms_per_batch": 0.0, "startup_s": 2.0}
    rows = paper({"by_batch": {1: {"by_path": measured}}}, {})
    slow, fast = rows
    assert (slow["model"], slow["devices_one_driver_feeds"]) == ("focal-fast-s", 10)
    assert slow["eval_seconds"] == {"1": 2.0 + EVAL_IMAGES / 10, "8": 2.0 + 6250 / 10,
                                    "64": 2.0 + EVAL_IMAGES / 100}  # 64 devices: the driver's 500 s
    assert fast["devices_one_driver_feeds"] == 1 and set(fast["eval_seconds"]) == {str(n) for n in DEVICE_COUNTS}
    slowed = paper({"by_batch": {1: {"by_path": {**measured, "actor_wall_ms_per_batch": 100.0}}}}, {})[0]
    assert slowed["effective_img_per_s"] == 5.0  # 100 ms per image of model + 100 ms of actor per batch of 1


def test_null_inputs_come_with_a_manifest(tmp_path):
    from focalinfer.infer.provenance import read_input_set

    folder = write_null_inputs(tmp_path / "in", 3, size=4)
    inputs = read_input_set(folder)
    assert [p.rsplit("/", 1)[1] for p in inputs.files] == ["null_00000.bin", "null_00001.bin", "null_00002.bin"]
    assert (folder / "null_00000.bin").stat().st_size == 3 * 4 * 4 * 4
