"""One resolved plan per inference run: built once, plain data, what the infer record stores, and
each fact on the way from a model file to its score derived once."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from focalinfer import records, util
from focalinfer.infer import InferPlan, execute, plan_inference
from focalinfer.records import InferRecord
from tinynet import write_databin


@pytest.fixture(scope="module")
def tiny(tiny_onnx, tmp_path_factory):
    """The tiny classifier of tests/tinynet.py (dynamic batch, 10 classes), 6 input files with a
    manifest, and a label file."""
    root = tmp_path_factory.mktemp("plan")
    names = [f"img_{i}" for i in range(6)]
    images = [np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32) for i in range(6)]
    data = write_databin(root / "databin", images, names)
    labels = root / "val_label.txt"
    labels.write_text("".join(f"{n}.JPEG {i % 10}\n" for i, n in enumerate(names)))
    return {"onnx": tiny_onnx[0], "data": data, "labels": labels, "root": root}


def test_the_plan_is_plain_data_that_round_trips_through_json(tiny, tmp_path):
    plan = plan_inference(tiny["onnx"], tiny["data"], output=tmp_path, output_dirname="r", batch_size=4,
                          backend="onnxruntime", args=["focalinfer", "infer"])
    assert isinstance(plan, InferPlan) and plan.backend == "onnxruntime" and len(plan.files) == 6
    assert plan.model.sha256 == util.sha256_file(tiny["onnx"]) and plan.model.num_classes == 10
    again = InferPlan.from_dict(json.loads(json.dumps(plan.as_dict())))
    assert again == plan
    with pytest.raises(Exception):
        plan.batch_size = 8  # frozen: nothing after planning changes it


def test_the_infer_record_stores_the_plan_that_ran(tiny, tmp_path):
    plan = plan_inference(tiny["onnx"], tiny["data"], output=tmp_path, output_dirname="r", batch_size=4,
                          backend="onnxruntime")
    result = execute(plan, progress=False)
    on_disk = InferRecord.read(result.output_dir)
    assert result.plan is plan and result.record == on_disk
    assert InferPlan.from_dict(on_disk.plan) == plan
    assert (on_disk.batch_size, on_disk.files_written, on_disk.backend) == (4, 6, "onnxruntime")


def test_a_device_share_is_the_same_plan_with_its_files_and_folder(tiny, tmp_path):
    plan = plan_inference(tiny["onnx"], tiny["data"], output=tmp_path, output_dirname="r", batch_size=2,
                          backend="onnxruntime", device="0,1", threads=2)
    share = plan.for_device(1, list(plan.files[3:]), "r/device1", 1)
    assert share.devices == (1,) and share.runner.device == 1 and share.runner.threads == 1
    assert share.files == plan.files[3:] and share.model == plan.model and share.output_dir.endswith("r/device1")


def test_eval_derives_each_fact_once_and_reads_no_record_back(tiny, tmp_path, monkeypatch):
    """From a model file to its score: one identity, one input listing, one backend decision and
    check, each file hashed once, and the infer record read only by the folder's claim (resume or
    not), never back from disk after the run."""
    from focalinfer import pipeline
    from focalinfer.backend import table
    from focalinfer.infer import plan as plan_module

    calls: Counter = Counter()

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(pipeline, "identify_model", counting("identify", records.identify_model))
    monkeypatch.setattr(plan_module, "identify_model", counting("identify", records.identify_model))
    monkeypatch.setattr(plan_module, "read_input_set", counting("inputs", plan_module.read_input_set))
    monkeypatch.setattr(plan_module, "decide_backend", counting("backend", table.decide_backend))
    monkeypatch.setattr(plan_module, "check_backend", counting("check", table.check_backend))
    monkeypatch.setattr(table, "check_backend", counting("check", table.check_backend))
    hashed: Counter = Counter()
    real_sha = util.sha256_file

    def sha(path):
        hashed[str(path)] += 1
        return real_sha(path)

    for module in (util, records):
        monkeypatch.setattr(module, "sha256_file", sha, raising=False)
    import focalinfer.postprocess.scoring as scoring
    monkeypatch.setattr(scoring, "sha256_file", sha)
    real_read = InferRecord.read.__func__
    monkeypatch.setattr(InferRecord, "read", classmethod(counting("record", real_read)))

    result, path = pipeline.evaluate(tiny["labels"], model_file=tiny["onnx"], input_dir=tiny["data"],
                                     output=tmp_path / "result.json", batch_size=4, backend="auto", progress=False)
    assert result.summary["count"] == 6 and result.summary["batch_size"] == 4
    # The record is read once, by the claim on the folder (resume or not), never back after the run.
    assert calls == {"identify": 1, "inputs": 1, "backend": 1, "check": 1, "record": 1}
    assert hashed and max(hashed.values()) == 1, hashed
    assert str(tiny["onnx"]) in hashed


# --- a Ray plan: decided by the nodes where only they can decide ----------------------------------


def test_a_ray_plan_leaves_auto_to_the_nodes_and_round_trips(tiny, tmp_path, monkeypatch):
    from focalinfer.backend import table

    monkeypatch.setattr(table.auto, "choose", lambda *a, **k: pytest.fail("auto measured on the driver"))
    plan = plan_inference(tiny["onnx"], tiny["data"], output=tmp_path, output_dirname="r", batch_size=4,
                          backend="auto", ray="auto", ray_actors=3, ray_ship_inputs=True)
    assert (plan.backend, plan.ray, plan.ray_actors, plan.ray_ship_inputs) == ("auto", "auto", 3, True)
    assert InferPlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    assert plan.record().plan["ray"] == "auto"


def test_a_ray_plan_of_an_om_needs_no_ais_bench_on_the_driver(tiny, tmp_path, monkeypatch):
    import shutil

    from focalinfer.backend import ais_bench

    om = tmp_path / "tiny_bs4.om"
    shutil.copy(tiny["onnx"], om)
    monkeypatch.setattr(ais_bench, "choose_mode", lambda *a, **k: pytest.fail("ais_bench looked for on the driver"))
    plan = plan_inference(om, tiny["data"], output=tmp_path, output_dirname="r", ray="HOST:6379")
    assert (plan.backend, plan.ais_bench_mode, plan.ais_bench_python) == ("ais_bench", "api", None)


@pytest.mark.parametrize("flags, message", [
    ({"ray_actors": 2}, "--ray-actors and --ray-ship-inputs apply to a Ray run"),
    ({"ray_ship_inputs": True}, "--ray-actors and --ray-ship-inputs apply to a Ray run"),
    ({"ray": "auto", "input_dir": None}, "pass --input"),
    ({"ray": "auto", "device": "0,1"}, "--device does not apply with --ray"),
    ({"ray": "auto", "ais_bench_mode": "cli"}, "--ais-bench-mode cli does not apply with --ray"),
    ({"ray": "auto", "precision": "bf16"}, "--precision bf16 does not run with --ray"),
    ({"ray": "auto", "ray_actors": 0}, "--ray-actors 0: give at least 1"),
])
def test_flags_that_do_not_go_with_ray_are_refused_before_anything_runs(tiny, tmp_path, flags, message):
    from focalinfer.errors import UsageError

    settings = {"input_dir": tiny["data"], "output": tmp_path, "batch_size": 4, "backend": "onnxruntime", **flags}
    with pytest.raises(UsageError, match=message):
        plan_inference(tiny["onnx"], settings.pop("input_dir"), **settings)
    assert list(tmp_path.iterdir()) == []
