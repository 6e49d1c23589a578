"""The infer stage: onnxruntime for real, ais_bench against the stand-in in tests/standins/.

A tiny torch classifier (1000 outputs) is exported with static batches 1, 4, 16 and a dynamic
batch; 37 input files make every batch size pad its last batch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.errors import FocalinferError, ToolMissingError, UsageError
from focalinfer import layout as contract
from focalinfer.records import InferRecord, Manifest
from focalinfer.infer import InferResult, run_inference
from focalinfer.metrics import parity_bound
from tinynet import write_databin

N_FILES = 37
H = W = 16
SUMMARY_KEYS = ["filesinfo", "NPU_compute_time", "H2D_latency", "D2H_latency", "throughput",
                "npu_compute_time_list", "pid", "args"]
TIME_KEYS = ["min", "max", "mean", "median", "percentile(99%)", "count"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny ONNX classifiers and the reference logits torch computes for each input, one at a time."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
            self.fc = torch.nn.Linear(8, 1000)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = Tiny().eval()
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in (1, 4, 16):
            paths[batch] = root / f"tiny_bs{batch}.onnx"
            torch.onnx.export(net, (torch.zeros(batch, 3, H, W),), str(paths[batch]), input_names=["image"],
                              output_names=["class"], opset_version=11, dynamo=False)
        paths["dyn"] = root / "tiny_dyn.onnx"
        torch.onnx.export(net, (torch.zeros(1, 3, H, W),), str(paths["dyn"]), input_names=["image"],
                          output_names=["class"], opset_version=11, dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}})
    # Names without zero padding: only a natural sort puts val_2 before val_10.
    rng = np.random.default_rng(0)
    images = rng.standard_normal((N_FILES, 1, 3, H, W)).astype(np.float32)
    names = [f"ILSVRC2012_val_{i + 1}" for i in range(N_FILES)]
    data = write_databin(root / "databin", images, names)  # with a manifest, which is not an input
    with torch.no_grad():
        reference = {name: net(torch.from_numpy(img)).numpy() for name, img in zip(names, images)}
    return {"paths": paths, "data": data, "names": names, "reference": reference, "root": root}


def near(got: np.ndarray, reference: np.ndarray) -> bool:
    """onnxruntime's kernels against PyTorch's, or at another batch size (which kernels run depends
    on the CPU and the shapes): within the export's parity bound, and TXT's 6 decimals."""
    return np.abs(got - reference).max() <= parity_bound(reference) + 1e-6


def read_output(path: Path) -> np.ndarray:
    if path.suffix == ".txt":
        return np.array(path.read_text().split(), dtype=np.float64).reshape(1, -1)
    if path.suffix == ".npy":
        return np.load(path)
    return np.fromfile(path, dtype=np.float32).reshape(1, -1)


def spec_txt(sample: np.ndarray) -> bytes:
    """The spec's TXT: np.savetxt('%f', newline=' ') per row of (-1, last_dim), then a newline."""
    import io

    buffer = io.BytesIO()
    for row in sample.reshape(-1, sample.shape[-1]):
        np.savetxt(buffer, np.c_[row], fmt="%f", newline=" ")
        buffer.write(b"\n")
    return buffer.getvalue()


def outputs_of(directory: Path) -> dict[str, Path]:
    return {p.name: p for p in directory.iterdir() if not p.name.startswith(".")}


# --- the contract's pieces ---------------------------------------------------------------


def test_device_folders_of_both_generations(tmp_path):
    """device<D> (2023) and device<D>_<i> (2024, i = the --device position) are both a run's device folders."""
    run = tmp_path / "r"
    for name in ("device1", "device0", "device4_0", "device2_1", "device7_10", "devicex", "device_1"):
        (run / name).mkdir(parents=True)
    (run / "device9").write_text("")  # a file is not a device folder
    assert [p.name for p in contract.device_dirs(run)] == ["device0", "device1", "device4_0", "device2_1", "device7_10"]
    assert contract.device_dir_names([4, 2], indexed=True) == ["device4_0", "device2_1"]
    assert contract.device_dir_names([4, 2], indexed=False) == ["device4", "device2"]
    (run / "device2_1" / "img_0.txt").write_text("1.0 \n")
    contract.summary_beside(run / "device2_1").write_text("{}")
    (run / "device2_1" / "notes.md").write_text("")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in contract.result_files(run)) == \
        ["r/device2_1/img_0.txt", "r/device2_1_summary.json"]


def test_natural_sort_and_batch_plan():
    files = [f"d/x_{i}.bin" for i in (10, 2, 1, 33, 3)] + ["d/X_4.BIN"]
    assert contract.natural_sorted(files) == ["d/x_1.bin", "d/x_2.bin", "d/x_3.bin", "d/X_4.BIN",
                                              "d/x_10.bin", "d/x_33.bin"]
    batches = contract.plan_batches([f"f{i}" for i in range(N_FILES)], 16)
    assert [len(b.files) for b in batches] == [16, 16, 5]
    assert [b.padding for b in batches] == [0, 0, 11]
    assert contract.split_for_devices(list(range(37)), 2) == [list(range(19)), list(range(19, 37))]
    assert contract.output_name("in/ILSVRC2012_val_1.JPEG.bin", 0, "TXT") == "ILSVRC2012_val_1_0.txt"


@pytest.mark.parametrize("shape", [(1, 1000), (2, 3, 4), (1, 7)])
def test_txt_bytes_equal_numpy_savetxt(shape):
    rng = np.random.default_rng(1)
    sample = (rng.standard_normal(shape) * 1e3).astype(np.float32)
    sample.flat[:3] = [-0.0, 1e-9, -123456.789]
    assert contract.txt_bytes(sample) == spec_txt(sample)
    assert contract.txt_bytes(sample).endswith(b" \n")


# --- onnxruntime backend -----------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4, 16])
@pytest.mark.parametrize("outfmt", ["TXT", "NPY", "BIN"])
def test_onnxruntime_contract(models, tmp_path, capsys, batch, outfmt):
    result = run_inference(models["paths"][batch], models["data"], output=tmp_path, output_dirname="res",
                           outfmt=outfmt, progress=False)
    assert isinstance(result, InferResult)
    assert (result.backend, result.batch_size, result.outfmt) == ("onnxruntime", batch, outfmt)
    assert result.output_dir == tmp_path / "res" and result.files_written == N_FILES
    files = outputs_of(result.output_dir)
    # One file per real image, none for the padding of the last batch.
    assert sorted(files) == sorted(f"{n}_0.{outfmt.lower()}" for n in models["names"])
    for name in models["names"]:
        path = files[f"{name}_0.{outfmt.lower()}"]
        got = read_output(path)
        ref = models["reference"][name]
        assert got.shape == (1, 1000)
        assert near(got, ref)
        if outfmt == "TXT":
            data = path.read_bytes()
            assert re.fullmatch(rb"(-?\d+\.\d{6} ){1000}\n", data)
            assert data == spec_txt(got.astype(np.float32))  # re-printing the parsed values is a fixpoint
        elif outfmt == "NPY":
            assert np.load(path).dtype == np.float32
        else:
            assert path.stat().st_size == 4000

    summary = json.loads((tmp_path / "res_summary.json").read_text())
    assert list(summary) == SUMMARY_KEYS
    runs = -(-N_FILES // batch)
    assert list(summary["NPU_compute_time"]) == TIME_KEYS and summary["NPU_compute_time"]["count"] == runs
    assert len(summary["npu_compute_time_list"]) == runs
    mean = np.mean(summary["npu_compute_time_list"])
    assert summary["throughput"] == pytest.approx(1000 * batch / mean) == result.throughput
    assert len(summary["filesinfo"]) == N_FILES
    last = summary["filesinfo"][str(N_FILES - 1)]
    assert last == {"infiles": [os.path.join(str(models["data"]), f"{models['names'][-1]}.bin")],
                    "outfiles": [os.path.join(str(tmp_path), "res", f"{models['names'][-1]}_0.{outfmt.lower()}")]}
    log = capsys.readouterr().out
    assert re.search(r"^\[INFO\] NPU_compute_time \(ms\): min = [\d.e-]+, max = [\d.e-]+, mean = [\d.e-]+, "
                     r"median = [\d.e-]+, percentile\(99%\) = [\d.e-]+$", log, re.M)
    assert re.search(rf"^\[INFO\] throughput 1000\*batchsize\.mean\({batch}\)/NPU_compute_time\.mean\([\d.e-]+\): "
                     r"[\d.e+-]+$", log, re.M)


def test_outputs_equal_across_batch_sizes(models, tmp_path):
    results = {}
    for key, batch in ((1, None), (4, None), (16, None), ("dyn", 8)):
        result = run_inference(models["paths"][key], models["data"], output=tmp_path, output_dirname=f"r{key}",
                               outfmt="BIN", batch_size=batch, progress=False)
        results[key] = {n: read_output(result.output_dir / f"{n}_0.bin") for n in models["names"]}
    for key in (4, 16, "dyn"):
        far = [n for n in models["names"] if not near(results[key][n], results[1][n])]
        assert not far, (key, far)


def test_resume_after_interruption(models, tmp_path, monkeypatch):
    real_write = contract.write_batch_outputs
    calls = []

    def interrupt_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(contract, "write_batch_outputs", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_inference(models["paths"][4], models["data"], output=tmp_path, output_dirname="res", progress=False)
    out = tmp_path / "res"
    first = outputs_of(out)
    assert sorted(first) == sorted(f"{n}_0.txt" for n in models["names"][:8])  # two whole batches
    mtimes = {name: p.stat().st_mtime_ns for name, p in first.items()}
    (out / f".{models['names'][9]}_0.txt.999.tmp").write_text("half a fi")  # a killed write's debris

    monkeypatch.setattr(contract, "write_batch_outputs", real_write)
    result = run_inference(models["paths"][4], models["data"], output=tmp_path, output_dirname="res", progress=False)
    assert (result.files_kept, result.files_written) == (8, N_FILES - 8)
    final = outputs_of(out)
    assert sorted(final) == sorted(f"{n}_0.txt" for n in models["names"])  # no temp files, no duplicates
    assert all(final[name].stat().st_mtime_ns == mtime for name, mtime in mtimes.items())  # not redone
    clean = run_inference(models["paths"][4], models["data"], output=tmp_path, output_dirname="clean", progress=False)
    for name in final:
        assert final[name].read_bytes() == (clean.output_dir / name).read_bytes()
    summary = json.loads(result.summary_path.read_text())
    assert len(summary["filesinfo"]) == N_FILES and summary["NPU_compute_time"]["count"] == 8  # 8 batches ran now

    again = run_inference(models["paths"][4], models["data"], output=tmp_path, output_dirname="res", progress=False)
    assert (again.files_kept, again.files_written) == (N_FILES, 0)


def test_multi_device_split(models, tmp_path):
    result = run_inference(models["paths"]["dyn"], models["data"], output=tmp_path, output_dirname="multi",
                           batch_size=4, device="0,1", outfmt="NPY", progress=False)
    assert result.device_dirs == [tmp_path / "multi" / "device0", tmp_path / "multi" / "device1"]
    assert result.files_written == N_FILES and result.summary_path is None
    # ais_bench's split: contiguous shares of ceil(37 / 2) = 19 files.
    for device_dir, names in zip(result.device_dirs, (models["names"][:19], models["names"][19:])):
        assert sorted(outputs_of(device_dir)) == sorted(f"{n}_0.npy" for n in names)
        summary = json.loads(device_dir.with_name(device_dir.name + "_summary.json").read_text())
        assert list(summary) == SUMMARY_KEYS and len(summary["filesinfo"]) == len(names)
        for name in names:
            assert near(np.load(device_dir / f"{name}_0.npy"), models["reference"][name])
    assert result.throughput > 0


def test_pure_inference_loop(models, tmp_path, capsys):
    result = run_inference(models["paths"][16], None, output=tmp_path, output_dirname="pure", loop=5, warmup=2,
                           pure_data_type="random", progress=False)
    summary = json.loads((tmp_path / "pure_summary.json").read_text())
    assert summary["filesinfo"] == {} and summary["NPU_compute_time"]["count"] == 5
    # What ais_bench writes for pure inference: the last run's output, whole (16 rows), and nothing else.
    assert result.files_written == 1 and list(outputs_of(tmp_path / "pure")) == ["pure_infer_data_0.txt"]
    from focalinfer.backend.onnxrt import make_session

    data = np.random.default_rng(0).standard_normal((16, 3, H, W)).astype(np.float32)
    (expected,) = make_session(str(models["paths"][16])).run(None, {"image": data})
    written = (tmp_path / "pure" / "pure_infer_data_0.txt").read_bytes()
    assert re.fullmatch(rb"((-?\d+\.\d{6} ){1000}\n){16}", written)
    assert np.abs(np.loadtxt(written.splitlines()) - expected).max() <= 1e-5
    assert result.throughput == pytest.approx(1000 * 16 / np.mean(summary["npu_compute_time_list"]))
    assert result.pure_inference and result.images_per_s is None
    assert "[INFO] throughput 1000*batchsize.mean(16)" in capsys.readouterr().out


def test_npy_inputs(models, tmp_path):
    data = tmp_path / "npy"
    data.mkdir()
    for name in models["names"][:5]:
        np.save(data / f"{name}.npy", np.fromfile(models["data"] / f"{name}.bin", np.float32).reshape(1, 3, H, W))
    result = run_inference(models["paths"][4], data, output=tmp_path, output_dirname="r", outfmt="BIN",
                           progress=False)
    for name in models["names"][:5]:
        assert near(read_output(result.output_dir / f"{name}_0.bin"), models["reference"][name])
    with pytest.raises(UsageError, match="--device"):
        run_inference(models["paths"][4], data, output=tmp_path, device="0,x", progress=False)


def test_timestamp_dirname_when_none_given(models, tmp_path):
    result = run_inference(models["paths"][16], models["data"], output=tmp_path, progress=False)
    assert re.fullmatch(r"\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}", result.output_dir.name)
    assert result.summary_path == tmp_path / f"{result.output_dir.name}_summary.json"


# --- ais_bench backend against the stand-in ----------------------------------------------


@pytest.fixture()
def om_model(models, tmp_path):
    """A stand-in .om: what the atc stand-in writes (an ONNX with a fixed batch)."""
    om = tmp_path / "tiny_bs4.om"
    shutil.copy(models["paths"][4], om)
    return om


def test_ais_bench_cli_matches_onnxruntime(models, tmp_path, om_model, standin_cli, capsys):
    result = run_inference(om_model, models["data"], output=tmp_path, output_dirname="ais", batch_size=4,
                           progress=False)
    assert result.backend == "ais_bench" and result.files_written == N_FILES
    calls = [json.loads(line) for line in standin_cli.read_text().splitlines()]
    assert calls == [{"tool": "ais_bench", "argv": [
        "--model", str(om_model), "--input", str(models["data"]), "--output", str(tmp_path),
        "--output_dirname", "ais", "--outfmt", "TXT", "--batchsize", "4"]}]
    assert "[INFO] throughput 1000*batchsize.mean(4)" in capsys.readouterr().out  # its log, streamed
    ours = run_inference(models["paths"][4], models["data"], output=tmp_path, output_dirname="ort", progress=False)
    theirs_files, our_files = outputs_of(result.output_dir), outputs_of(ours.output_dir)
    assert sorted(theirs_files) == sorted(our_files)
    for name in our_files:
        assert np.abs(read_output(theirs_files[name]) - read_output(our_files[name])).max() <= 1e-6
        assert re.fullmatch(rb"(-?\d+\.\d{6} ){1000}\n", theirs_files[name].read_bytes())
    theirs_summary = json.loads(result.summary_path.read_text())
    our_summary = json.loads(ours.summary_path.read_text())
    assert list(theirs_summary) == list(our_summary) == SUMMARY_KEYS
    assert [v["infiles"] for v in theirs_summary["filesinfo"].values()] == \
        [v["infiles"] for v in our_summary["filesinfo"].values()]
    assert result.throughput == pytest.approx(theirs_summary["throughput"])


def test_ais_bench_cli_devices_and_pure(models, tmp_path, om_model, standin_cli, ais_bench_generation, capsys):
    result = run_inference(om_model, models["data"], output=tmp_path, output_dirname="multi", device="0,1",
                           outfmt="BIN", loop=2, warmup=0, progress=False, ais_bench_mode="cli")
    argv = json.loads(standin_cli.read_text().splitlines()[0])["argv"]
    assert argv[argv.index("--device") + 1] == "0,1" and argv[argv.index("--loop") + 1] == "2"
    assert argv[argv.index("--warmup_count") + 1] == "0" and "--batchsize" not in argv
    # 2024 runs every input on every device unless told to divide them; 2023 has no such flag.
    assert ("--divide_input" in argv) == (ais_bench_generation == "2024")
    names = {"2023": ["device0", "device1"], "2024": ["device0_0", "device1_1"]}[ais_bench_generation]
    assert result.device_dirs == [tmp_path / "multi" / name for name in names]
    assert result.files_written == N_FILES and result.ais_bench_generation == ais_bench_generation
    written = [p.name for d in result.device_dirs for p in d.iterdir()]
    assert sorted(written) == sorted(f"{n}_0.bin" for n in models["names"])  # each image once
    # The throughput is ais_bench's total over the devices, not the last device's line.
    log = capsys.readouterr().out
    total = float(re.search(r"summary throughput:([\d.eE+-]+)", log).group(1))
    device_lines = [float(t) for t in re.findall(r"device_\d throughput:([\d.eE+-]+)", log)]
    assert len(device_lines) == 2 and result.throughput == pytest.approx(total) == pytest.approx(sum(device_lines))
    assert InferRecord.read(result.output_dir).ais_bench_generation == ais_bench_generation

    pure = run_inference(om_model, None, output=tmp_path, output_dirname="pure", loop=3, progress=False)
    argv = json.loads(standin_cli.read_text().splitlines()[1])["argv"]
    assert "--input" not in argv and argv[argv.index("--loop") + 1] == "3"
    assert json.loads(pure.summary_path.read_text())["NPU_compute_time"]["count"] == 3
    # ais_bench writes the run's output, whole: what focalinfer's own pure inference writes too.
    ours = run_inference(models["paths"][4], None, output=tmp_path, output_dirname="pure_cpu", loop=3, progress=False)
    assert [p.name for p in pure.output_dir.iterdir()] == [p.name for p in ours.output_dir.iterdir()] == \
        ["pure_infer_data_0.txt"]
    assert pure.files_written == ours.files_written == 1 and pure.pure_inference and pure.images_per_s is None
    theirs_rows = np.loadtxt((pure.output_dir / "pure_infer_data_0.txt").read_bytes().splitlines())
    our_rows = np.loadtxt((ours.output_dir / "pure_infer_data_0.txt").read_bytes().splitlines())
    assert theirs_rows.shape == our_rows.shape == (4, 1000) and np.abs(theirs_rows - our_rows).max() <= 1e-6


def test_ais_bench_api_mode_resumes(models, tmp_path, om_model, monkeypatch, standin_api):
    from focalinfer.backend.ais_bench import AisBenchRunner

    real_write = contract.write_batch_outputs
    calls = []

    def interrupt_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(contract, "write_batch_outputs", interrupt_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_inference(om_model, models["data"], output=tmp_path, output_dirname="api", progress=False)
    monkeypatch.setattr(contract, "write_batch_outputs", real_write)
    result = run_inference(om_model, models["data"], output=tmp_path, output_dirname="api", progress=False)
    assert (result.backend, result.batch_size, result.files_kept, result.files_written) == ("ais_bench", 4, 4, 33)
    for name in models["names"]:
        got = read_output(result.output_dir / f"{name}_0.txt")
        assert near(got, models["reference"][name])
    with AisBenchRunner(om_model) as runner:
        assert runner.input_spec().shape == (4, 3, H, W) and runner.input_spec().dtype == np.float32
        runner.infer(np.zeros((4, 3, H, W), np.float32))
        assert len(runner.compute_times_ms) == 1


def test_a_path_the_2024_generation_refuses_is_refused_first(models, tmp_path, standin_cli, ais_bench_generation):
    spaced = tmp_path / "my models"
    spaced.mkdir()
    om = spaced / "tiny_bs4.om"
    shutil.copy(models["paths"][4], om)
    out = tmp_path / "out"
    if ais_bench_generation == "2023":  # takes any path
        assert run_inference(om, models["data"], output=out, output_dirname="r", progress=False).files_written == N_FILES
        return
    res = CliRunner().invoke(cli, ["infer", "--model-file", str(om), "--input", str(models["data"]), "--output",
                                   str(out), "--device", "0,1", "--quiet"])
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert res.output.startswith(f"focalinfer: error: {om}: ais_bench (2024 generation") and "without spaces" in res.output
    assert not standin_cli.exists() and not out.exists()  # nothing started, nothing written


def test_api_mode_checks_the_model_path_the_2024_session_checks(models, tmp_path, om_model, standin_api,
                                                                 ais_bench_generation):
    link = tmp_path / "link_bs4.om"
    link.symlink_to(om_model)
    if ais_bench_generation == "2023":
        assert run_inference(link, models["data"], output=tmp_path, output_dirname="r", progress=False).files_written
        return
    with pytest.raises(FocalinferError, match=rf"^{re.escape(str(link))}: .*symbolic link; pass the real path"):
        run_inference(link, models["data"], output=tmp_path, output_dirname="r", progress=False)
    assert not (tmp_path / "r").exists()


def test_api_mode_uses_the_devices_own_times(models, tmp_path, om_model, standin_api, ais_bench_generation,
                                             monkeypatch):
    monkeypatch.setenv("STANDIN_DEVICE_MS", "5")  # what the device says, whatever the host's clock says
    result = run_inference(om_model, models["data"], output=tmp_path, output_dirname="api", progress=False)
    summary = json.loads(result.summary_path.read_text())
    assert summary["npu_compute_time_list"] == [5.0] * 10 and result.throughput == pytest.approx(800.0)
    assert result.images_per_s == pytest.approx(N_FILES / 0.050)
    assert InferRecord.read(result.output_dir).ais_bench_generation == ais_bench_generation


# --- bad input ---------------------------------------------------------------------------


def test_wrong_size_bin(models, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(models["data"], data)
    (data / "ILSVRC2012_val_5.bin").write_bytes(b"\0" * 100)
    with pytest.raises(FocalinferError, match=r"ILSVRC2012_val_5\.bin: 100 bytes, but .* has 3072"):
        run_inference(models["paths"][4], data, output=tmp_path, output_dirname="r", progress=False)
    (data / "ILSVRC2012_val_1.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(FocalinferError, match=r"ILSVRC2012_val_1\.bin: 1000 bytes does not divide the model input"):
        run_inference(models["paths"][4], data, output=tmp_path, output_dirname="r", progress=False)


def test_empty_or_missing_input_dir(models, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FocalinferError, match="no .bin or .npy files"):
        run_inference(models["paths"][4], tmp_path / "empty", output=tmp_path, progress=False)
    with pytest.raises(FocalinferError, match="does not exist"):
        run_inference(models["paths"][4], tmp_path / "nowhere", output=tmp_path, progress=False)


def test_model_file_neither_om_nor_onnx(models, tmp_path):
    pt = tmp_path / "model.pth"
    pt.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"must be an \.om .* or an \.onnx"):
        run_inference(pt, models["data"], output=tmp_path, progress=False)
    with pytest.raises(UsageError, match="onnxruntime cannot run an .om"):
        run_inference(tmp_path / "m.om", models["data"], backend="onnxruntime", output=tmp_path)


def test_om_without_ais_bench_names_the_onnx(models, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3 with ais_bench either
    om = tmp_path / "tiny_bs4.om"
    shutil.copy(models["paths"][4], om)
    (tmp_path / "tiny_bs4.atc.json").write_text(json.dumps({"om": om.name, "onnx": "infer/tiny.onnx"}))
    with pytest.raises(ToolMissingError, match=r"needs ais_bench.*--model-file infer/tiny\.onnx --backend onnxruntime"):
        run_inference(om, models["data"], output=tmp_path, progress=False)


def test_batch_size_mismatch(models, tmp_path):
    with pytest.raises(UsageError, match="static batch of 16 and --batch-size 3 does not match"):
        run_inference(models["paths"][16], models["data"], batch_size=3, output=tmp_path, progress=False)
    with pytest.raises(UsageError, match="dynamic; pass --batch-size"):
        run_inference(models["paths"]["dyn"], models["data"], output=tmp_path, progress=False)
    pairs = tmp_path / "pairs"  # two images per file: a batch of 3 cannot hold whole files
    pairs.mkdir()
    np.zeros((2, 3, H, W), np.float32).tofile(pairs / "a.bin")
    with pytest.raises(FocalinferError, match="does not divide the model input .* \\(batch 3\\)"):
        run_inference(models["paths"]["dyn"], pairs, batch_size=3, output=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]  # failed runs leave no result folder


def test_output_dir_of_another_model(models, tmp_path):
    run_inference(models["paths"][4], models["data"], output=tmp_path, output_dirname="r", progress=False)
    with pytest.raises(FocalinferError, match=r"holds results of another model .*--force"):
        run_inference(models["paths"][16], models["data"], output=tmp_path, output_dirname="r", progress=False)
    stale = tmp_path / "r" / "old_image_0.txt"
    stale.write_text("1 \n")
    result = run_inference(models["paths"][16], models["data"], output=tmp_path, output_dirname="r", force=True,
                           progress=False)
    assert result.files_written == N_FILES and not stale.exists()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x_0.bin").write_bytes(b"\0" * 4000)
    with pytest.raises(FocalinferError, match="no record of"):
        run_inference(models["paths"][16], models["data"], output=tmp_path, output_dirname="foreign", progress=False)


def test_clashing_output_names(models, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("cat.1.bin", "cat.2.bin"):
        np.zeros((1, 3, H, W), np.float32).tofile(data / name)
    with pytest.raises(FocalinferError, match=r"cat\.2\.bin: its outputs would overwrite those of .*cat\.1\.bin"):
        run_inference(models["paths"][1], data, output=tmp_path, progress=False)


def test_cli_infer(models, tmp_path):
    from click.testing import CliRunner

    from focalinfer.cli import cli

    runner = CliRunner()
    args = ["infer", "--model-file", str(models["paths"][16]), "--input", str(models["data"]), "--output",
            str(tmp_path), "--output-dirname", "cli", "--outfmt", "npy", "--quiet"]
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert f"infer: {N_FILES} files written to {tmp_path / 'cli'}" in done.output
    assert len(list((tmp_path / "cli").glob("*_0.npy"))) == N_FILES
    bad = runner.invoke(cli, args[:3] + ["--input", str(tmp_path / "missing")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines() == [
        f"focalinfer: error: {tmp_path / 'missing'}: input directory does not exist; "
        "pass the folder of .bin files that preprocess wrote"]


def test_the_result_folder_holds_only_what_ais_bench_writes(models, tmp_path):
    """Scorers list the folder and parse every file: focalinfer's own record lives beside it."""
    import re

    run_inference(models["paths"][4], models["data"], output=tmp_path, output_dirname="res",
                  outfmt="TXT", progress=False)
    names = sorted(p.name for p in (tmp_path / "res").iterdir())
    assert names and all(re.fullmatch(r".+_0\.txt", n) for n in names), names
    assert (tmp_path / "res.focalinfer.json").is_file() and (tmp_path / "res_summary.json").is_file()
