"""The OpenVINO backend: parity with PyTorch and onnxruntime, fp32 forced, one-line errors, bf16 opt-in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from focalinfer.backend import onnxrt, open_runner
from focalinfer.backend import openvino as ovb
from focalinfer.errors import ToolMissingError, UsageError
from focalinfer.metrics import parity_bound
from cpu_kinds import CPU_KINDS, NATIVE_BF16, NO_NATIVE_BF16

# No importorskip: `make test` installs the openvino extra, so a missing OpenVINO fails here loudly.


def _cli():
    from focalinfer.cli import cli

    return cli


def _torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_openvino_is_within_the_export_parity_bound_of_pytorch_and_onnxruntime(tiny_onnx):
    path, model = tiny_onnx
    session = onnxrt.make_session(path, threads=1)
    with open_runner(path, "openvino", threads=1) as runner:
        assert runner.backend == "openvino" and runner.input_spec().shape == (None, 3, 32, 32)
        for batch in (1, 3, 3, 1):  # one compiled model per batch size, reused
            x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32), dtype=np.float32)
            got = runner.infer(x)[0]
            want = _torch(model, x)
            assert got.shape == (batch, 10)
            assert np.abs(got - want).max() <= parity_bound(want)
            assert np.abs(got - session.run(None, {"image": x})[0]).max() <= parity_bound(want)
        assert sorted(runner._requests) == [1, 3] and len(runner.compute_times_ms) == 4


def test_openvino_runs_focal_graphs_official_and_rewritten_within_the_bound(tmp_path):
    """A reduced Focal (the lead model's ops: window gathers, 5-D reshapes, focal pooling)."""
    from focalinfer.models.focal import REWRITES
    from focalinfer.models.synthetic import synthetic_state_dict
    from focalinfer.registry import get_model_spec

    model = get_model_spec("focal-fast-s").build(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                                                 num_classes=50)
    model.load_state_dict(synthetic_state_dict(model, seed=3))
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    for rewrites in ((), tuple(REWRITES)):
        model.set_export_rewrites(rewrites)
        path = tmp_path / f"focal-{len(rewrites)}.onnx"
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=11,
                          input_names=["image"], output_names=["class"],
                          dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}})
        want = _torch(model, x)
        with ovb.OpenVinoRunner(path) as runner:
            got = runner.infer(x)[0]
        assert np.abs(got - want).max() <= parity_bound(want), rewrites


def test_fp32_is_forced_with_the_chosen_hint_and_threads(tiny_onnx, monkeypatch):
    import openvino as ov
    import openvino.properties.hint as hints

    seen = []

    class RecordingCore(ov.Core):
        def compile_model(self, model, device, config):
            seen.append((device, dict(config)))
            return super().compile_model(model, device, config)

    monkeypatch.setattr(ov, "Core", RecordingCore)
    path, _ = tiny_onnx
    compiled = ovb.compile_model(path, threads=1, batch_size=2)
    device, config = seen[-1]
    # Explicit, not left to the CPU plugin's default (bf16 on CPUs with AMX or AVX-512 BF16).
    assert device == "CPU" and config[hints.inference_precision] == ov.Type.f32
    assert config[hints.performance_mode] == hints.PerformanceMode.LATENCY
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert list(compiled.inputs[0].get_shape()) == [2, 3, 32, 32]  # the dynamic batch fixed to 2


def test_missing_openvino_is_a_one_line_error(tiny_onnx, tmp_path, monkeypatch):
    path, _ = tiny_onnx
    monkeypatch.setattr(ovb, "available", lambda: False)
    with pytest.raises(ToolMissingError, match=r"pip install 'focalinfer\[openvino\]'"):
        open_runner(path, "openvino")
    result = CliRunner().invoke(_cli(), ["infer", "--model-file", str(path), "--backend", "openvino", "--batch-size", "1",
                                         "--output", str(tmp_path), "--output-dirname", "r", "--quiet"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs OpenVINO" in lines[0] and "focalinfer[openvino]" in lines[0]
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_backend_choices_come_from_the_backend_table():
    from focalinfer.backend.table import BACKENDS

    for command in ("infer", "eval"):
        text = CliRunner().invoke(_cli(), [command, "--help"]).output
        assert all(name in text for name in BACKENDS) and "openvino" in text


def test_openvino_cannot_run_an_om(tmp_path):
    from focalinfer.backend import plan_backend

    om = tmp_path / "m.om"
    om.write_bytes(b"om")
    with pytest.raises(UsageError, match="cannot run an .om"):
        plan_backend(om, "openvino")  # decided once, when the run is planned; opening a runner re-checks nothing


# --- bf16: an explicit option on CPUs with native bf16, never the default ---------------------------

def _images(folder, count=5, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        rng.standard_normal((1, 3, 32, 32)).astype(np.float32).tofile(folder / f"img_{i}.bin")
    return folder


@pytest.mark.parametrize("kind", NO_NATIVE_BF16)
def test_bf16_is_refused_on_a_cpu_without_native_bf16(tiny_onnx, tmp_path, cpu_kind, kind):
    path, _ = tiny_onnx
    model = cpu_kind(kind).model
    with pytest.raises(UsageError, match="avx512_bf16 or amx_bf16"):
        ovb.OpenVinoRunner(path, precision="bf16")
    result = CliRunner().invoke(_cli(), ["infer", "--model-file", str(path), "--input", str(_images(tmp_path / "in")),
                                         "--batch-size", "2", "--precision", "bf16", "--output", str(tmp_path),
                                         "--output-dirname", "r", "--quiet"])
    assert result.exit_code == 2 and f"({model}) has neither, so run fp32" in result.output
    assert not (tmp_path / "r").exists()
    onnxruntime = CliRunner().invoke(_cli(), ["infer", "--model-file", str(path), "--backend", "onnxruntime",
                                              "--precision", "bf16", "--batch-size", "1"])
    assert onnxruntime.exit_code == 2 and "runs on OpenVINO only" in onnxruntime.output


def _agreement_here(path, images):
    """bf16 against fp32 on OpenVINO, image by image, one thread: what this CPU computes (bf16 where
    it has a native path, f32 whatever is asked elsewhere)."""
    from focalinfer.metrics import compare_logits

    files = sorted(images.glob("*.bin"))
    rows = {}
    for precision in ("fp32", "bf16"):
        with ovb.OpenVinoRunner(path, 1, precision=precision) as runner:
            rows[precision] = np.concatenate([runner.infer(np.fromfile(f, np.float32).reshape(1, 3, 32, 32))[0]
                                              for f in files])
    return compare_logits(rows["fp32"], rows["bf16"])


@pytest.mark.parametrize("kind", NATIVE_BF16)
def test_bf16_run_prints_its_top1_agreement_with_fp32_and_labels_the_score(tiny_onnx, tmp_path, monkeypatch,
                                                                         cpu_kind, kind):
    """The opt-in on each CPU kind with native bf16: the run is compiled in bf16, compared with an
    fp32 compile on its first images, says so, and labels its score. Whether OpenVINO then computes
    in bf16 is up to the CPU running the test, so the agreement expected is the one the same two
    models give on it, image by image."""
    import openvino as ov
    import openvino.properties.hint as hints

    path, _ = tiny_onnx
    cpu_kind(kind)
    asked = []

    class RecordingCore(ov.Core):
        def compile_model(self, model, device, config):
            asked.append(config[hints.inference_precision])
            return super().compile_model(model, device, config)

    monkeypatch.setattr(ov, "Core", RecordingCore)
    images = _images(tmp_path / "in", count=5)
    labels = tmp_path / "val_label.txt"
    labels.write_text("".join(f"img_{i}.bin {i % 10}\n" for i in range(5)))
    result = CliRunner().invoke(_cli(), ["eval", "--onnx", str(path), "--labels", str(labels), "--input", str(images),
                                         "--output", str(tmp_path / "result.json"), "--batch-size", "1",
                                         "--threads", "1", "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert set(asked) == {ov.Type.bf16, ov.Type.f32}  # the run in bf16, its reference in f32
    want = _agreement_here(path, images)
    assert (f"bf16 vs fp32 (openvino) on the first 5 images: top-1 agreement {100 * want.top1_agreement:.1f} %"
            in result.output) and f"max |logit diff| {want.max_abs_diff:.3g}" in result.output
    assert json.loads((tmp_path / "result.json").read_text())["summary"]["backend"] == "openvino (bf16)"


def test_infer_on_openvino_writes_the_same_contract_as_onnxruntime(tiny_onnx, tmp_path):
    from focalinfer.infer import run_inference

    path, _ = tiny_onnx
    images = _images(tmp_path / "in", count=7)
    outputs = {}
    for backend in ("onnxruntime", "openvino"):
        result = run_inference(path, images, output=tmp_path, output_dirname=backend, batch_size=4, backend=backend,
                               progress=False)
        assert result.backend == backend and result.files_written == 7
        outputs[backend] = {p.name: np.array(p.read_text().split(), float) for p in sorted(result.output_dir.iterdir())}
    assert outputs["onnxruntime"].keys() == outputs["openvino"].keys()
    for name, want in outputs["onnxruntime"].items():
        assert np.abs(outputs["openvino"][name] - want).max() <= parity_bound(want) + 1e-6  # TXT keeps 6 decimals


@pytest.mark.parametrize("kind", sorted(CPU_KINDS))
def test_doctor_reports_openvino_and_whether_bf16_is_available(cpu_kind, monkeypatch, kind):
    import openvino

    from focalinfer.doctor import doctor_report, format_doctor

    cpu = cpu_kind(kind)
    report = doctor_report()
    assert report["openvino"] == openvino.get_version().split("-")[0] and report["bf16"] is cpu.native_bf16
    text = format_doctor(report)
    said = "available" if cpu.native_bf16 else "not on this CPU"
    assert f"OpenVINO: {report['openvino']} (fp32; --precision bf16 {said})" in text and f"({cpu.model})" in text
    monkeypatch.setattr(ovb, "available", lambda: False)
    assert "OpenVINO: not installed (pip install 'focalinfer[openvino]'" in format_doctor(doctor_report())
