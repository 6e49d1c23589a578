"""uint8 files end to end: the shared normalisation, the CPU path over uint8 files, an AIPP .om
and a dynamic-batch .om through the atc and ais_bench stand-ins, and every mismatch error.

A small CNN at 224 px stands in for a classifier (the lead models' transforms, not their weights,
are what matters here); sample images of mixed sizes and modes are preprocessed both ways.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from focalinfer.atc import build_om
from focalinfer.cli import cli
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.infer import run_inference
from focalinfer.inputs import Normalization, normalize_nhwc
from focalinfer.metrics import compare_logits, parity_bound, topk_indices
from focalinfer.postprocess.compare import compare_results
from focalinfer.preprocess import preprocess
from focalinfer.preprocess.transform import normalization_table
from focalinfer.registry import get_model_spec
from focalinfer.samples import make_sample_set

IMAGES = 11  # batch 4 pads the last batch
MODELS = ("focal-fast-s", "van-b2")  # ImageNet mean/std, and 0.5/0.5


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("aipp")
    images = make_sample_set(root / "images", count=IMAGES, seed=5)
    dirs = {}
    for model in MODELS:
        for dtype in ("float32", "uint8"):
            dirs[model, dtype] = root / f"{model}-{dtype}"
            preprocess(model, images, dirs[model, dtype], dtype=dtype, workers=1, progress=False)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 7, stride=4), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 5, stride=4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 1000)).eval()
    onnx_path = root / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 224, 224),), str(onnx_path), input_names=["image"],
                          output_names=["class"], opset_version=11, dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}})
    labels = root / "labels.txt"
    shutil.copy(images / "val_label.txt", labels)
    return {"root": root, "dirs": dirs, "onnx": onnx_path, "labels": labels}


def outputs(result_dir: Path) -> dict[str, np.ndarray]:
    """stem → logits, from BIN or TXT outputs."""
    found = {}
    for path in sorted(result_dir.iterdir()):
        if path.suffix == ".bin":
            found[path.name[:-len("_0.bin")]] = np.fromfile(path, dtype=np.float32)
        elif path.suffix == ".txt":
            found[path.name[:-len("_0.txt")]] = np.array(path.read_text().split(), dtype=np.float64)
    return found


def stacked(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    assert sorted(a) == sorted(b) and len(a) == IMAGES
    return np.stack([a[k] for k in sorted(a)]), np.stack([b[k] for k in sorted(a)])


# --- the shared normalisation --------------------------------------------------------------


@pytest.mark.parametrize("model", ["focal-fast-s", "twins-altgvt-s", "evo-levit-256-384", "van-b2"])
def test_normalisation_is_the_aipp_formula_and_near_the_float32_path(model):
    t = get_model_spec(model).default_transform
    norm = Normalization(t.mean, t.std)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    got = normalize_nhwc(pixels, norm)
    # (pixel - 255·mean) · 1/(255·std), per pixel in float64, rounded once
    mean, std = np.array(t.mean), np.array(t.std)
    want = ((pixels.astype(np.float64) - 255 * mean) * (1 / (255 * std))).astype(np.float32).transpose(0, 3, 1, 2)
    assert got.dtype == np.float32 and got.shape == (2, 3, 5, 7) and np.array_equal(got, want)
    # the float32 files' (x/255 - mean)/std in float32 differs by their rounding only
    float32_path = normalization_table(t)
    levels = np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(3, axis=3)
    every_level = normalize_nhwc(levels, norm)[0, :, 0, :]
    limit = 6e-8 if t.mean == (0.5, 0.5, 0.5) else 4.8e-7
    assert 0 < np.abs(every_level - float32_path).max() <= limit
    out = np.full((2, 3, 5, 7), np.nan, np.float32)
    assert normalize_nhwc(pixels, norm, out=out) is out and np.array_equal(out, want)
    with pytest.raises(FocalinferError, match="uint8 \\(N, H, W, 3\\)"):
        normalize_nhwc(pixels.astype(np.float32), norm)


# --- the CPU path over uint8 files -----------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_cpu_path_over_uint8_files_matches_the_float32_files(chain, model, tmp_path):
    import onnxruntime as ort

    u8_dir, f32_dir = chain["dirs"][model, "uint8"], chain["dirs"][model, "float32"]
    u8 = run_inference(chain["onnx"], u8_dir, output=tmp_path, output_dirname="u8", outfmt="BIN", batch_size=4,
                       progress=False)
    f32 = run_inference(chain["onnx"], f32_dir, output=tmp_path, output_dirname="f32", outfmt="BIN", batch_size=4,
                        progress=False)
    assert u8.files_written == f32.files_written == IMAGES
    reference, candidate = stacked(outputs(f32.output_dir), outputs(u8.output_dir))
    assert np.array_equal(topk_indices(reference, 5), topk_indices(candidate, 5))  # per image, in order
    comparison = compare_logits(reference, candidate)
    assert comparison.within_bound and 0 < comparison.max_abs_diff  # not the same bytes: another formula
    # the engine feeds normalize_nhwc(file) to the graph: one image a call here against its batches
    # of 4, whose kernels may sum in another order (which ones depends on the CPU), so the parity bound
    session = ort.InferenceSession(str(chain["onnx"]), providers=["CPUExecutionProvider"])
    t = get_model_spec(model).default_transform
    norm = Normalization(t.mean, t.std)
    for stem, logits in outputs(u8.output_dir).items():
        pixels = np.fromfile(u8_dir / f"{stem}.bin", dtype=np.uint8).reshape(1, 224, 224, 3)
        direct = session.run(None, {"image": normalize_nhwc(pixels, norm)})[0][0]
        assert np.abs(direct - logits).max() <= parity_bound(direct)


def test_uint8_outputs_keep_the_ais_bench_layout(chain, tmp_path):
    u8 = run_inference(chain["onnx"], chain["dirs"]["focal-fast-s", "uint8"], output=tmp_path, output_dirname="u8",
                       batch_size=4, progress=False)
    f32 = run_inference(chain["onnx"], chain["dirs"]["focal-fast-s", "float32"], output=tmp_path,
                        output_dirname="f32", batch_size=4, progress=False)
    names = sorted(p.name for p in u8.output_dir.iterdir())
    assert names == sorted(p.name for p in f32.output_dir.iterdir()) and len(names) == IMAGES
    assert all(re.fullmatch(rb"(-?\d+\.\d{6} ){1000}\n", (u8.output_dir / n).read_bytes()) for n in names)
    summary = json.loads(u8.summary_path.read_text())
    assert list(summary) == list(json.loads(f32.summary_path.read_text()))
    assert summary["filesinfo"]["0"]["infiles"][0].endswith("focal-fast-s-uint8/ILSVRC2012_val_00000001.bin")


def test_eval_onnx_over_uint8_files_scores_like_the_float32_files(chain, tmp_path):
    results = {}
    for dtype in ("float32", "uint8"):
        out = tmp_path / f"result_{dtype}.json"
        run = CliRunner().invoke(cli, ["eval", "--onnx", str(chain["onnx"]), "--labels", str(chain["labels"]),
                                       "--input", str(chain["dirs"]["van-b2", dtype]), "--output", str(out),
                                       "--batch-size", "4"])
        assert run.exit_code == 0, run.output
        results[dtype] = json.loads(out.read_text())
    f32, u8 = results["float32"], results["uint8"]
    assert len(u8["images"]) == IMAGES and u8["images"] == f32["images"]  # per image: label, top-5, hits
    assert (u8["summary"]["Acc@1"], u8["summary"]["Acc@5"]) == (f32["summary"]["Acc@1"], f32["summary"]["Acc@5"])


# --- an AIPP .om through the stand-ins -------------------------------------------------------


@pytest.fixture()
def aipp_om(chain, tmp_path, fake_atc):
    (build,) = build_om(chain["onnx"], [4], out_dir=tmp_path / "om", model="focal-fast-s", aipp=True, progress=False)
    return build.om_path


def test_aipp_om_agrees_with_onnxruntime_on_the_same_uint8_files(chain, aipp_om, tmp_path, standin_cli):
    u8_dir = chain["dirs"]["focal-fast-s", "uint8"]
    cpu = run_inference(chain["onnx"], u8_dir, output=tmp_path, output_dirname="cpu", batch_size=4, progress=False)
    npu = run_inference(aipp_om, u8_dir, output=tmp_path, output_dirname="npu", progress=False, ais_bench_mode="cli")
    argv = json.loads(standin_cli.read_text().splitlines()[0])["argv"]
    assert "--dymBatch" not in argv and argv[argv.index("--input") + 1] == str(u8_dir)
    assert npu.files_written == IMAGES
    report = compare_results(cpu.output_dir, npu.output_dir, min_cosine=0.9999)
    assert report.passed and report.summary["count"] == IMAGES
    reference, candidate = stacked(outputs(cpu.output_dir), outputs(npu.output_dir))
    assert 0 < np.abs(reference - candidate).max() < 1e-2  # the stand-in's AIPP output is fp16, as the chip's
    result = CliRunner().invoke(cli, ["compare", str(cpu.output_dir), str(npu.output_dir), "--min-cosine", "0.9999"])
    assert result.exit_code == 0, result.output


def test_aipp_om_in_api_mode(chain, aipp_om, tmp_path, standin_api):
    u8_dir = chain["dirs"]["focal-fast-s", "uint8"]
    npu = run_inference(aipp_om, u8_dir, output=tmp_path, output_dirname="api", progress=False)
    cpu = run_inference(chain["onnx"], u8_dir, output=tmp_path, output_dirname="cpu", batch_size=4, progress=False)
    assert npu.files_written == IMAGES
    assert compare_results(cpu.output_dir, npu.output_dir, min_cosine=0.9999).passed


def one_error_line(args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0 and "Traceback" not in result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("focalinfer: error")]
    return line


def test_every_dtype_mismatch_is_one_line(chain, aipp_om, tmp_path, fake_atc, standin_api):
    f32_dir, u8_dir = chain["dirs"]["focal-fast-s", "float32"], chain["dirs"]["focal-fast-s", "uint8"]
    line = one_error_line(["infer", "--model-file", aipp_om, "--input", f32_dir, "--output", tmp_path])
    assert f"{f32_dir}: the files are float32 but {aipp_om} was built with --aipp" in line
    (plain,) = build_om(chain["onnx"], [4], out_dir=tmp_path / "plain", progress=False)
    line = one_error_line(["infer", "--model-file", plain.om_path, "--input", u8_dir, "--output", tmp_path])
    assert f"{u8_dir}: the files are uint8 but {plain.om_path} takes float32" in line and "om --aipp" in line
    line = one_error_line(["infer", "--model-file", aipp_om, "--input", chain["dirs"]["van-b2", "uint8"],
                           "--output", tmp_path])
    assert "leave mean [0.5, 0.5, 0.5]" in line and "AIPP applies mean [0.485, 0.456, 0.406]" in line
    bare = tmp_path / "bare"  # the same uint8 files without their manifest: taken for the seed's float32
    shutil.copytree(u8_dir, bare, ignore=shutil.ignore_patterns("manifest.json"))
    line = one_error_line(["infer", "--model-file", aipp_om, "--input", bare, "--output", tmp_path])
    assert "no manifest.json" in line
    # an AIPP .om without its ATC record: the runner's uint8 input is checked when it opens
    lone = tmp_path / "lone" / aipp_om.name
    lone.parent.mkdir()
    shutil.copy(aipp_om, lone)
    line = one_error_line(["infer", "--model-file", lone, "--input", f32_dir, "--output", tmp_path])
    assert "takes uint8 input (an AIPP .om takes uint8 images)" in line
    broken = tmp_path / "broken"
    shutil.copytree(u8_dir, broken)
    manifest = json.loads((u8_dir / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "normalization": None}))
    line = one_error_line(["infer", "--model-file", chain["onnx"], "--input", broken, "--output", tmp_path,
                           "--batch-size", "4"])
    assert "no usable normalisation (mean/std) recorded" in line


def test_uint8_files_of_another_size_on_the_cpu_path(chain, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(chain["dirs"]["focal-fast-s", "uint8"], odd)
    for path in odd.glob("*.bin"):
        path.write_bytes(path.read_bytes()[: 112 * 112 * 3])
    with pytest.raises(FocalinferError, match=r"37632 bytes, but a uint8 \(224, 224, 3\) image for this model is 150528"):
        run_inference(chain["onnx"], odd, output=tmp_path, output_dirname="r", batch_size=2, progress=False)


# --- a dynamic-batch .om -----------------------------------------------------------------------


@pytest.fixture()
def dynamic_om(chain, tmp_path, fake_atc):
    (build,) = build_om(chain["onnx"], "1", out_dir=tmp_path / "om", dynamic_batch="1,4,8", progress=False)
    return build.om_path


def test_dynamic_batch_om_runs_at_a_gear_in_cli_mode(chain, dynamic_om, tmp_path, standin_cli):
    f32_dir = chain["dirs"]["focal-fast-s", "float32"]
    result = run_inference(dynamic_om, f32_dir, output=tmp_path, output_dirname="dyn", batch_size=4, progress=False)
    argv = json.loads(standin_cli.read_text().splitlines()[0])["argv"]
    assert argv[argv.index("--batchsize"):] == ["--batchsize", "4", "--dymBatch", "4"]
    assert result.files_written == IMAGES and result.throughput
    cpu = run_inference(chain["onnx"], f32_dir, output=tmp_path, output_dirname="cpu", batch_size=4, progress=False)
    reference, candidate = stacked(outputs(cpu.output_dir), outputs(result.output_dir))
    assert np.abs(reference - candidate).max() <= 1e-5
    for bad, message in [(3, "--batch-size 3 is not one of its dynamic-batch gears \\(1, 4, 8\\)"),
                         (None, "a dynamic-batch .om \\(gears 1, 4, 8\\); pass --batch-size")]:
        with pytest.raises(UsageError, match=message):
            run_inference(dynamic_om, f32_dir, output=tmp_path, output_dirname="bad", batch_size=bad, progress=False)
    assert len(standin_cli.read_text().splitlines()) == 1  # the bad ones were refused before ais_bench ran
    assert not (tmp_path / "bad").exists()


def test_dynamic_batch_om_in_api_mode_and_with_aipp(chain, tmp_path, fake_atc, standin_api):
    f32_dir, u8_dir = chain["dirs"]["focal-fast-s", "float32"], chain["dirs"]["focal-fast-s", "uint8"]
    (dyn,) = build_om(chain["onnx"], "1", out_dir=tmp_path / "dyn", dynamic_batch="1,8", progress=False)
    api = run_inference(dyn.om_path, f32_dir, output=tmp_path, output_dirname="api8", batch_size=8, progress=False)
    cpu = run_inference(chain["onnx"], f32_dir, output=tmp_path, output_dirname="cpu", batch_size=8, progress=False)
    assert api.batch_size == 8 and api.files_written == IMAGES
    reference, candidate = stacked(outputs(cpu.output_dir), outputs(api.output_dir))
    assert np.abs(reference - candidate).max() <= 1e-5
    (both,) = build_om(chain["onnx"], "1", out_dir=tmp_path / "both", model="focal-fast-s", aipp=True,
                       dynamic_batch="1,4", progress=False)
    npu = run_inference(both.om_path, u8_dir, output=tmp_path, output_dirname="both", batch_size=1, progress=False)
    cpu_u8 = run_inference(chain["onnx"], u8_dir, output=tmp_path, output_dirname="cpu_u8", batch_size=1,
                           progress=False)
    assert compare_results(cpu_u8.output_dir, npu.output_dir, min_cosine=0.9999).passed


def test_cpu_path_over_uint8_files_on_several_devices(chain, tmp_path):
    u8_dir = chain["dirs"]["van-b2", "uint8"]
    one = run_inference(chain["onnx"], u8_dir, output=tmp_path, output_dirname="one", outfmt="BIN", batch_size=4,
                        progress=False)
    two = run_inference(chain["onnx"], u8_dir, output=tmp_path, output_dirname="two", outfmt="BIN", batch_size=4,
                        device="0,1", progress=False)
    merged = {**outputs(two.device_dirs[0]), **outputs(two.device_dirs[1])}
    reference, candidate = stacked(outputs(one.output_dir), merged)
    assert np.abs(reference - candidate).max() <= 1e-5
