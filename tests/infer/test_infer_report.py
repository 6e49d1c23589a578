"""What `focalinfer infer` says about speed: images/s only for a run over images (devices added),
the labelled loop time for pure inference (issue 20)."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.layout import real_images_per_s
from focalinfer.records import Manifest


def infer(*args) -> str:
    res = CliRunner().invoke(cli, ["infer", *[str(a) for a in args], "--quiet"])
    assert res.exit_code == 0, res.output
    return res.output


def test_pure_inference_reports_its_loop_time_not_images(tiny_onnx, tmp_path):
    onnx_path, _ = tiny_onnx
    out = infer("--model-file", onnx_path, "--output", tmp_path, "--output-dirname", "pure", "--batch-size", 2,
                "--loop", 3, "--backend", "onnxruntime")
    times = json.loads((tmp_path / "pure_summary.json").read_text())["npu_compute_time_list"]
    assert f"infer: 1 files written to {tmp_path / 'pure'}" in out  # pure_infer_data_0.txt, as ais_bench writes
    assert f"pure inference (no images): 3 timed runs of batch 2, mean {np.mean(times):.3f} ms a run" in out
    assert "images/s" not in out and "samples/s" not in out


def test_several_devices_add_their_images_per_second(tiny_onnx, tmp_path):
    onnx_path, _ = tiny_onnx
    data = tmp_path / "databin"
    data.mkdir()
    names = [f"img_{i}" for i in range(6)]
    for name in names:
        np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32).tofile(data / f"{name}.bin")
    Manifest(model=None, preset="official", transform={}, shape=[1, 3, 32, 32],
             files=[{"source": f"{n}.JPEG", "bin": f"{n}.bin"} for n in names]).write(data)
    out = infer("--model-file", onnx_path, "--input", data, "--output", tmp_path, "--output-dirname", "multi",
                "--batch-size", 2, "--device", "0,1", "--backend", "onnxruntime")
    per_device = [real_images_per_s(json.loads((tmp_path / "multi" / f"device{d}_summary.json").read_text()), 2)
                  for d in (0, 1)]
    assert all(per_device) and f"{sum(per_device):.1f} images/s" in out
    assert "infer: 6 files written" in out

