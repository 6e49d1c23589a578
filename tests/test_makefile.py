"""The Makefile's targets, run by make itself with a stand-in focalinfer (or the real one, where said)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from focalinfer.samples import make_sample_set

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def venv_with(folder: Path, script: str) -> Path:
    """A venv whose bin/focalinfer is ``script``; `-o .installed` keeps make from building it."""
    venv = folder / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "focalinfer").write_text(f"#!/bin/sh\n{script}\n")
    (venv / "bin" / "focalinfer").chmod(0o755)
    (venv / ".installed").touch()
    return venv


@pytest.fixture
def fake_venv(tmp_path) -> Path:
    """A venv whose focalinfer only records its arguments."""
    return venv_with(tmp_path, f'echo "$@" >> {tmp_path / "calls.txt"}')


def make(venv: Path, *args: str, path: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    env.pop("MAKEFLAGS", None)
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-o", f"{venv}/.installed",
                           f"VENV={venv}", *args], env=env, capture_output=True, text=True, timeout=timeout)


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


def test_the_demo_gates_its_runs_and_ends_with_their_report(fake_venv):
    demo = make(fake_venv, "-n", "demo")
    assert demo.returncode == 0, demo.stderr
    lines = [line for line in re.sub(r"\\\n\s*", " ", demo.stdout).splitlines() if line.startswith(str(fake_venv))]
    assert [line.split()[1] for line in lines][-3:] == ["eval", "compare", "report"]
    d = "demo/focal-fast-s"
    assert f"--reference {d}/result_bs16.json --max-drop 0.5" in lines[-3] and f"--csv {d}/results.csv" in lines[-3]
    assert "--labels demo/images/val_label.txt --max-drop 0.5" in lines[-2]
    assert lines[-1].split()[2:10] == [f"{d}/result_bs16.json", f"{d}/result_bs1.json", "--out", f"{d}/report.html",
                                       "--precision", f"{d}/precision/precision.json", "--max-drop", "0.5"]
    assert '--title "focalinfer demo: focal-fast-s on synthetic images with untrained weights' in lines[-1]
    assert demo.stdout.rstrip().endswith(f'echo "== the report of these runs: {d}/report.html"')


def test_make_test_installs_chromium_with_apt_get_only_when_missing(tmp_path):
    """`browser` (a prerequisite of `make test`): apt-get install chromium when it is missing and we are root."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "make", "sed", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "apt.txt"
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    apt.chmod(0o755)
    present = tmp_path / "chromium"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    base = ["make", "--no-print-directory", "-C", str(ROOT), "browser"]
    done = subprocess.run(base + [f"CHROMIUM={present}"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not calls.exists()
    done = subprocess.run(base + [f"CHROMIUM={tmp_path / 'absent'}"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    if os.geteuid() == 0:
        assert calls.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]
    else:
        assert not calls.exists() and "needs root" in done.stdout
    assert re.search(r"^test: setup browser$", (ROOT / "Makefile").read_text(), re.M)


def test_make_test_leaves_the_slow_crash_runs_out(fake_venv):
    plan = make(fake_venv, "-n", "test", "test-fast", "test-slow")
    assert plan.returncode == 0, plan.stderr
    lines = [line for line in plan.stdout.splitlines() if "pytest" in line]
    assert [line.split("pytest -q", 1)[1].strip() for line in lines] == \
        ['-m "not slow"', '-m "not fullsize and not slow"', "-m slow"]


def test_make_names_its_variable_when_a_second_model_needs_another_folder(tmp_path):
    """Issue 22: the refusal to mix transforms names DATABIN, which make exposes (not --out)."""
    images = make_sample_set(tmp_path / "img", count=3)
    venv = venv_with(tmp_path, f'PYTHONPATH={ROOT} exec {sys.executable} -m focalinfer.cli "$@"')
    work = tmp_path / "work"

    def preprocess(*args):
        return make(venv, "preprocess", f"DATA={images}", f"WORK={work}", "WORKERS=1", *args, timeout=300)

    assert preprocess("MODEL=van-b0").returncode == 0
    second = preprocess("MODEL=evo-levit-128s-384")  # 384 px: another transform
    assert second.returncode != 0
    own = work / "databin_evo-levit-128s-384"
    assert f"(with make: DATABIN={own} on this and the later make targets)" in second.stderr
    third = preprocess("MODEL=evo-levit-128s-384", f"DATABIN={own}")
    assert third.returncode == 0, third.stderr
    assert len(list(own.glob("*.bin"))) == 3
def test_make_eval_without_the_om_suggests_the_cpu_backend(fake_venv, tmp_path):
    """A CPU machine has no .om: make says how to score the ONNX here instead of focalinfer's "not found"."""
    for target in ("eval", "infer"):
        done = make(fake_venv, target, f"WORK={tmp_path / 'work'}")
        assert done.returncode != 0
        assert f"make {target}: {tmp_path / 'work'}/om/focal-fast-s_bs1.om not found" in done.stdout
        assert "run the ONNX on this CPU with BACKEND=auto" in done.stdout
    assert not (tmp_path / "calls.txt").exists()  # focalinfer was not started
    done = make(fake_venv, "eval", f"WORK={tmp_path / 'work'}", "BACKEND=auto")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "calls.txt").read_text().split()[:2] == ["eval", "--onnx"]


def test_the_demos_batch_1_and_16_run_1_and_16_images_per_call(fake_venv):
    """auto may run a batch of 16 as calls of 1; the demo names its backend, so its compare compares what it says."""
    done = make(fake_venv, "-n", "demo")
    assert done.returncode == 0, done.stderr
    lines = re.sub(r"\\\n\s*", " ", done.stdout).splitlines()
    evals = [line for line in lines if line.startswith(f"{fake_venv}/bin/focalinfer eval")]
    assert len(evals) == 2 and all("--backend onnxruntime" in line for line in evals)
    assert {line.split("--batch-size ")[1].split()[0] for line in evals} == {"1", "16"}
    compare = next(line for line in lines if " compare " in line)
    assert "demo/focal-fast-s/result_bs1 demo/focal-fast-s/result_bs16" in compare


def test_infer_and_eval_take_a_ray_address(fake_venv, tmp_path):
    for target in ("infer", "eval"):
        done = make(fake_venv, target, "WORK=infer", "BACKEND=onnxruntime", "RAY=auto", "RAY_ACTORS=4")
        assert done.returncode == 0, done.stdout + done.stderr
        call = (tmp_path / "calls.txt").read_text().splitlines()[-1].split()
        assert call[0] == target and call[-4:] == ["--ray", "auto", "--ray-actors", "4"]
    done = make(fake_venv, "eval", "WORK=infer", "BACKEND=onnxruntime")
    assert "--ray" not in (tmp_path / "calls.txt").read_text().splitlines()[-1]
