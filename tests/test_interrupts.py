"""Fail before the work, say what an interrupt keeps, leave no stale state (issue 10, rules 5 and 7).

Sessions run as root, which ignores chmod: an unwritable path is one with a file where a folder
should be. Images come from `focalinfer sample-data`'s generator, checkpoints are generated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from clitools import error_line, run
from focalinfer import registry
from focalinfer.cli import INTERRUPTED_KEEPS, cli
from focalinfer.models.synthetic import make_checkpoint
from focalinfer.samples import make_sample_set

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def blocker(tmp_path) -> Path:
    path = tmp_path / "blocker"
    path.write_text("a file where a folder should be")
    return path


def no_work(monkeypatch, target: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{target} ran before the output path was checked")
    monkeypatch.setattr(target, fail)


# --- rule 5: output paths are checked before any work ---------------------------------------


def test_labels_out_is_checked_before_preprocessing(tmp_path, blocker, monkeypatch):
    images = make_sample_set(tmp_path / "img" / "n01440764", count=2).parent
    no_work(monkeypatch, "focalinfer.preprocess.run._run_all")
    for labels in (blocker / "val_label.txt", tmp_path):  # under a file; a folder
        result = run("preprocess", "--images", images, "--out", tmp_path / "bin", "--labels-out", labels, "--quiet")
        assert result.exit_code == 1, result.output
        line = error_line(result)
        assert line.startswith(f"focalinfer: error: {labels}: label file (--labels-out)")
        assert not list((tmp_path / "bin").glob("*")) if (tmp_path / "bin").exists() else True


def test_synthetic_checkpoint_out_is_checked_before_building(tmp_path, blocker, monkeypatch):
    no_work(monkeypatch, "focalinfer.models.synthetic.synthetic_state_dict")
    for out in (blocker / "x.pth", tmp_path):
        result = run("synthetic-checkpoint", "--model", "van-b0", "--out", out)
        assert result.exit_code == 1, result.output
        assert error_line(result).startswith(f"focalinfer: error: {out}: checkpoint (--out)")


def test_sample_data_out_is_checked_before_drawing(tmp_path, blocker, monkeypatch):
    no_work(monkeypatch, "focalinfer.samples.synthetic_photo")
    for out in (blocker / "samples", blocker):
        result = run("sample-data", "--out", out, "--count", "3")
        assert result.exit_code == 1, result.output
        assert error_line(result).startswith(f"focalinfer: error: {out}: sample folder (--out) is not writable")


# --- rule 5: what Ctrl-C keeps, per command -------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


@pytest.fixture
def tiny_checkpoint(tmp_path):
    spec = registry.ModelSpec(
        name="test-interrupt-tiny", family="test", builder=Tiny, input_size=16, num_classes=10,
        transforms={"official": registry.official_transform(16)}, checkpoint_layout="raw", source="tests",
    )
    registry._load_families()
    registry.register_model(spec)
    yield make_checkpoint(spec.name, tmp_path / "tiny.pth")
    registry._REGISTRY.pop(spec.name)


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("existing", [False, True])
def test_ctrl_c_in_export_keeps_nothing_and_says_so(tmp_path, tiny_checkpoint, monkeypatch, existing):
    out = tmp_path / "onnx" / "tiny.onnx"
    out.parent.mkdir()
    if existing:
        out.write_bytes(b"the previous export")
    # the last step before the files are written: tracing, simplifying and parity are done
    monkeypatch.setattr("focalinfer.export.exporter.ExportReport.as_dict", interrupt)
    result = run("export", "--model", "test-interrupt-tiny", "--checkpoint", tiny_checkpoint, "--out", out,
                 "--parity-samples", "1", "--force")
    assert result.exit_code == 130
    assert error_line(result) == f"focalinfer: interrupted; {INTERRUPTED_KEEPS['export']}"
    assert "nothing was written" in result.output
    assert sorted(os.listdir(out.parent)) == (["tiny.onnx"] if existing else [])
    if existing:
        assert out.read_bytes() == b"the previous export"


@pytest.mark.parametrize("argv, target, keeps", [
    (["infer", "--model-file", "m.onnx"], "focalinfer.infer.run_inference", "the finished outputs are kept"),
    (["eval", "--onnx", "m.onnx", "--labels", "l.txt"], "focalinfer.pipeline.evaluate",
     "no result.json was written"),
    (["om", "--onnx", "m.onnx"], "focalinfer.atc.build_om", "the .om files already built are kept"),
    (["inspect", "x.pth"], "focalinfer.models.checkpoint.inspect_checkpoint", "nothing was written"),
    (["synthetic-checkpoint", "--out", "x.pth"], "focalinfer.models.synthetic.make_checkpoint",
     "nothing was written"),
])
def test_ctrl_c_line_says_what_each_command_keeps(monkeypatch, argv, target, keeps):
    monkeypatch.setattr(target, interrupt)
    result = run(*argv)
    assert result.exit_code == 130
    line = error_line(result)
    assert line.startswith("focalinfer: interrupted; ") and keeps in line
    assert "completed outputs are kept" not in line


# --- rule 7: an interrupted or dead preprocess ----------------------------------------------


@pytest.fixture(scope="module")
def big_images(tmp_path_factory) -> Path:
    """Large sample photos, so a 2-worker run takes long enough to be interrupted midway."""
    root = tmp_path_factory.mktemp("big")
    first = make_sample_set(root, count=1, sizes=[(1800, 1350)]) / "ILSVRC2012_val_00000001.JPEG"
    (root / "val_label.txt").unlink()
    for n in range(2, 41):  # copies decode as slowly, and cost nothing to make
        shutil.copyfile(first, root / f"ILSVRC2012_val_{n:08d}.JPEG")
    return root


def start_preprocess(images: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "focalinfer.cli", "preprocess", "--images", str(images), "--out", str(out),
            "--workers", "2", "--quiet", "--allow-skips"]
    # its own process group: a terminal's Ctrl-C reaches the whole foreground group
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def stop_midway(proc: subprocess.Popen, out: Path, sig: int) -> tuple[str, str]:
    deadline = time.monotonic() + 60
    while not list(out.glob("*.bin")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "preprocess wrote nothing in 60 s"
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    return stdout, stderr


def temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


def test_ctrl_c_in_preprocess_keeps_finished_bins_and_the_rerun_cleans_up(tmp_path, big_images):
    out = tmp_path / "bin"
    proc = start_preprocess(big_images, out)
    _, stderr = stop_midway(proc, out, signal.SIGINT)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"focalinfer: interrupted; {INTERRUPTED_KEEPS['preprocess']}"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["error"] == "KeyboardInterrupt"
    kept = len(list(out.glob("*.bin")))
    assert 0 < kept < 40
    # a worker killed mid-write leaves its temp file behind; plant one to be sure there is one
    (out / ".ILSVRC2012_val_00000040.bin.abcd_123.tmp").write_bytes(b"\0" * 100)
    result = run("preprocess", "--images", big_images, "--out", out, "--workers", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "the previous preprocess was interrupted (KeyboardInterrupt); resuming" in result.output
    assert "removed" in result.output and "temp files" in result.output
    assert f"reused {kept}" in result.output
    assert temps(out) == [] and len(list(out.glob("*.bin"))) == 40
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_a_dead_preprocess_is_not_reported_running_and_a_rerun_resumes(tmp_path, big_images):
    out = tmp_path / "bin"
    proc = start_preprocess(big_images, out)
    stop_midway(proc, out, signal.SIGKILL)  # no handler runs: the manifest still says "running"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert (manifest["pid"], manifest["host"]) == (proc.pid, socket.gethostname())
    result = run("preprocess", "--images", big_images, "--out", out, "--workers", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert f"the previous preprocess (pid {proc.pid}, started {manifest['started']}) died before it finished; " \
           "resuming" in result.output
    assert temps(out) == [] and len(list(out.glob("*.bin"))) == 40
    final = json.loads((out / "manifest.json").read_text())
    assert final["status"] == "complete" and "pid" not in final


def test_a_live_preprocess_in_the_same_folder_is_refused(tmp_path):
    images = make_sample_set(tmp_path / "img", count=2)
    out = tmp_path / "bin"
    assert run("preprocess", "--images", images, "--out", out, "--quiet").exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        manifest.update(status="running", pid=other.pid, host=socket.gethostname(), started="2026-01-01T00:00:00")
        (out / "manifest.json").write_text(json.dumps(manifest))
        (out / ".a.bin.abcdefgh.tmp").write_bytes(b"its write in progress")
        result = run("preprocess", "--images", images, "--out", out, "--quiet")
        assert result.exit_code == 1
        assert f"another preprocess (pid {other.pid}" in error_line(result)
        assert temps(out) == [".a.bin.abcdefgh.tmp"]  # the live run's temp file is left alone
    finally:
        other.kill()
        other.wait()


def test_an_old_running_manifest_without_a_pid_is_resumed_with_a_note(tmp_path):
    images = make_sample_set(tmp_path / "img", count=2)
    out = tmp_path / "bin"
    assert run("preprocess", "--images", images, "--out", out, "--quiet").exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = run("preprocess", "--images", images, "--out", out, "--quiet")
    assert result.exit_code == 0 and "reused 2" in result.output
    assert "the previous preprocess did not finish (its manifest names no process); resuming" in result.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
