"""Crash consistency (issue 22): each long-running command killed with SIGKILL at seeded random
moments, rerun, and compared with an uninterrupted run (the harness: tests/crash.py).

10 moments per command here; ``-m slow`` runs 100 (``make test-slow``). ``CRASH_SEED`` changes the
draw (default 0). Inputs are tiny: sample JPEGs and the tests' 32-pixel model (tests/tinynet.py).
To add a command (infer, eval), add one :class:`CrashCase` to ``CASES``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from pathlib import Path

import pytest

from crash import CrashCase, CrashHarness, Zygote, without
from focalinfer import registry
from focalinfer.export import export_onnx
from focalinfer.models.synthetic import make_checkpoint
from focalinfer.preprocess import preprocess
from focalinfer.records import AtcRecord, ExportRecord, Manifest, PrecisionRecord
from focalinfer.samples import make_sample_set
from tinynet import TINY, TinyNet

STANDIN_ATC = Path(__file__).resolve().parent / "standins" / "atc_standin.py"
SEED = int(os.environ.get("CRASH_SEED", "0"))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- preprocess --------------------------------------------------------------------------------

def preprocess_argv(inputs: dict, out: Path) -> list[str]:
    return ["preprocess", "--model", TINY, "--images", str(inputs["images"]), "--out", str(out),
            "--workers", "2", "--quiet"]


def preprocess_normalise(name: str, data: bytes) -> bytes:
    return without(data, "counts.written", "counts.reused") if name == "manifest.json" else data


def preprocess_check(inputs: dict, out: Path) -> None:
    manifest = Manifest.read(out)
    assert manifest.status == "complete" and "pid" not in manifest.extra
    counts = manifest.extra["counts"]
    assert counts["written"] + counts["reused"] == counts["found"] == len(manifest.files) == 40
    for entry in manifest.files:
        assert (out / entry["bin"]).stat().st_size == manifest.bytes_per_file
        assert entry["source_sha256"] == sha256(inputs["images"] / entry["source"])


# --- export ------------------------------------------------------------------------------------

def export_argv(inputs: dict, out: Path) -> list[str]:
    # --force, as make export: an ONNX a killed run wrote without its report is redone
    return ["export", "--model", TINY, "--checkpoint", str(inputs["checkpoint"]), "--out", str(out / "tiny.onnx"),
            "--dynamic-batch", "--parity-samples", "2", "--force"]


def export_normalise(name: str, data: bytes) -> bytes:
    return without(data, "seconds", "notes") if name.endswith(".report.json") else data


def export_check(inputs: dict, out: Path) -> None:
    record = ExportRecord.read(out / "tiny.onnx")  # verifies the report describes this ONNX
    assert record.onnx_sha256 == sha256(out / "tiny.onnx") and record.parity["passed"]
    assert record.checkpoint_sha256 == sha256(inputs["checkpoint"]) and record.num_classes == 10


# --- precision ---------------------------------------------------------------------------------

def precision_argv(inputs: dict, out: Path) -> list[str]:
    return ["precision", "--onnx", str(inputs["onnx"]), "--input", str(inputs["bins"]), "--out", str(out),
            "--samples", "8", "--threads", "1", "--quiet"]


def precision_normalise(name: str, data: bytes) -> bytes:
    return without(data, "seconds", "timings") if name == "precision.json" else data


def precision_check(inputs: dict, out: Path) -> None:
    record = PrecisionRecord.read(out)
    assert record.onnx_sha256 == sha256(inputs["onnx"]) and record.verdict == "fp16-safe"
    assert record.manifest_sha256 == sha256(inputs["bins"] / "manifest.json")


# --- om with the ATC stand-in ------------------------------------------------------------------

def om_argv(inputs: dict, out: Path) -> list[str]:
    return ["om", "--onnx", str(inputs["onnx"]), "--batch-sizes", "1,4", "--out-dir", str(out), "--model", TINY,
            "--jobs", "2"]


def om_env(inputs: dict) -> dict:
    return {"PATH": f"{inputs['atc_bin']}{os.pathsep}{os.environ['PATH']}"}


def om_normalise(name: str, data: bytes) -> bytes:
    return without(data, "built", "seconds") if name.endswith(".atc.json") else data


def om_check(inputs: dict, out: Path) -> None:
    for batch in (1, 4):
        record = AtcRecord.read(out / f"tiny_bs{batch}.atc.json")
        assert record is not None and record.onnx_sha256 == sha256(inputs["onnx"])
        assert (out / record.om).is_file() and record.batch_size == batch


CASES = [
    CrashCase("preprocess", lambda shared: shared_inputs(shared), preprocess_argv, preprocess_check,
              preprocess_normalise),
    CrashCase("export", lambda shared: shared_inputs(shared), export_argv, export_check, export_normalise),
    CrashCase("precision", lambda shared: shared_inputs(shared), precision_argv, precision_check,
              precision_normalise),
    CrashCase("om", lambda shared: shared_inputs(shared), om_argv, om_check, om_normalise, om_env),
]


def shared_inputs(shared: Path) -> dict:
    """40 sample JPEGs, the tiny model's checkpoint, its ONNX and preprocessed files, an atc on PATH."""
    if (shared / "inputs.json").exists():
        return {k: Path(v) for k, v in json.loads((shared / "inputs.json").read_text()).items()}
    images = make_sample_set(shared / "images", count=40, sizes=[(160, 120), (90, 130)])
    (images / "val_label.txt").unlink()
    checkpoint = make_checkpoint(TINY, shared / "tiny.pth")
    onnx_path = shared / "tiny.onnx"
    export_onnx(TINY, checkpoint, onnx_path, dynamic_batch=True, parity_samples=2)
    preprocess(TINY, images, shared / "bin", workers=1, progress=False)
    atc_bin = shared / "atc-bin"
    atc_bin.mkdir()
    (atc_bin / "atc").write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(STANDIN_ATC)!r}, "
                                 "run_name='__main__')\n")
    (atc_bin / "atc").chmod(0o755)
    inputs = {"images": images, "checkpoint": checkpoint, "onnx": onnx_path, "bins": shared / "bin",
              "atc_bin": atc_bin}
    (shared / "inputs.json").write_text(json.dumps({k: str(v) for k, v in inputs.items()}))
    return inputs


@pytest.fixture(scope="module")
def tiny_registered():
    registry.model_names()
    registry._REGISTRY[TINY] = registry.ModelSpec(
        name=TINY, family="test", builder=TinyNet, input_size=32,
        transforms={"official": registry.official_transform(32)}, checkpoint_layout="model",
        source="tests/tinynet.py", num_classes=10,
    )
    yield
    registry._REGISTRY.pop(TINY)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_registered) -> Path:
    return tmp_path_factory.mktemp("crash-inputs")


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def crash_test(case: CrashCase, moments: int, shared: Path, zygote: Zygote, work: Path) -> None:
    inputs = case.prepare(shared)
    CrashHarness(zygote, case, inputs, work).run(moments, SEED)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_killed_at_10_moments_then_rerun_equals_an_uninterrupted_run(case, shared, zygote, tmp_path):
    crash_test(case, 10, shared, zygote, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_killed_at_100_moments_then_rerun_equals_an_uninterrupted_run(case, shared, zygote, tmp_path):
    crash_test(case, 100, shared, zygote, tmp_path)


def test_the_harness_reports_a_file_that_differs_from_an_uninterrupted_runs(shared, zygote, tmp_path):
    """A command whose result changes from run to run (here: more parity samples each time) fails."""
    runs = itertools.count(2)

    def drifting(inputs: dict, out: Path) -> list[str]:
        argv = export_argv(inputs, out)
        argv[argv.index("--parity-samples") + 1] = str(next(runs))
        return argv

    case = CrashCase("export-drifting", lambda shared: shared_inputs(shared), drifting, export_check,
                     export_normalise)
    with pytest.raises(AssertionError, match=r"not byte-identical to an uninterrupted run's: tiny.onnx.report.json "
                                             r"\(keys parity: "):
        CrashHarness(zygote, case, case.prepare(shared), tmp_path).run(1, SEED)
