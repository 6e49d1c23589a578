"""The Makefile's demo and om targets, run by make itself with a stand-in focalinfer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def fake_venv(tmp_path) -> Path:
    """A venv whose focalinfer only records its arguments; `-o .installed` keeps make from building it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "focalinfer"
    script.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.txt"}\n')
    script.chmod(0o755)
    (venv / ".installed").touch()
    return venv


def make(venv: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    env.pop("MAKEFLAGS", None)
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-o", f"{venv}/.installed",
                           f"VENV={venv}", *args], env=env, capture_output=True, text=True, timeout=60)


def no_atc_path(tmp_path: Path) -> str:
    """PATH with sh and make but no atc."""
    bin_dir = tmp_path / "bin-no-atc"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", "make", "sed"):
        if (bin_dir / tool).exists():
            continue
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_make_om_without_cann_says_to_add_the_dry_run_flag(fake_venv, tmp_path):
    path = no_atc_path(tmp_path)
    assert shutil.which("atc", path=path) is None
    done = make(fake_venv, "om", "WORK=infer", path=path)
    assert done.returncode != 0
    assert "add ATC_FLAGS=--dry-run" in done.stdout + done.stderr
    assert not (tmp_path / "calls.txt").exists()  # focalinfer was not even started
    dry = make(fake_venv, "om", "WORK=infer", "ATC_FLAGS=--dry-run", path=path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (tmp_path / "calls.txt").read_text().split()[-1] == "--dry-run"


def test_each_models_demo_has_its_own_folder(fake_venv):
    plans = {}
    for model in ("focal-fast-s", "van-b2"):
        done = make(fake_venv, "-n", "demo", f"MODEL={model}")
        assert done.returncode == 0, done.stderr
        lines = re.sub(r"\\\n\s*", " ", done.stdout).splitlines()  # join continued command lines
        plans[model] = [line for line in lines if line.startswith(str(fake_venv))]
    for model, commands in plans.items():
        other = "van-b2" if model == "focal-fast-s" else "focal-fast-s"
        text = "\n".join(commands)
        assert f"--out demo/{model}/databin" in text and f"--input demo/{model}/databin" in text
        assert f"--out-dir demo/{model}/om" in text and f"demo/{model}/result_bs16.json" in text
        assert "demo/databin" not in text and f"demo/{other}" not in text


def test_precision_report_reaches_om_and_the_demo_checks_before_om(fake_venv, tmp_path):
    check = make(fake_venv, "precision", "WORK=infer", "SAMPLES=32")
    assert check.returncode == 0, check.stdout + check.stderr
    assert (tmp_path / "calls.txt").read_text().split() == [
        "precision", "--onnx", "infer/focal-fast-s.onnx", "--input", "infer/databin", "--out", "infer/precision",
        "--samples", "32"]
    built = make(fake_venv, "om", "WORK=infer", "PRECISION=infer/precision/precision.json", "ATC_FLAGS=--dry-run")
    assert built.returncode == 0, built.stdout + built.stderr
    om = (tmp_path / "calls.txt").read_text().splitlines()[-1].split()
    assert om[om.index("--precision") + 1] == "infer/precision/precision.json" and "--keep-dtype" not in om
    own = make(fake_venv, "om", "WORK=infer", "KEEP_DTYPE=mine.cfg", "ATC_FLAGS=--dry-run")
    om = (tmp_path / "calls.txt").read_text().splitlines()[-1].split()
    assert own.returncode == 0 and om[om.index("--keep-dtype") + 1] == "mine.cfg" and "--precision" not in om
    demo = make(fake_venv, "-n", "demo")
    lines = [line for line in re.sub(r"\\\n\s*", " ", demo.stdout).splitlines() if line.startswith(f"-{fake_venv}")
             or line.startswith(str(fake_venv))]
    steps = [line.split()[1] for line in lines]
    assert steps.index("export") < steps.index("precision") < steps.index("om")
    first_om = next(line for line in lines if line.split()[1] == "om")
    assert "--precision demo/focal-fast-s/precision/precision.json" in first_om


def test_infer_and_eval_take_a_ray_address(fake_venv, tmp_path):
    for target in ("infer", "eval"):
        done = make(fake_venv, target, "WORK=infer", "BACKEND=onnxruntime", "RAY=auto", "RAY_ACTORS=4")
        assert done.returncode == 0, done.stdout + done.stderr
        call = (tmp_path / "calls.txt").read_text().splitlines()[-1].split()
        assert call[0] == target and call[-4:] == ["--ray", "auto", "--ray-actors", "4"]
    done = make(fake_venv, "eval", "WORK=infer", "BACKEND=onnxruntime")
    assert "--ray" not in (tmp_path / "calls.txt").read_text().splitlines()[-1]
