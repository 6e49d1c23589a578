"""eval = infer then score (focalinfer/pipeline.py): decided before inference, truthful after Ctrl-C,
a full disk said with the folder and the space needed (issue 22, point 5). Real files: a tiny
classifier's ONNX, generated inputs and labels (tests/killpoints.make_run_set), onnxruntime."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clitools import error_line, run
from focalinfer import layout
from killpoints import IMAGES, REPO, make_run_set


@pytest.fixture
def run_set(tmp_path, tiny_onnx):
    return make_run_set(tmp_path / "set", tiny_onnx[0])


def evaluate(run_set, out, *extra, batch=2):
    return run("eval", "--onnx", run_set["onnx"], "--labels", run_set["labels"], "--input", run_set["data"],
               "--output", out, "--batch-size", batch, "--backend", "onnxruntime", "--quiet", *extra)


def no_inference(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("inference ran")

    monkeypatch.setattr("focalinfer.infer.run._dispatch", fail)
    monkeypatch.setattr("focalinfer.backend.auto.choose", fail)


# --- where result.json goes: decided before inference --------------------------------------


@pytest.mark.parametrize("given", ["myres/", "existing"])
def test_a_folder_output_gets_result_json_inside_it(run_set, tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    Path("existing").mkdir()
    done = evaluate(run_set, given)
    assert done.exit_code == 0, done.output
    folder = Path(given.rstrip("/"))
    assert (folder / "result.json").is_file() and len(list((folder / "result").glob("*_0.txt"))) == IMAGES
    assert json.loads((folder / "result.json").read_text())["summary"]["count"] == IMAGES


def test_an_output_named_like_its_outputs_folder_is_refused_first(run_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_inference(monkeypatch)
    done = evaluate(run_set, "myres")
    assert done.exit_code == 2
    assert error_line(done) == ("focalinfer: error: --output myres: result.json and the inference outputs would "
                                "both be myres; give a file name ending in .json (myres.json) or a folder (myres/)")
    assert sorted(os.listdir(tmp_path)) == ["set"]


def test_compare_json_into_a_folder_writes_compare_json_inside(run_set, tmp_path):
    assert evaluate(run_set, tmp_path / "a.json").exit_code == 0
    (tmp_path / "reports").mkdir()
    done = run("compare", tmp_path / "a", tmp_path / "a", "--json", tmp_path / "reports")
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "reports" / "compare.json").read_text())["summary"]["count"] == IMAGES


# --- labels that match no input -----------------------------------------------------------


@pytest.mark.parametrize("allow", [False, True])
def test_labels_matching_no_input_are_refused_whatever_the_flags(run_set, tmp_path, monkeypatch, allow):
    no_inference(monkeypatch)
    labels = tmp_path / "other.txt"
    labels.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {i}\n" for i in range(1, 4)))
    done = run("eval", "--onnx", run_set["onnx"], "--labels", labels, "--input", run_set["data"], "--output",
               tmp_path / "out" / "r.json", "--batch-size", 2, "--backend", "onnxruntime", "--quiet",
               *(["--allow-missing"] if allow else []))
    assert done.exit_code == 1
    assert error_line(done) == (
        f"focalinfer: error: {labels}: none of its 3 labelled images has an input file in {run_set['data']} (labels "
        "name e.g. 'ILSVRC2012_val_00000001.JPEG', the inputs e.g. 'img_0'; they are joined by the name up to its "
        "first '.'); is this the label file of these inputs?")
    assert not (tmp_path / "out").exists()  # nothing left behind, not even the folder


# --- Ctrl-C: leave nothing, or say what is kept --------------------------------------------


def interrupt_after(monkeypatch, batches: int) -> None:
    real = layout.write_batch_outputs
    done = []

    def write(*args, **kwargs):
        if len(done) == batches:
            raise KeyboardInterrupt
        done.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(layout, "write_batch_outputs", write)


def test_ctrl_c_before_any_output_leaves_nothing_and_says_so(run_set, tmp_path, monkeypatch):
    interrupt_after(monkeypatch, 0)
    done = evaluate(run_set, tmp_path / "new" / "deeper" / "r.json")
    assert done.exit_code == 130
    assert error_line(done) == ("focalinfer: interrupted; nothing was written (no inference output was finished, "
                                "no result.json)")
    assert sorted(os.listdir(tmp_path)) == ["set"]  # no folder, record, lock or summary
    infer = run("infer", "--model-file", run_set["onnx"], "--input", run_set["data"], "--output", tmp_path / "i",
                "--output-dirname", "r", "--batch-size", 2, "--backend", "onnxruntime", "--quiet")
    assert infer.exit_code == 130
    assert error_line(infer) == "focalinfer: interrupted; nothing was written (no output was finished)"
    assert sorted(os.listdir(tmp_path)) == ["set"]


def test_ctrl_c_midway_keeps_the_outputs_records_it_and_the_rerun_resumes(run_set, tmp_path, monkeypatch):
    interrupt_after(monkeypatch, 2)
    out = tmp_path / "r.json"
    done = evaluate(run_set, out)
    assert done.exit_code == 130
    assert error_line(done) == (f"focalinfer: interrupted; the 4 finished inference outputs in {tmp_path / 'r'} are "
                                "kept, no result.json was written; rerun the same command to resume")
    record = json.loads((tmp_path / "r.focalinfer.json").read_text())
    assert (record["status"], record["error"]) == ("interrupted", "KeyboardInterrupt")
    assert sorted(os.listdir(tmp_path)) == ["r", "r.focalinfer.json", "set"]
    monkeypatch.undo()
    again = evaluate(run_set, out)
    assert again.exit_code == 0, again.output
    summary = json.loads(out.read_text())["summary"]
    assert (summary["outputs_reused"], summary["outputs_written"], summary["count"]) == (4, IMAGES - 4, IMAGES)
    assert json.loads((tmp_path / "r.focalinfer.json").read_text())["status"] == "complete"


# --- a full disk ---------------------------------------------------------------------------


def test_a_full_disk_names_the_folder_and_the_space_needed(run_set, tmp_path, monkeypatch):
    """A disk that fills after 5 output files (emulated: writes fail as write(2) fails, with no file name)."""
    from focalinfer import util

    real = util.write_bytes_atomic
    written = []

    def small_disk(path, data):
        if len(written) == 5:
            with util.atomic_path(path) as tmp:
                tmp.write_bytes(data[:1])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(path)
        real(path, data)

    monkeypatch.setattr(layout, "write_bytes_atomic", small_disk)
    done = evaluate(run_set, tmp_path / "r.json")
    assert done.exit_code == 1
    size = len((tmp_path / "r" / "img_0_0.txt").read_bytes())
    line = error_line(done)
    assert line.startswith(f"focalinfer: error: {tmp_path / 'r'}: no space left on device after 4 output files of "
                           f"this run; the 8 still to write need about ")
    assert f"(8 files × ~{size:,} bytes); free that much there or choose another --output, then rerun" in line
    assert not [p for p in tmp_path.rglob("*.tmp")]  # the failed write left no temp file
    record = json.loads((tmp_path / "r.focalinfer.json").read_text())
    assert record["status"] == "failed" and "no space left on device" in record["error"]
    monkeypatch.undo()
    assert evaluate(run_set, tmp_path / "r.json").exit_code == 0


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -m` and mount (root); "
                    "test_a_full_disk_names_the_folder_and_the_space_needed covers the same path emulated")
def test_a_real_3mb_tmpfs(tmp_path):
    """The issue's case on a real 3 MB tmpfs, in a mount namespace of its own (gone with the process)."""
    import numpy as np
    import torch

    from tinynet import TinyNet

    torch.manual_seed(0)
    onnx = tmp_path / "wide.onnx"
    torch.onnx.export(TinyNet(num_classes=1000).eval(), (torch.zeros(1, 3, 32, 32),), str(onnx), dynamo=False,
                      opset_version=11, input_names=["image"], output_names=["class"],
                      dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}})
    data = tmp_path / "data"
    data.mkdir()
    for i in range(400):  # 400 TXT outputs of 1000 values: ~4 MB
        np.full((1, 3, 32, 32), i / 400, np.float32).tofile(data / f"img_{i}.bin")
    (tmp_path / "labels.txt").write_text("".join(f"img_{i}.JPEG {i % 1000}\n" for i in range(400)))
    disk = tmp_path / "disk"
    disk.mkdir()
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=3m tmpfs {disk} || exit 99
        {sys.executable} -m focalinfer.cli eval --onnx {onnx} --labels {tmp_path / 'labels.txt'} --input {data} \\
            --output {disk}/r.json --batch-size 16 --backend onnxruntime --threads 1 --quiet
        echo "exit $?"
        find {disk} -name '*.tmp' -o -name '*.lock' | sed 's/^/left: /'
        cat {disk}/r.focalinfer.json
    """)
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "c")})
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("focalinfer: ")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"focalinfer: error: {disk}/r: no space left on device after ")
    assert "MB (" in lines[0] and "files × ~" in lines[0]
    assert "exit 1" in done.stdout and "left: " not in done.stdout
    record = json.loads(done.stdout[done.stdout.index("{"):])
    # The record is rewritten as failed when the disk still has room for it; a disk too full even for
    # that leaves "running" with nobody holding the lock, which readers report as a run that died.
    assert record["status"] == "running" or (record["status"] == "failed" and "no space left" in record["error"])


# --- what ran, on record --------------------------------------------------------------------


def test_result_json_says_how_many_images_went_into_one_call(run_set, tmp_path, monkeypatch):
    """Issue 22, point 6: auto ran batch 16 as calls of fewer images, and result.json said batch 16 only."""
    from focalinfer.backend import auto

    monkeypatch.setattr(auto, "choose", lambda *a, **k: auto.Choice("onnxruntime", 4))
    done = run("eval", "--onnx", run_set["onnx"], "--labels", run_set["labels"], "--input", run_set["data"],
               "--output", tmp_path / "auto.json", "--batch-size", 16, "--quiet")
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "auto.json").read_text())["summary"]
    assert (summary["batch_size"], summary["images_per_call"]) == (16, 4)
    assert "onnxruntime, bs 16 run 4 image(s) per call" in done.output
    plan = json.loads((tmp_path / "auto.focalinfer.json").read_text())["plan"]
    assert plan["runner"]["micro_batch"] == 4 and plan["batch_size"] == 16
    again = run("eval", "--results", tmp_path / "auto", "--labels", run_set["labels"], "--output",
                tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["summary"]["images_per_call"] == 4
    explicit = evaluate(run_set, tmp_path / "whole.json", batch=16)  # --backend onnxruntime: whole batches
    assert explicit.exit_code == 0
    summary = json.loads((tmp_path / "whole.json").read_text())["summary"]
    assert (summary["batch_size"], summary["images_per_call"]) == (16, 16) and "bs 16 run" not in explicit.output
