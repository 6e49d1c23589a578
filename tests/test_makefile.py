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
