"""The om stage takes the precision check's answer: --keep-dtype FILE and --precision REPORT."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import planted
from focalinfer.atc import build_om
from focalinfer.cli import cli
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.precision import run_precision
from focalinfer.records import PrecisionRecord


@pytest.fixture()
def net(tmp_path):
    return planted.save(planted.layernorm_overflow_net(), tmp_path / "net.onnx")


@pytest.fixture()
def report(tmp_path, net):
    inputs = planted.write_inputs(tmp_path / "databin", 16)
    result = run_precision(net, inputs, tmp_path / "precision", samples=16)
    assert result.record.verdict == "keep-dtype"
    return result.report_path


def flag(argv, name):
    found = [a.partition("=")[2] for a in argv if a.startswith(f"--{name}=")]
    return found[0] if found else None


def test_keep_dtype_file_goes_to_every_atc_command(tmp_path, net, no_atc):
    keep = tmp_path / "keep.cfg"
    keep.write_text("norm/Pow\nnorm/ReduceMean_1\n")
    builds = build_om(net, "1,4", out_dir=tmp_path / "om", keep_dtype=keep, dry_run=True)
    assert [flag(b.argv, "keep_dtype") for b in builds] == [str(keep.resolve())] * 2
    with pytest.raises(FocalinferError, match="keep-dtype file not found"):
        build_om(net, "1", out_dir=tmp_path / "om", keep_dtype=tmp_path / "nope.cfg", dry_run=True)


def test_keep_dtype_note_only_where_atc_ignores_the_list(tmp_path, net, no_atc, capsys):
    """ATC reads --keep_dtype under every precision mode but must_keep_origin_dtype (atc_rules)."""
    keep = tmp_path / "keep.cfg"
    keep.write_text("norm/Pow\n")
    for mode in ("allow_fp32_to_fp16", "force_fp32", "allow_mix_precision"):
        (build,) = build_om(net, [1], out_dir=tmp_path / "om", keep_dtype=keep, precision_mode=mode, dry_run=True)
        assert flag(build.argv, "keep_dtype") == str(keep.resolve())
    assert "note" not in capsys.readouterr().err
    build_om(net, [1], out_dir=tmp_path / "om", keep_dtype=keep, precision_mode="must_keep_origin_dtype", dry_run=True)
    assert "ATC ignores --keep_dtype under --precision_mode=must_keep_origin_dtype" in capsys.readouterr().err


def test_keep_dtype_replaces_the_registry_list(tmp_path, net, no_atc, monkeypatch):
    import focalinfer.atc.build as atc

    monkeypatch.setattr(atc, "registry_atc_settings", lambda name, explicit: ((), ("--keep_dtype=registry.cfg",)))
    keep = tmp_path / "keep.cfg"
    keep.write_text("norm/Pow\n")
    (build,) = build_om(net, [1], out_dir=tmp_path / "om", model="x", keep_dtype=keep, dry_run=True)
    assert [a for a in build.argv if a.startswith("--keep_dtype")] == [f"--keep_dtype={keep.resolve()}"]


def test_changed_keep_list_rebuilds(tmp_path, net, fake_atc):
    keep = tmp_path / "keep.cfg"
    keep.write_text("norm/Pow\n")
    out = tmp_path / "om"
    (first,) = build_om(net, [1], out_dir=out, keep_dtype=keep, progress=False)
    assert first.status == "built"
    record = json.loads(first.sidecar_path.read_text())
    assert set(record["inputs"]) == {"keep_dtype"} and len(record["inputs"]["keep_dtype"]) == 64
    assert build_om(net, [1], out_dir=out, keep_dtype=keep, progress=False)[0].status == "up-to-date"
    keep.write_text("norm/Pow\nnorm/Sqrt\n")  # same path, new list
    assert build_om(net, [1], out_dir=out, keep_dtype=keep, progress=False)[0].status == "built"
    assert build_om(net, [1], out_dir=out, keep_dtype=keep, progress=False)[0].status == "up-to-date"
    assert len(fake_atc()) == 2
    assert all(flag(c["argv"], "keep_dtype") == str(keep.resolve()) for c in fake_atc())


def test_standin_checks_the_names_against_the_onnx(tmp_path, net, fake_atc, capsys):
    keep = tmp_path / "keep.cfg"
    keep.write_text("norm/Pow\nOpType::Softmax\nnot/a/node\n")
    with pytest.raises(FocalinferError, match="ATC failed"):
        build_om(net, [1], out_dir=tmp_path / "om", keep_dtype=keep, progress=False)
    assert "'not/a/node' is not a node of net.onnx" in capsys.readouterr().err


def test_precision_report_gives_mode_and_list(tmp_path, net, report, fake_atc):
    record = PrecisionRecord.read(report)
    out = tmp_path / "om"
    (build,) = build_om(net, [2], out_dir=out, precision_report=report, progress=False)
    assert build.status == "built"
    assert flag(build.argv, "precision_mode") == "force_fp16"
    keep = out.resolve() / "net_keep_dtype.cfg"
    assert flag(build.argv, "keep_dtype") == str(keep)
    assert keep.read_text().splitlines() == record.keep_dtype  # the stand-in accepted every name
    assert "keep_dtype" in json.loads(build.sidecar_path.read_text())["inputs"]
    assert build_om(net, [2], out_dir=out, precision_report=report.parent, progress=False)[0].status == "up-to-date"


def test_fp16_safe_and_fp32_reports(tmp_path, net, no_atc):
    from focalinfer.util import sha256_file

    folder = tmp_path / "p"
    PrecisionRecord("fp16-safe", "force_fp16", sha256_file(net), atc_flags=["--precision_mode=force_fp16"]).write(folder)
    (safe,) = build_om(net, [1], out_dir=tmp_path / "om", precision_report=folder, dry_run=True)
    assert flag(safe.argv, "precision_mode") == "force_fp16" and flag(safe.argv, "keep_dtype") is None
    PrecisionRecord("fp32", "force_fp16", sha256_file(net), atc_flags=["--precision_mode=allow_fp32_to_fp16"]).write(folder)
    (fallback,) = build_om(net, [1], out_dir=tmp_path / "om", precision_report=folder, dry_run=True)
    assert flag(fallback.argv, "precision_mode") == "allow_fp32_to_fp16" and flag(fallback.argv, "keep_dtype") is None


def test_report_for_another_onnx_is_refused_in_one_line(tmp_path, report, no_atc):
    other = planted.save(planted.clean_net(), tmp_path / "other.onnx")
    with pytest.raises(FocalinferError, match="made for another ONNX"):
        build_om(other, [1], out_dir=tmp_path / "om", precision_report=report, dry_run=True)
    result = CliRunner().invoke(cli, ["om", "--onnx", str(other), "--precision", str(report), "--dry-run",
                                      "--out-dir", str(tmp_path / "om")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"{report}: made for another ONNX" in result.output and "rerun `focalinfer precision --onnx" in result.output
    assert not list((tmp_path / "om").glob("*keep_dtype.cfg"))


def test_precision_excludes_the_flags_it_replaces(tmp_path, net, report, no_atc):
    with pytest.raises(UsageError, match="--precision takes the mode and the keep list from the report"):
        build_om(net, [1], out_dir=tmp_path / "om", precision_report=report, precision_mode="force_fp32", dry_run=True)
    result = CliRunner().invoke(cli, ["om", "--onnx", str(net), "--precision", str(report), "--keep-dtype",
                                      str(report), "--dry-run", "--out-dir", str(tmp_path / "om")])
    assert result.exit_code == 2
    missing = CliRunner().invoke(cli, ["om", "--onnx", str(net), "--precision", str(tmp_path / "none.json"),
                                       "--dry-run", "--out-dir", str(tmp_path / "om")])
    assert missing.exit_code == 1 and "no precision report there; run `focalinfer precision` first" in missing.output


def test_cli_keep_dtype_dry_run(tmp_path, net, no_atc):
    keep = tmp_path / "keep.cfg"
    keep.write_text("norm/Pow\n")
    result = CliRunner().invoke(cli, ["om", "--onnx", str(net), "--keep-dtype", str(keep), "--batch-sizes", "1,8",
                                      "--dry-run", "--out-dir", str(tmp_path / "om")])
    assert result.exit_code == 0 and result.output.count(f"--keep_dtype={keep.resolve()}") == 2


def test_unreadable_or_foreign_report(tmp_path, net, no_atc):
    bad = tmp_path / "precision.json"
    bad.write_text("{not json")
    with pytest.raises(FocalinferError, match="precision report is not readable JSON"):
        build_om(net, [1], out_dir=tmp_path / "om", precision_report=bad, dry_run=True)
    bad.write_text(json.dumps({"verdict": "maybe", "mode": "force_fp16", "onnx_sha256": "ab"}))
    with pytest.raises(FocalinferError, match="not a focalinfer precision report"):
        build_om(net, [1], out_dir=tmp_path / "om", precision_report=bad, dry_run=True)
