"""`eval --om` against each ais_bench generation's stand-in (docs/contract.md, "Generations").

The .om is focalinfer's own (the om stage through the atc stand-in), 7 inputs at batch 4 (the last
batch padded), one device and --device 0,1, API and CLI mode. Each must give the CPU run's
per-image top-5 and Acc, score every image exactly once, time with the device's own times (the
stand-in's device reports 5 ms a batch, unlike the host's clock) and add the devices' throughputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from focalinfer.atc import build_om
from focalinfer.backend.ais_bench import cli_argv
from focalinfer.cli import cli
from focalinfer.records import InferRecord, Manifest

IMAGES, BATCH, SIZE, DEVICE_MS = 7, 4, 16, 5.0


def run(*args, code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A tiny classifier's static batch-4 ONNX, 7 inputs with a manifest, labels (PyTorch's top-1 for
    even images, its 4th choice for odd ones) and the CPU run's result.json."""
    root = tmp_path_factory.mktemp("chain")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 1000)).eval()
    onnx_path = root / "tiny_bs4.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(BATCH, 3, SIZE, SIZE),), str(onnx_path), input_names=["image"],
                          output_names=["class"], opset_version=11, dynamo=False)
    databin = root / "databin"
    databin.mkdir()
    rng = np.random.default_rng(3)
    names = [f"ILSVRC2012_val_{i:08d}" for i in range(1, IMAGES + 1)]
    labels = []
    for i, name in enumerate(names):
        image = rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
        image.tofile(databin / f"{name}.bin")
        with torch.no_grad():
            ranked = torch.topk(net(torch.from_numpy(image))[0], 5).indices.tolist()
        labels.append(f"{name}.JPEG {ranked[0] if i % 2 == 0 else ranked[3]}\n")
    Manifest(model="tiny", preset="official", transform={}, shape=[1, 3, SIZE, SIZE],
             files=[{"source": f"{n}.JPEG", "bin": f"{n}.bin"} for n in names]).write(databin)
    label_file = root / "val_label.txt"
    label_file.write_text("".join(labels))
    cpu_json = root / "cpu.json"
    run("eval", "--onnx", onnx_path, "--labels", label_file, "--input", databin, "--output", cpu_json,
        "--backend", "onnxruntime", "--quiet")
    return {"onnx": onnx_path, "databin": databin, "labels": label_file, "names": names, "cpu_dir": root / "cpu",
            "cpu": json.loads(cpu_json.read_text())}


@pytest.fixture()
def om(chain, tmp_path, fake_atc):
    (build,) = build_om(chain["onnx"], [BATCH], out_dir=tmp_path / "om", progress=False)
    return build.om_path


@pytest.mark.parametrize("device", ["0", "0,1"])
@pytest.mark.parametrize("mode", ["api", "cli"])
def test_eval_om_matches_the_cpu_run(chain, om, tmp_path, request, mode, device, ais_bench_generation, monkeypatch):
    request.getfixturevalue(f"standin_{mode}")
    monkeypatch.setenv("STANDIN_DEVICE_MS", str(DEVICE_MS))
    out = tmp_path / "om.json"
    res = run("eval", "--om", om, "--labels", chain["labels"], "--input", chain["databin"], "--output", out,
              "--device", device, "--ais-bench-mode", mode, "--quiet")
    data, cpu = json.loads(out.read_text()), chain["cpu"]
    s = data["summary"]
    assert (s["Acc@1"], s["Acc@5"]) == (cpu["summary"]["Acc@1"], cpu["summary"]["Acc@5"]) and 0 < s["Acc@1"] < 100
    assert data["images"] == cpu["images"]  # each image's label, top-5 and hits
    assert (s["count"], s["missing"], s["extra"], s["invalid"]) == (IMAGES, 0, 0, 0)
    results = Path(s["results_dir"])
    written = sorted(p.name for p in results.rglob("*_0.txt"))
    assert written == sorted(f"{n}_0.txt" for n in chain["names"])  # every image exactly once
    devices = len(device.split(","))
    # The device's own 5 ms a batch: 1000 × 4 / 5 per device, added over devices; real images over the
    # device time: 7 images in 2 batches of 5 ms on one device, 4 + 3 in one batch each on two.
    assert s["ais_bench_throughput"] == pytest.approx(devices * 1000 * BATCH / DEVICE_MS)
    assert s["images_per_s"] == pytest.approx(IMAGES / ((2 if devices == 1 else 1) * DEVICE_MS / 1000))
    assert f"{s['images_per_s']:.2f} images/s" in res.output
    assert InferRecord.read(results).ais_bench_generation == ais_bench_generation
    # The folder scored again with --results, and compared with the CPU run's, reads either layout.
    again = tmp_path / "again.json"
    run("eval", "--results", results, "--labels", chain["labels"], "--output", again)
    assert json.loads(again.read_text())["images"] == cpu["images"]
    assert json.loads(again.read_text())["summary"]["ais_bench_throughput"] == pytest.approx(s["ais_bench_throughput"])
    compared = run("compare", chain["cpu_dir"], results, "--json", tmp_path / "cmp.json")
    assert json.loads((tmp_path / "cmp.json").read_text())["summary"]["count"] == IMAGES, compared.output


def test_a_2024_run_without_divide_input_is_named_when_scored(chain, om, tmp_path, standin_cli, ais_bench_generation):
    """What focalinfer used to start: --device 0,1 without --divide_input. On 2024 every device ran every
    image; eval says so in one line instead of "no output files"."""
    argv = cli_argv(sys.executable, str(om), str(chain["databin"]), str(tmp_path), "r", "TXT", None, "0,1", 1, 1,
                    "zero", generation="2023")
    subprocess.run(argv, check=True, capture_output=True, env=dict(os.environ))
    dirs = sorted(p.name for p in (tmp_path / "r").iterdir() if p.is_dir())
    args = ("eval", "--results", tmp_path / "r", "--labels", chain["labels"], "--output", tmp_path / "r.json")
    if ais_bench_generation == "2023":  # it always splits: nothing was wrong
        assert dirs == ["device0", "device1"]
        run(*args)
        assert json.loads((tmp_path / "r.json").read_text())["images"] == chain["cpu"]["images"]
        return
    assert dirs == ["device0_0", "device1_1"]
    res = run(*args, code=1)
    assert res.output.count("\n") == 1 and "two device folders hold the same image" in res.output
    assert "--divide_input true" in res.output
