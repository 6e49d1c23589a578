"""The whole chain through files, as a user runs it, against PyTorch on the same images.

sample images → preprocess → export (dynamic batch) → eval on onnxruntime at two batch sizes →
result.json, for two models. Accuracy read from result.json must equal accuracy computed directly
in PyTorch from the same .bin files. With random weights a random label file would score ~0 %,
so half the labels are PyTorch's own top-1 and the other half its 4th choice: Top-1 is then 50 %
and Top-5 100 %, and any mix-up of files, names or batches would show.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.models.checkpoint import load_model
from focalinfer.registry import get_model_spec

IMAGES = 13  # not a multiple of 4: the last batch is padded


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def torch_logits(model_name: str, checkpoint: Path, databin: Path) -> dict[str, torch.Tensor]:
    model = load_model(model_name, checkpoint)
    crop = get_model_spec(model_name).default_transform.crop
    out = {}
    with torch.no_grad():
        for path in sorted(databin.glob("*.bin")):
            x = torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(1, 3, crop, crop))
            out[path.stem] = model(x)[0]
    return out


def write_labels(path: Path, logits: dict[str, torch.Tensor]) -> dict[str, int]:
    labels = {}
    for i, (stem, row) in enumerate(sorted(logits.items())):
        ranked = torch.topk(row, 5).indices.tolist()
        labels[stem] = ranked[0] if i % 2 == 0 else ranked[3]
    path.write_text("".join(f"{stem}.JPEG {label}\n" for stem, label in labels.items()))
    return labels


def direct_accuracy(logits, labels) -> tuple[float, float]:
    top5 = {stem: torch.topk(row, 5).indices.tolist() for stem, row in logits.items()}
    hit1 = sum(top5[s][0] == labels[s] for s in labels)
    hit5 = sum(labels[s] in top5[s] for s in labels)
    return 100.0 * hit1 / len(labels), 100.0 * hit5 / len(labels)


@pytest.mark.fullsize
@pytest.mark.parametrize("model_name", ["van-b2", "twins-altgvt-s"])
def test_chain_through_files_equals_pytorch(tmp_path, model_name):
    run("sample-data", "--out", tmp_path / "images", "--count", IMAGES)
    run("synthetic-checkpoint", "--model", model_name, "--out", tmp_path / "w.pth", "--seed", 3)
    run("preprocess", "--model", model_name, "--images", tmp_path / "images", "--out", tmp_path / "databin", "--quiet")
    exported = run("export", "--model", model_name, "--checkpoint", tmp_path / "w.pth", "--out", tmp_path / "m.onnx",
                   "--dynamic-batch", "--parity-samples", 1, "--parity-data", tmp_path / "databin")
    assert f"PyTorch vs onnxruntime on {IMAGES} preprocessed images: top-1 agreement 100.0 %" in exported
    logits = torch_logits(model_name, tmp_path / "w.pth", tmp_path / "databin")
    labels = write_labels(tmp_path / "val_label.txt", logits)
    want = direct_accuracy(logits, labels)
    assert want == (pytest.approx(100.0 * 7 / 13), 100.0)

    per_image = {}
    for batch in (1, 4):
        result_json = tmp_path / f"result_bs{batch}.json"
        run("eval", "--onnx", tmp_path / "m.onnx", "--labels", tmp_path / "val_label.txt",
            "--input", tmp_path / "databin", "--output", result_json, "--batch-size", batch)
        result = json.loads(result_json.read_text())
        summary = result["summary"]
        assert (summary["Acc@1"], summary["Acc@5"]) == (pytest.approx(want[0]), pytest.approx(want[1]))
        assert (summary["count"], summary["missing"], summary["invalid"]) == (IMAGES, 0, 0)
        assert summary["batch_size"] == batch and summary["backend"] == "onnxruntime"
        per_image[batch] = {name: row["top5"] for name, row in result["images"].items()}
    assert per_image[1] == per_image[4]
