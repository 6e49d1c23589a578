"""infer consumes only what was made for it: the model's transform, the manifest's files, and resumes
only on the same model, inputs and batch size (issue 10, rule 1)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.errors import FocalinferError
from focalinfer.infer import run_inference
from focalinfer.records import InferRecord, Manifest, export_report_path
from focalinfer.registry import get_model_spec
from focalinfer.util import sha256_file

H = W = 16
COUNT = 6


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("prov")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 1000)).eval()
    path = root / "van-b2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, H, W),), str(path), input_names=["image"], output_names=["class"],
                          opset_version=11, dynamo=False, dynamic_axes={"image": {0: "b"}, "class": {0: "b"}})
    # What export writes beside the ONNX: this graph stands for a van-b2 export.
    export_report_path(path).write_text(json.dumps({"model": "van-b2", "onnx_sha256": sha256_file(path)}))
    return path


def make_databin(directory, made_for: str, count: int = COUNT, seed: int = 0):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"img_{i}" for i in range(count)]
    for name in names:
        rng.standard_normal((1, 3, H, W)).astype(np.float32).tofile(directory / f"{name}.bin")
    spec = get_model_spec(made_for)
    Manifest(model=made_for, preset="official", transform=spec.default_transform.as_dict(), shape=[1, 3, H, W],
             files=[{"source": f"{n}.JPEG", "bin": f"{n}.bin"} for n in names]).write(directory)
    return directory


def test_files_made_for_another_transform_are_refused_naming_both(tiny_onnx, tmp_path):
    data = make_databin(tmp_path / "twins", "twins-altgvt-s")
    with pytest.raises(FocalinferError, match=r"made for twins-altgvt-s .* is van-b2 .*--allow-transform-mismatch"):
        run_inference(tiny_onnx, data, output=tmp_path / "out", output_dirname="r", batch_size=2, progress=False)
    assert not (tmp_path / "out" / "r").exists()
    result = run_inference(tiny_onnx, data, output=tmp_path / "out", output_dirname="r", batch_size=2,
                           progress=False, allow_transform_mismatch=True)
    assert result.files_written == COUNT


def test_another_model_with_the_same_transform_is_fine(tiny_onnx, tmp_path):
    # VAN's modelzoo preset is a transform van-b2 has: accepted.
    data = tmp_path / "zoo"
    make_databin(data, "van-b2")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["transform"] = get_model_spec("van-b2").transform("modelzoo").as_dict()
    manifest["preset"] = "modelzoo"
    (data / "manifest.json").write_text(json.dumps(manifest))
    result = run_inference(tiny_onnx, data, output=tmp_path / "out", output_dirname="r", batch_size=2, progress=False)
    assert result.files_written == COUNT


def test_cli_says_it_in_one_line(tiny_onnx, tmp_path):
    data = make_databin(tmp_path / "twins", "twins-altgvt-s")
    res = CliRunner().invoke(cli, ["infer", "--model-file", str(tiny_onnx), "--input", str(data), "--output",
                                   str(tmp_path / "o"), "--output-dirname", "r", "--batch-size", "2", "--quiet"])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "--allow-transform-mismatch" in res.output


def test_rerun_on_re_preprocessed_inputs_starts_over(tiny_onnx, tmp_path, capsys):
    data = make_databin(tmp_path / "d", "van-b2")
    out = tmp_path / "out"
    first = run_inference(tiny_onnx, data, output=out, output_dirname="r", batch_size=2, progress=False)
    again = run_inference(tiny_onnx, data, output=out, output_dirname="r", batch_size=2, progress=False)
    assert (first.files_written, again.files_written, again.files_kept) == (COUNT, 0, COUNT)
    make_databin(data, "van-b2", seed=1)  # preprocess --force: same names, new contents
    os.utime(data / "img_0.bin", ns=(1, 1))  # even a same-second rewrite differs by mtime
    capsys.readouterr()
    redo = run_inference(tiny_onnx, data, output=out, output_dirname="r", batch_size=2, progress=False)
    assert redo.files_written == COUNT and redo.files_kept == 0
    assert "made from other inputs" in capsys.readouterr().err


def test_rerun_at_another_batch_size_starts_over_and_records_the_batch(tiny_onnx, tmp_path, capsys):
    data = make_databin(tmp_path / "d", "van-b2")
    out = tmp_path / "out"
    run_inference(tiny_onnx, data, output=out, output_dirname="r", batch_size=4, progress=False)
    capsys.readouterr()
    redo = run_inference(tiny_onnx, data, output=out, output_dirname="r", batch_size=2, progress=False)
    assert redo.files_written == COUNT and redo.batch_size == 2
    assert "made at batch 4, not 2" in capsys.readouterr().err
    record = InferRecord.read(out / "r")
    assert record.batch_size == 2 and record.files_written == COUNT
    assert record.model == "van-b2" and record.input_dir == str(data) and record.preset == "official"
    assert record.manifest_sha256 == sha256_file(data / "manifest.json") and record.tool_version


def test_only_the_files_the_manifest_lists_are_read(tiny_onnx, tmp_path, capsys):
    data = make_databin(tmp_path / "d", "van-b2")
    np.zeros((1, 3, H, W), np.float32).tofile(data / "stray.bin")
    result = run_inference(tiny_onnx, data, output=tmp_path / "out", output_dirname="r", batch_size=2,
                           progress=False)
    assert result.files_written == COUNT and not (tmp_path / "out" / "r" / "stray_0.txt").exists()
    assert "1 input files" in capsys.readouterr().err
    (data / "img_3.bin").unlink()
    with pytest.raises(FocalinferError, match="1 files its manifest lists are missing .first: img_3.bin"):
        run_inference(tiny_onnx, data, output=tmp_path / "out", output_dirname="r2", batch_size=2, progress=False)


def test_an_unfinished_preprocess_is_refused(tiny_onnx, tmp_path):
    data = make_databin(tmp_path / "d", "van-b2")
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    with pytest.raises(FocalinferError, match="preprocess did not finish"):
        run_inference(tiny_onnx, data, output=tmp_path / "out", output_dirname="r", batch_size=2, progress=False)


def test_an_unwritable_output_is_said_before_any_work(tiny_onnx, tmp_path):
    data = make_databin(tmp_path / "d", "van-b2")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FocalinferError, match=r"file.*--output folder is not writable"):
        run_inference(tiny_onnx, data, output=blocker / "out", output_dirname="r", batch_size=2, progress=False)


def test_infer_counts_real_images_and_labels_ais_bench_formula(tiny_onnx, tmp_path):
    data = make_databin(tmp_path / "d", "van-b2", count=3)
    res = CliRunner().invoke(cli, ["infer", "--model-file", str(tiny_onnx), "--input", str(data), "--output",
                                   str(tmp_path / "o"), "--output-dirname", "r", "--batch-size", "64", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "r_summary.json").read_text())
    seconds = sum(summary["npu_compute_time_list"]) / 1000
    assert f"{3 / seconds:.1f} images/s" in res.output
    assert f"{summary['throughput']:.1f} samples/s by ais_bench's formula (padding counted)" in res.output
