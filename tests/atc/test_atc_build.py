"""The om stage against the atc stand-in (tests/standins/atc_standin.py), and `focalinfer doctor`."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from focalinfer.atc import build_atc_argv, build_om, find_om, read_onnx_input
from focalinfer.cli import cli
from focalinfer.errors import FocalinferError, ToolMissingError, UsageError
from focalinfer.util import sha256_file

from conftest import STANDIN



def tiny_onnx(path: Path, input_name="image", batch="N", height=12, width=20, initializers_as_inputs=False,
              seed=0):
    """Conv → global mean → Gemm to 1000 classes, built directly with onnx.helper."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.standard_normal((1000, 4)).astype(np.float32), "fc_w"),
    ]
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w"], ["class"], transB=1),
    ]
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, height, width])]
    if initializers_as_inputs:  # old exporters list weights as graph inputs too
        inputs += [helper.make_tensor_value_info(w.name, TensorProto.FLOAT, list(w.dims)) for w in weights]
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info("class", TensorProto.FLOAT, [batch, 1000])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)
    return path


@pytest.fixture()
def onnx_path(tmp_path):
    return tiny_onnx(tmp_path / "tiny-net.onnx")


def test_argv_is_the_documented_command(onnx_path, tmp_path):
    argv = build_atc_argv(onnx_path, 16, "Ascend310P3", tmp_path / "om")
    assert argv == [
        "atc", "--framework=5", f"--model={onnx_path}", f"--output={tmp_path / 'om' / 'tiny-net_bs16'}",
        "--input_format=NCHW", "--input_shape=image:16,3,12,20", "--log=error", "--soc_version=Ascend310P3",
    ]
    more = build_atc_argv(onnx_path, 1, "Ascend310B1", "om", op_precision_ini="p.ini",
                          precision_mode="allow_fp32_to_fp16", extra=("--keep_dtype=k.cfg",))
    assert more[-3:] == ["--op_precision_mode=p.ini", "--precision_mode=allow_fp32_to_fp16", "--keep_dtype=k.cfg"]


def test_input_name_and_size_come_from_the_onnx(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx", input_name="pixel_values", batch=8, height=30, width=40,
                     initializers_as_inputs=True)
    spec = read_onnx_input(path)
    assert (spec.name, spec.batch, spec.channels, spec.height, spec.width) == ("pixel_values", 8, 3, 30, 40)
    assert "--input_shape=pixel_values:2,3,30,40" in build_atc_argv(path, 2, "Ascend310P3", tmp_path)
    bad = tiny_onnx(tmp_path / "bad.onnx", height="H")
    with pytest.raises(FocalinferError, match="fixed channels, height and width"):
        read_onnx_input(bad)


def test_dry_run_works_without_atc(onnx_path, tmp_path, no_atc, capsys):
    builds = build_om(onnx_path, "1,4,16", out_dir=tmp_path / "om", dry_run=True)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [shlex.join(b.argv) for b in builds]
    assert [b.batch_size for b in builds] == [1, 4, 16] and all(b.status == "planned" for b in builds)
    assert printed[2] == shlex.join([
        "atc", "--framework=5", f"--model={onnx_path.resolve()}", f"--output={(tmp_path / 'om').resolve()}/tiny-net_bs16",
        "--input_format=NCHW", "--input_shape=image:16,3,12,20", "--log=error", "--soc_version=Ascend310P3"])
    assert not list((tmp_path / "om").glob("*.om"))


def test_registry_options_from_report_or_flag(onnx_path, tmp_path, no_atc, capsys):
    report = onnx_path.with_name(onnx_path.name + ".report.json")
    report.write_text(json.dumps({"model": "van-b2"}))
    (build,) = build_om(onnx_path, [4], out_dir=tmp_path / "om", dry_run=True)
    ini = (tmp_path / "om" / "van-b2_op_precision.ini").resolve()
    assert build.argv[-1] == f"--op_precision_mode={ini}"
    assert ini.read_text() == "Gelu=high_performance\n"
    report.unlink()
    (plain,) = build_om(onnx_path, [4], out_dir=tmp_path / "om", dry_run=True)
    assert not any(a.startswith("--op_precision_mode") for a in plain.argv)
    (flagged,) = build_om(onnx_path, [4], out_dir=tmp_path / "om", dry_run=True, model="van-b2",
                          precision_mode="allow_mix_precision")
    assert flagged.argv[-2:] == [f"--op_precision_mode={ini}", "--precision_mode=allow_mix_precision"]
    own = tmp_path / "mine.ini"
    own.write_text("Softmax=high_precision\n")
    (overridden,) = build_om(onnx_path, [4], out_dir=tmp_path / "om", dry_run=True, model="van-b2",
                             op_precision_ini=own)
    assert overridden.argv[-1] == f"--op_precision_mode={own.resolve()}"
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        build_om(onnx_path, [4], out_dir=tmp_path / "om", dry_run=True, model="nope")


def test_registry_precision_mode_yields_to_the_flag(onnx_path, tmp_path, no_atc, monkeypatch):
    import focalinfer.atc.build as atc

    monkeypatch.setattr(atc, "registry_atc_settings",
                        lambda name, explicit: ((), ("--precision_mode=force_fp32", "--keep_dtype=k.cfg")))
    (default,) = build_om(onnx_path, [1], out_dir=tmp_path, dry_run=True, model="x")
    assert default.argv[-2:] == ["--precision_mode=force_fp32", "--keep_dtype=k.cfg"]
    (flagged,) = build_om(onnx_path, [1], out_dir=tmp_path, dry_run=True, model="x", precision_mode="force_fp16")
    assert flagged.argv[-2:] == ["--precision_mode=force_fp16", "--keep_dtype=k.cfg"]


def test_no_atc_is_one_line_exit_2(onnx_path, tmp_path, no_atc):
    with pytest.raises(ToolMissingError, match=r"atc not found on PATH: source CANN's set_env\.sh .* or pass --dry-run"):
        build_om(onnx_path, [1], out_dir=tmp_path / "om")
    result = CliRunner().invoke(cli, ["om", "--onnx", str(onnx_path), "--batch-sizes", "1,4",
                                      "--out-dir", str(tmp_path / "om")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "set_env.sh" in result.output
    dry = CliRunner().invoke(cli, ["om", "--onnx", str(onnx_path), "--batch-sizes", "1,4",
                                   "--out-dir", str(tmp_path / "om"), "--dry-run"])
    assert dry.exit_code == 0 and dry.output.count("atc --framework=5") == 2


def test_builds_skips_and_rebuilds(onnx_path, tmp_path, fake_atc):
    out = tmp_path / "om"
    builds = build_om(onnx_path, "1,4,16", out_dir=out, jobs=3, progress=False)
    assert [b.status for b in builds] == ["built"] * 3
    for build in builds:
        assert build.om_path == out.resolve() / f"tiny-net_bs{build.batch_size}.om"
        om_input = onnx.load(build.om_path).graph.input[0]
        assert om_input.type.tensor_type.shape.dim[0].dim_value == build.batch_size  # the stand-in's static .om
        assert build.log_path.read_text().startswith(f"$ {build.command}\n")
        record = json.loads(build.sidecar_path.read_text())
        assert record["om"] == build.om_path.name and record["argv"] == build.argv
        assert record["onnx"] == str(onnx_path)
    calls = fake_atc()
    assert sorted(c["argv"] for c in calls) == sorted(b.argv[1:] for b in builds)
    assert all(Path(c["cwd"]).name.startswith(".atc-work-bs") for c in calls)  # each its own scratch folder
    assert not list(out.glob(".atc-work-*"))  # removed after success

    again = build_om(onnx_path, "1,4,16", out_dir=out, progress=False)
    assert [b.status for b in again] == ["up-to-date"] * 3 and len(fake_atc()) == 3
    changed = build_om(onnx_path, "4", out_dir=out, precision_mode="force_fp32", progress=False)
    assert changed[0].status == "built" and len(fake_atc()) == 4
    tiny_onnx(onnx_path, seed=1)  # new weights, same command: the hash notices
    assert [b.status for b in build_om(onnx_path, "1", out_dir=out, progress=False)] == ["built"]
    ini = tmp_path / "mine.ini"
    ini.write_text("Gelu=high_performance\n")
    assert build_om(onnx_path, "1", out_dir=out, op_precision_ini=ini, progress=False)[0].status == "built"
    ini.write_text("Gelu=high_precision\n")  # same path, new content
    assert build_om(onnx_path, "1", out_dir=out, op_precision_ini=ini, progress=False)[0].status == "built"
    assert build_om(onnx_path, "1", out_dir=out, op_precision_ini=ini, progress=False)[0].status == "up-to-date"
    assert len(fake_atc()) == 7
    tiny_onnx(onnx_path, height=12, width=21)  # the ONNX changes: everything is stale
    rebuilt = build_om(onnx_path, "1,16", out_dir=out, progress=False)
    assert [b.status for b in rebuilt] == ["built", "built"] and "--input_shape=image:1,3,12,21" in rebuilt[0].argv
    forced = build_om(onnx_path, "1", out_dir=out, force=True, progress=False)
    assert forced[0].status == "built" and len(fake_atc()) == 10


def test_arch_suffixed_om_is_found(onnx_path, tmp_path, fake_atc, monkeypatch):
    monkeypatch.setenv("STANDIN_ATC_MODE", "arch")
    out = tmp_path / "om"
    (bs16,) = build_om(onnx_path, [16], out_dir=out, progress=False)
    (bs1,) = build_om(onnx_path, [1], out_dir=out, progress=False)
    assert bs16.om_path.name == "tiny-net_bs16_linux_x86_64.om"
    assert bs1.om_path.name == "tiny-net_bs1_linux_x86_64.om"
    assert json.loads(bs1.sidecar_path.read_text())["om"] == "tiny-net_bs1_linux_x86_64.om"
    # The prefix tiny-net_bs1 must not pick up tiny-net_bs16's file.
    bs1.om_path.unlink()
    assert find_om(out.resolve() / "tiny-net_bs1", since=0) is None
    assert build_om(onnx_path, [1], out_dir=out, progress=False)[0].status == "built"  # sidecar's om gone: rebuild


def test_failure_shows_error_codes_and_log(onnx_path, tmp_path, fake_atc, monkeypatch, capsys):
    monkeypatch.setenv("STANDIN_ATC_FAIL_BS", "4")
    out = tmp_path / "om"
    with pytest.raises(FocalinferError, match="ATC failed for batch size 4 of"):
        build_om(onnx_path, "1,4", out_dir=out, progress=False)
    err = capsys.readouterr().err
    assert f"log: {out.resolve() / 'tiny-net_bs4.atc.log'}" in err
    assert "E19010: [STANDIN atc] No parser is registered" in err and "ATC run failed" in err
    assert (out / "tiny-net_bs1.om").is_file() and not (out / "tiny-net_bs4.om").exists()
    assert not (out / "tiny-net_bs4.atc.json").exists()


def test_exit_zero_without_om_is_a_failure(onnx_path, tmp_path, fake_atc, monkeypatch, capsys):
    monkeypatch.setenv("STANDIN_ATC_MODE", "noom")
    with pytest.raises(FocalinferError, match="ATC failed for batch size 1"):
        build_om(onnx_path, [1], out_dir=tmp_path / "om", progress=False)
    assert "atc exited 0 but wrote no tiny-net_bs1*.om" in capsys.readouterr().err


def test_standin_rejects_unknown_flags(onnx_path, tmp_path, fake_atc, monkeypatch, capsys):
    import focalinfer.atc.build as atc

    monkeypatch.setattr(atc, "registry_atc_settings", lambda name, explicit: ((), ("--bogus_flag=1",)))
    with pytest.raises(FocalinferError):
        build_om(onnx_path, [1], out_dir=tmp_path / "om", model="x", progress=False)
    assert "unknown flag --bogus_flag" in capsys.readouterr().err


def test_om_feeds_the_ais_bench_standin(onnx_path, tmp_path, fake_atc, monkeypatch, ais_bench_generation):
    """om → infer: the stand-in .om runs through `python -m ais_bench` (stand-in) end to end."""
    from focalinfer.infer import run_inference

    (build,) = build_om(onnx_path, [4], out_dir=tmp_path / "om", progress=False)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        np.full((1, 3, 12, 20), i, np.float32).tofile(data / f"img_{i}.bin")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1] / "standins"))
    result = run_inference(build.om_path, data, output=tmp_path, output_dirname="res", progress=False)
    assert sorted(p.name for p in result.output_dir.glob("*.txt")) == [f"img_{i}_0.txt" for i in range(6)]


def test_bad_batch_sizes(onnx_path, tmp_path):
    for bad in ("", "0", "4,x"):
        with pytest.raises(UsageError, match="--batch-sizes"):
            build_om(onnx_path, bad, out_dir=tmp_path, dry_run=True)
    with pytest.raises(UsageError, match="must be an .onnx"):
        build_om(tmp_path / "m.pth", "1", out_dir=tmp_path, dry_run=True)


def test_doctor(tmp_path, fake_atc):
    from focalinfer.doctor import doctor_report

    toolkit = tmp_path / "Ascend" / "ascend-toolkit" / "latest"
    (toolkit / "compiler" / "bin").mkdir(parents=True)
    (toolkit / "version.cfg").write_text("runtime_running_version=[7.0.0.5.242:7.0.RC1]\nversion=7.0.RC1\n")
    real_atc = toolkit / "compiler" / "bin" / "atc"
    real_atc.write_text("#!/bin/sh\n")
    real_atc.chmod(0o755)
    os.environ["PATH"] = f"{real_atc.parent}{os.pathsep}{os.environ['PATH']}"  # fake_atc's monkeypatch restores it
    report = doctor_report()
    assert report["atc"] == {"path": str(real_atc), "cann_version": "7.0.RC1"}
    assert report["onnxruntime"]["providers"] and report["cpu_count"] >= 1
    assert report["ais_bench"]["importable"] is False
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0 and f"atc: {real_atc} (CANN 7.0.RC1)" in result.output
    assert "onnxruntime:" in result.output and "CPUs:" in result.output


def test_doctor_says_which_ais_bench_generation(standin_cli, ais_bench_generation):
    from focalinfer.doctor import doctor_report

    report = doctor_report()["ais_bench"]
    assert (report["importable"], report["generation"], report["generation_problem"]) == \
        (False, ais_bench_generation, None)
    result = CliRunner().invoke(cli, ["doctor"])
    line = next(ln for ln in result.output.splitlines() if ln.startswith("ais_bench:"))
    assert f"-m ais_bench, {ais_bench_generation} generation (" in line
    assert ("--divide_input" in line) == (ais_bench_generation == "2024")


def test_an_unwritable_out_dir_is_one_line_before_any_work(onnx_path, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(cli, ["om", "--onnx", str(onnx_path), "--out-dir", str(blocker / "om"), "--dry-run"])
    assert res.exit_code == 1 and "--out-dir is not writable" in res.output
    assert res.output.count("\n") == 1 and isinstance(res.exception, SystemExit)


def test_a_report_describing_another_onnx_is_refused_unless_the_model_is_named(onnx_path, tmp_path, no_atc):
    report = onnx_path.with_name(onnx_path.name + ".report.json")
    report.write_text(json.dumps({"model": "van-b2", "onnx_sha256": "0" * 64}))
    with pytest.raises(FocalinferError, match=r"describes another tiny-net.onnx .*--model"):
        build_om(onnx_path, [4], out_dir=tmp_path / "om", dry_run=True)
    (build,) = build_om(onnx_path, [4], out_dir=tmp_path / "om", dry_run=True, model="van-b2")
    assert any(a.startswith("--op_precision_mode") for a in build.argv)


# --- --aipp and --dynamic-batch ------------------------------------------------------------

# spec/precision.md's static AIPP block for ImageNet mean/std at 224, verbatim.
SPEC_AIPP_224 = """aipp_op {
    aipp_mode: static
    related_input_rank: 0
    input_format: RGB888_U8
    src_image_size_w: 224
    src_image_size_h: 224
    crop: false
    csc_switch: false
    rbuv_swap_switch: false
    mean_chn_0: 0
    mean_chn_1: 0
    mean_chn_2: 0
    min_chn_0: 123.675
    min_chn_1: 116.28
    min_chn_2: 103.53
    var_reci_chn_0: 0.017124753831663668
    var_reci_chn_1: 0.01750700280112045
    var_reci_chn_2: 0.017429193899782137
}
"""


def parse_aipp(text: str) -> dict[str, str]:
    body = text.strip().removeprefix("aipp_op {").removesuffix("}")
    return dict((k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in body.strip().splitlines()))


@pytest.mark.parametrize("model", ["focal-fast-s", "twins-altgvt-s", "evo-levit-256-384", "van-b2"])
def test_aipp_cfg_values_for_every_lead_model(model, tmp_path, no_atc):
    from fractions import Fraction

    from focalinfer.registry import get_model_spec

    for preset in get_model_spec(model).transforms:
        t = get_model_spec(model).transform(preset)
        onnx_file = tiny_onnx(tmp_path / f"{model}.onnx", height=t.crop, width=t.crop)
        out = tmp_path / preset
        (build,) = build_om(onnx_file, [1], out_dir=out, model=model, aipp=True, preset=preset, dry_run=True)
        cfg = out / f"{model}.aipp.cfg"
        assert f"--insert_op_conf={cfg.resolve()}" in build.argv and "--enable_small_channel=1" in build.argv
        values = parse_aipp(cfg.read_text())
        assert values["input_format"] == "RGB888_U8" and values["aipp_mode"] == "static"
        assert values["src_image_size_w"] == values["src_image_size_h"] == str(t.crop)
        assert values["crop"] == values["csc_switch"] == values["rbuv_swap_switch"] == "false"
        for i in range(3):
            # exact rational values of 255·mean and 1/(255·std), from the decimal mean/std
            assert values[f"mean_chn_{i}"] == "0"
            assert float(values[f"min_chn_{i}"]) == float(255 * Fraction(str(t.mean[i])))
            assert float(values[f"var_reci_chn_{i}"]) == pytest.approx(float(1 / (255 * Fraction(str(t.std[i])))),
                                                                      rel=1e-15)
        if t.mean == (0.5, 0.5, 0.5):
            assert {values[f"min_chn_{i}"] for i in range(3)} == {"127.5"}
            assert {values[f"var_reci_chn_{i}"] for i in range(3)} == {"0.00784313725490196"}  # the spec's figure


def test_aipp_cfg_is_the_spec_block(tmp_path, no_atc):
    onnx_file = tiny_onnx(tmp_path / "m.onnx", height=224, width=224)
    build_om(onnx_file, [1], out_dir=tmp_path / "om", model="focal-fast-s", aipp=True, dry_run=True)
    assert (tmp_path / "om" / "focal-fast-s.aipp.cfg").read_text() == SPEC_AIPP_224


def test_aipp_build_records_the_cfg_and_rebuilds_when_it_changes(tmp_path, fake_atc):
    onnx_file = tiny_onnx(tmp_path / "m.onnx", height=224, width=224)
    out = tmp_path / "om"
    (plain,) = build_om(onnx_file, [2], out_dir=out, model="focal-fast-s", progress=False)
    (aipp,) = build_om(onnx_file, [2], out_dir=out, model="focal-fast-s", aipp=True, progress=False)
    assert plain.status == aipp.status == "built"  # another argv: the plain .om is replaced
    cfg = (out / "focal-fast-s.aipp.cfg").resolve()
    assert aipp.argv[-2:] == [f"--insert_op_conf={cfg}", "--enable_small_channel=1"]
    record = json.loads(aipp.sidecar_path.read_text())
    assert record["inputs"] == {"aipp_cfg": sha256_file(cfg)}
    assert record["aipp"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "crop": 224,
                              "preset": "official", "cfg": "focal-fast-s.aipp.cfg"}
    om_input = onnx.load(aipp.om_path).graph.input[0]  # the stand-in's AIPP .om takes uint8 NHWC
    assert om_input.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_value for d in om_input.type.tensor_type.shape.dim] == [2, 224, 224, 3]
    assert build_om(onnx_file, [2], out_dir=out, model="focal-fast-s", aipp=True, progress=False)[0].status == \
        "up-to-date"
    zoo = build_om(onnx_file, [2], out_dir=out, model="focal-fast-s", aipp=True, preset="modelzoo", progress=False)
    assert zoo[0].status == "built" and "min_chn_0: 127.5" in cfg.read_text()  # same path, new values
    assert json.loads(zoo[0].sidecar_path.read_text())["inputs"]["aipp_cfg"] != record["inputs"]["aipp_cfg"]
    assert len(fake_atc()) == 3


def test_aipp_needs_a_model_whose_crop_is_the_onnx_input(tmp_path, no_atc):
    with pytest.raises(UsageError, match="--aipp needs the model's mean/std: pass --model NAME"):
        build_om(tiny_onnx(tmp_path / "anon.onnx", height=224, width=224), [1], out_dir=tmp_path, aipp=True,
                 dry_run=True)
    with pytest.raises(FocalinferError, match="evo-levit-256-384's official transform crops 384x384 but the ONNX "
                                              "input is 224x224"):
        build_om(tmp_path / "anon.onnx", [1], out_dir=tmp_path, model="evo-levit-256-384", aipp=True, dry_run=True)
    result = CliRunner().invoke(cli, ["om", "--onnx", str(tmp_path / "anon.onnx"), "--preset", "modelzoo",
                                      "--out-dir", str(tmp_path), "--dry-run"])
    assert result.exit_code == 2 and "only chooses the mean/std of --aipp" in result.output


def test_dynamic_batch_argv_record_and_standin(onnx_path, tmp_path, fake_atc):
    out = tmp_path / "om"
    (dry,) = build_om(onnx_path, "1", out_dir=out, dynamic_batch="1,4,8,16", dry_run=True)
    assert dry.argv == [
        "atc", "--framework=5", f"--model={onnx_path.resolve()}", f"--output={out.resolve() / 'tiny-net_dyn'}",
        "--input_format=NCHW", "--input_shape=image:-1,3,12,20", "--log=error", "--soc_version=Ascend310P3",
        "--dynamic_batch_size=1,4,8,16"]
    (build,) = build_om(onnx_path, "1", out_dir=out, dynamic_batch=[1, 4, 8, 16], progress=False)
    assert build.status == "built" and build.om_path.name == "tiny-net_dyn.om" and build.label == "dyn1,4,8,16"
    record = json.loads(build.sidecar_path.read_text())
    assert record["dynamic_batch"] == [1, 4, 8, 16] and record["batch_size"] == 0 and record["aipp"] == {}
    om = onnx.load(build.om_path)
    assert om.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {p.key: p.value for p in om.metadata_props}["standin.dynamic_batch_size"] == "1,4,8,16"
    assert build_om(onnx_path, "1", out_dir=out, dynamic_batch="1,4,8,16", progress=False)[0].status == "up-to-date"
    assert build_om(onnx_path, "1", out_dir=out, dynamic_batch="1,4,8", progress=False)[0].status == "built"
    report = onnx_path.with_name(onnx_path.name + ".report.json")
    report.write_text(json.dumps({"model": "van-b2"}))
    tiny_onnx(onnx_path, height=224, width=224)
    (both,) = build_om(onnx_path, "1", out_dir=out, dynamic_batch="4,16", aipp=True, progress=False)
    assert "--dynamic_batch_size=4,16" in both.argv and any(a.startswith("--insert_op_conf=") for a in both.argv)
    assert [d.dim_param or d.dim_value for d in onnx.load(both.om_path).graph.input[0].type.tensor_type.shape.dim] \
        == ["batch", 224, 224, 3]
    assert len(fake_atc()) == 3


@pytest.mark.parametrize("gears", ["4", "1,x", "0,4", "1,2049", "4,4", ",".join(map(str, range(1, 102)))])
def test_bad_gears_are_refused_in_one_line(onnx_path, tmp_path, gears):
    result = CliRunner().invoke(cli, ["om", "--onnx", str(onnx_path), "--dynamic-batch", gears,
                                      "--out-dir", str(tmp_path), "--dry-run"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "2–100 distinct batch sizes of 1–2048" in result.output


def test_gear_limits_and_flag_clash(onnx_path, tmp_path):
    most = ",".join(str(g) for g in range(1949, 2049))  # 100 gears up to 2048: the most ATC takes
    assert build_om(onnx_path, "1", out_dir=tmp_path, dynamic_batch=most, dry_run=True)[0].gears[-1] == 2048
    assert build_om(onnx_path, "1", out_dir=tmp_path, dynamic_batch="16,1", dry_run=True)[0].gears == [16, 1]
    both = CliRunner().invoke(cli, ["om", "--onnx", str(onnx_path), "--dynamic-batch", "1,4", "--batch-sizes", "4",
                                    "--out-dir", str(tmp_path), "--dry-run"])
    assert both.exit_code == 2 and "not both" in both.output


def run_standin(argv, tmp_path):
    return subprocess.run([sys.executable, str(STANDIN), *argv], capture_output=True, text=True, cwd=tmp_path)


def test_standin_takes_exactly_the_documented_aipp_and_dynamic_flags(tmp_path):
    onnx_file = tiny_onnx(tmp_path / "m.onnx", height=224, width=224)
    base = [f"--model={onnx_file}", f"--output={tmp_path / 'out'}", "--framework=5", "--input_format=NCHW",
            "--log=error", "--soc_version=Ascend310P3"]
    cfg = tmp_path / "a.cfg"
    cfg.write_text(SPEC_AIPP_224)
    good = run_standin(base + ["--input_shape=image:-1,3,224,224", "--dynamic_batch_size=1,8",
                               f"--insert_op_conf={cfg}", "--enable_small_channel=1"], tmp_path)
    assert good.returncode == 0, good.stdout
    cases = {
        "--input_shape=image:-1,3,224,224": "needs --dynamic_batch_size",
        "--input_shape=image:4,3,224,224 --dynamic_batch_size=1,4": "needs -1 as the --input_shape batch",
        "--input_shape=image:-1,3,224,224 --dynamic_batch_size=4": "2-100 distinct gears",
        "--input_shape=image:1,3,224,224 --enable_small_channel=2": "must be 0 or 1",
        "--input_shape=image:1,3,224,224 --dynamic_batchsize=1,4": "unknown flag --dynamic_batchsize",
    }
    for flags, message in cases.items():
        result = run_standin(base + flags.split(), tmp_path)
        assert result.returncode == 3 and message in result.stdout, (flags, result.stdout)
    for broken, message in [(SPEC_AIPP_224.replace("224", "256"), "src_image_size_w is '256'"),
                            (SPEC_AIPP_224.replace("RGB888_U8", "YUV420SP_U8"), "input_format"),
                            (SPEC_AIPP_224.replace("    var_reci_chn_2: 0.017429193899782137\n", ""), "missing"),
                            (SPEC_AIPP_224.replace("crop: false", "crop: false\n    padding: true"), "unknown"),
                            (SPEC_AIPP_224.replace("min_chn_0: 123.675", "min_chn_0: 300"), "min_chn 0-255")]:
        cfg.write_text(broken)
        result = run_standin(base + ["--input_shape=image:1,3,224,224", f"--insert_op_conf={cfg}"], tmp_path)
        assert result.returncode == 3 and message in result.stdout, (message, result.stdout)


# --- issue 22: what a killed om leaves, and one om per folder ----------------------------------


def test_a_killed_oms_leftovers_are_removed_and_its_lock_taken_over(onnx_path, tmp_path, fake_atc, capsys):
    from lockholder import killed_holder

    out = tmp_path / "om"
    out.mkdir()
    killed_holder(out, "om")
    (out / ".tiny-net_bs1.atc.json.ab12cd34.tmp").write_text("{")
    (out / ".atc-work-bs1").mkdir()
    (out / ".atc-work-bs1" / "fusion_result.json").write_text("{}")
    (out / ".notes.txt.ab12cd34.tmp").write_text("not om's")
    (built,) = build_om(onnx_path, "1", out_dir=out, progress=False)
    assert built.status == "built"
    err = capsys.readouterr().err
    assert "focalinfer om (pid" in err and "ended without releasing its lock (killed?); taking it over" in err
    assert f"removed what a killed om left (.tiny-net_bs1.atc.json.ab12cd34.tmp, .atc-work-bs1)" in err
    assert sorted(p.name for p in out.iterdir()) == [
        ".notes.txt.ab12cd34.tmp", "tiny-net_bs1.atc.json", "tiny-net_bs1.atc.log", "tiny-net_bs1.om"]


def test_a_live_om_in_the_same_folder_is_refused(onnx_path, tmp_path, fake_atc):
    from lockholder import holder, release

    out = tmp_path / "om"
    out.mkdir()
    other = holder(out, command="om")
    try:
        with pytest.raises(FocalinferError, match=rf"focalinfer om \(pid {other.pid}, started .*\) is writing here"):
            build_om(onnx_path, "1", out_dir=out, progress=False)
        assert fake_atc() == []
    finally:
        release(other)


def test_a_rebuild_that_does_not_finish_leaves_no_record_of_the_old_om(onnx_path, tmp_path, fake_atc, monkeypatch):
    out = tmp_path / "om"
    assert build_om(onnx_path, "4", out_dir=out, progress=False)[0].status == "built"
    monkeypatch.setenv("STANDIN_ATC_FAIL_BS", "4")  # as a kill in the middle of atc's write would
    with pytest.raises(FocalinferError):
        build_om(onnx_path, "4", out_dir=out, force=True, progress=False)
    assert not (out / "tiny-net_bs4.atc.json").exists()
    monkeypatch.delenv("STANDIN_ATC_FAIL_BS")
    assert build_om(onnx_path, "4", out_dir=out, progress=False)[0].status == "built"  # not "up-to-date"
