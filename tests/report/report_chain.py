"""The runs a report is made of, made as a user makes them with the tiny model (a second each):

sample images → preprocess → export → precision → eval on onnxruntime at batch 1 (the fp32
reference, --csv) → a simulated .om run: an .om file with its ATC build record, an infer record
and ais_bench's summary, whose outputs are the reference's with planted top-1 flips (3 images
lose their right answer, 1 gains it) → eval --results with --reference and the gate.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from focalinfer import registry
from focalinfer.cli import cli
from focalinfer.layout import write_sample
from focalinfer.records import AtcRecord, InferRecord, Manifest
from focalinfer.util import sha256_file
from tinynet import TINY, TinyNet

IMAGES = 24
LOST, GAINED = (0, 2, 4), (1,)       # indices (sorted names) of the planted flips


def cli_ok(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _labels_from_the_model(onnx: Path, databin: Path, path: Path) -> dict[str, int]:
    """Even images labelled with the model's top-1, odd ones with its 2nd choice: Acc@1 50 %."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    labels = {}
    for i, bin_path in enumerate(sorted(databin.glob("*.bin"))):
        x = np.fromfile(bin_path, "<f4").reshape(1, 3, 32, 32)
        ranked = np.argsort(-session.run(None, {"image": x})[0][0], kind="stable")
        labels[bin_path.stem] = int(ranked[0] if i % 2 == 0 else ranked[1])
    path.write_text("".join(f"{stem}.jpg {label}\n" for stem, label in labels.items()))
    return labels


def _simulated_om_run(work: Path, reference_dir: Path, labels: dict[str, int]) -> Path:
    """The reference's outputs with planted flips, recorded as an .om run of batch 4 on ais_bench."""
    om_dir = work / "om"
    om_dir.mkdir()
    om = om_dir / "m_bs4.om"
    om.write_bytes(b"a simulated .om")
    AtcRecord(onnx=str(work / "m.onnx"), om=om.name, onnx_sha256=sha256_file(work / "m.onnx"), batch_size=4,
              soc="Ascend310P3", argv=["atc", "--precision_mode=force_fp16"], built="2026-12-01T08:00:00"
              ).write(om_dir / "m_bs4.atc.json")
    out = work / "result_om"
    out.mkdir()
    stems = sorted(labels)
    for i, stem in enumerate(stems):
        row = np.loadtxt(reference_dir / f"{stem}_0.txt", dtype=np.float32, ndmin=1)
        if i in LOST:    # the label (top-1) drops below another class
            row[labels[stem]] = row.min() - 1
        if i in GAINED:  # odd image: its label (2nd choice) becomes the top-1
            row[labels[stem]] = row.max() + 1
        write_sample(out, stem, row, "TXT")
    shutil.copy(work / "result_bs1_summary.json", work / "result_om_summary.json")
    manifest = Manifest.read(work / "databin")
    InferRecord(model_file=str(om), model_sha256=sha256_file(om), backend="ais_bench", model=TINY, batch_size=4,
                outfmt="TXT", input_dir=str(work / "databin"), manifest_sha256=Manifest.sha256(work / "databin"),
                preset=manifest.preset, dtype=manifest.dtype, files_written=IMAGES, tool_version="0.1.0").write(out)
    return out


@pytest.fixture(scope="module")
def report_runs(tmp_path_factory):
    """(work folder, reference result.json, .om result.json, labels) with the tiny model registered."""
    work = tmp_path_factory.mktemp("report_chain")
    registry.model_names()
    spec = registry.ModelSpec(name=TINY, family="test", builder=TinyNet, input_size=32,
                              transforms={"official": registry.official_transform(32)}, checkpoint_layout="model",
                              source="tests/tinynet.py", num_classes=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._REGISTRY, TINY, dataclasses.replace(spec))
        torch.manual_seed(0)
        cli_ok("sample-data", "--out", work / "images", "--count", IMAGES)
        cli_ok("synthetic-checkpoint", "--model", TINY, "--out", work / "m.pth")
        cli_ok("preprocess", "--model", TINY, "--images", work / "images", "--out", work / "databin", "--quiet")
        cli_ok("export", "--model", TINY, "--checkpoint", work / "m.pth", "--out", work / "m.onnx", "--dynamic-batch",
               "--parity-samples", 1)
        cli_ok("precision", "--onnx", work / "m.onnx", "--input", work / "databin", "--out", work / "precision",
               "--samples", 8, "--quiet")
        labels = _labels_from_the_model(work / "m.onnx", work / "databin", work / "val_label.txt")
        cli_ok("eval", "--onnx", work / "m.onnx", "--labels", work / "val_label.txt", "--input", work / "databin",
               "--output", work / "result_bs1.json", "--batch-size", 1, "--backend", "onnxruntime", "--quiet",
               "--csv", work / "results.csv")
        om_dir = _simulated_om_run(work, work / "result_bs1", labels)
        result = CliRunner().invoke(cli, [str(a) for a in (
            "eval", "--results", om_dir, "--labels", work / "val_label.txt", "--output", work / "result_om.json",
            "--reference", work / "result_bs1.json", "--max-drop", 5, "--csv", work / "results.csv")])
        yield work, work / "result_bs1.json", work / "result_om.json", labels, result
