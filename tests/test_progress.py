"""Progress in a log (stderr not a terminal, as in CI): whole lines, one per 10 %, no carriage
returns, and the performance summary on lines of its own (issue 10, "also seen")."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.progress import LogProgress, progress_bar
from focalinfer.samples import make_sample_set


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_one_line_per_ten_percent():
    log = io.StringIO()
    for _ in progress_bar(range(40), desc="preprocess", unit="img", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" (")[0] for line in lines] == [f"preprocess: {p}%" for p in range(10, 101, 10)]
    assert lines[-1].startswith("preprocess: 100% (40/40 img, ")


def test_big_steps_small_totals_growing_totals_and_interrupts():
    log = io.StringIO()
    with progress_bar(total=3, desc="infer", unit="batch", file=log) as bar:
        bar.update(1)
        bar.update(2)
    assert [line.split(" (")[0] for line in log.getvalue().splitlines()] == ["infer: 30%", "infer: 100%"]
    log = io.StringIO()
    bar = LogProgress(total=0, desc="infer", unit="batch", file=log)  # devices add their totals later
    bar.total += 10
    bar.update(4)
    bar.total += 10
    bar.update(3)
    bar.close()  # interrupted at 7/20: the last line says where it stopped
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "infer: 40% (4/10 batch", "infer: 35% (7/20 batch"]


def test_a_terminal_gets_tqdm_and_disabled_prints_nothing():
    tty = FakeTerminal()
    for _ in progress_bar(range(5), desc="x", unit="img", file=tty):
        pass
    assert "\r" in tty.getvalue() and "5/5" in tty.getvalue()
    quiet = io.StringIO()
    assert list(progress_bar(range(5), desc="x", unit="img", file=quiet, enabled=False)) == list(range(5))
    assert quiet.getvalue() == ""


@pytest.fixture(scope="module")
def databin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("progress")
    images = make_sample_set(root / "images", count=20)
    result = CliRunner().invoke(cli, ["preprocess", "--images", str(images), "--out", str(root / "databin"),
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "\r" not in result.output
    progress = [line for line in lines if line.startswith("preprocess: ") and "%" in line]
    assert len(progress) == 10 and progress[-1].startswith("preprocess: 100% (20/20 img")
    return root / "databin"


def test_preprocess_progress_in_a_log(databin):
    assert len(list(databin.glob("*.bin"))) == 20  # the fixture checked the lines


def test_infer_progress_and_summary_in_a_log(databin, tmp_path):
    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 8, stride=8)
            self.fc = torch.nn.Linear(4, 1000)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    onnx_path = tmp_path / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Small().eval(), (torch.zeros(1, 3, 224, 224),), str(onnx_path), input_names=["image"],
                          output_names=["class"], opset_version=11, dynamo=False)
    result = CliRunner().invoke(cli, ["infer", "--model-file", str(onnx_path), "--input", str(databin),
                                      "--output", str(tmp_path), "--output-dirname", "res"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    lines = result.output.splitlines()
    progress = [line for line in lines if line.startswith("infer: ") and "%" in line]
    assert [line.split(" (")[0] for line in progress] == [f"infer: {p}%" for p in range(10, 101, 10)]
    summary = lines.index("[INFO] -----------------Performance Summary------------------")
    assert lines[summary + 1].startswith("[INFO] NPU_compute_time (ms): ")
    assert lines[summary + 2].startswith("[INFO] throughput ")
    assert np.isfinite(float(lines[summary + 2].rsplit(":", 1)[1]))
