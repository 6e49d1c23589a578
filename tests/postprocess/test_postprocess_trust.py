"""Issue 10, eval side: no wrong Top-1 exits 0. Over real files: `focalinfer sample-data` images,
preprocess, tiny models exported by `focalinfer export` (1000 and 10 classes), onnxruntime, and
the ATC / ais_bench stand-ins for the .om path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from focalinfer import __version__, registry
from focalinfer.cli import cli
from focalinfer.errors import FocalinferError
from focalinfer.layout import write_sample
from focalinfer.models.checkpoint import load_model
from focalinfer.records import AtcRecord, ExportRecord

SIZE = 32
IMAGES = 9
STANDINS = Path(__file__).parents[1] / "standins"


class Toy(nn.Module):
    """Patch conv → mean → linear: a classifier small enough to export in a second."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


TOYS = {"toy-cls": 1000, "toy-ten": 10}


def run(*args, code: int | None = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if code is not None:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def toys():
    """The two toy models in the registry for this module (preprocess and export look them up)."""
    registry.model_names()
    with pytest.MonkeyPatch.context() as mp:
        for name, classes in TOYS.items():
            mp.setitem(registry._REGISTRY, name, registry.ModelSpec(
                name=name, family="toy", builder=lambda c=classes: Toy(c), input_size=SIZE,
                transforms={"official": registry.official_transform(SIZE)}, checkpoint_layout="raw",
                source="tests/postprocess/test_postprocess_trust.py", num_classes=classes))
        yield TOYS


@pytest.fixture(scope="module")
def chain(toys, tmp_path_factory):
    """sample-data → preprocess → synthetic checkpoint → export, for both toys, and labels whose
    answers PyTorch computed: the top-1 for even images, the 4th choice for odd ones."""
    root = tmp_path_factory.mktemp("chain")
    run("sample-data", "--out", root / "images", "--count", IMAGES)
    run("preprocess", "--model", "toy-cls", "--images", root / "images", "--out", root / "databin", "--quiet",
        "--workers", 1)
    onnx = {}
    for name in TOYS:
        run("synthetic-checkpoint", "--model", name, "--out", root / f"{name}.pth", "--seed", 2)
        run("export", "--model", name, "--checkpoint", root / f"{name}.pth", "--out", root / f"{name}.onnx",
            "--dynamic-batch", "--parity-samples", 1)
        onnx[name] = root / f"{name}.onnx"
    net = load_model("toy-cls", root / "toy-cls.pth")
    logits = {}
    with torch.no_grad():
        for path in sorted((root / "databin").glob("*.bin")):
            x = torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(1, 3, SIZE, SIZE))
            logits[path.stem] = net(x)[0]
    labels = {}
    for i, (stem, row) in enumerate(sorted(logits.items())):
        ranked = torch.topk(row, 5).indices.tolist()
        labels[stem] = ranked[0] if i % 2 == 0 else ranked[3]
    label_file = root / "val_label.txt"
    label_file.write_text("".join(f"{stem}.JPEG {c}\n" for stem, c in labels.items()))
    return {"root": root, "onnx": onnx, "databin": root / "databin", "labels": label_file,
            "label_map": labels, "logits": logits}


def expected_acc1(count: int = IMAGES) -> float:
    return 100.0 * sum(1 for i in range(count) if i % 2 == 0) / count


def summary(path: Path) -> dict:
    return json.loads(Path(path).read_text())["summary"]


# --- rule 1: a result says what it belongs to ---------------------------------------------


def test_result_json_records_the_run_and_results_reads_it_back(chain, tmp_path):
    out = tmp_path / "result_bs4.json"
    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
        "--output", out, "--batch-size", 4, "--quiet")
    s = summary(out)
    assert s["Acc@1"] == pytest.approx(expected_acc1()) and s["Acc@5"] == 100.0 and s["count"] == IMAGES
    assert s["model"] == "toy-cls"  # the registry name from the export report, not the file stem
    assert s["model_file"] == str(chain["onnx"]["toy-cls"])
    assert s["model_sha256"] == sha256(chain["onnx"]["toy-cls"])
    assert (s["backend"], s["batch_size"]) == ("onnxruntime", 4)
    assert s["input_dir"] == str(chain["databin"]) and s["preset"] == "official"
    assert s["manifest_sha256"] == sha256(chain["databin"] / "manifest.json")
    assert s["labels_sha256"] == sha256(chain["labels"])
    assert (s["outputs_written"], s["outputs_reused"]) == (IMAGES, 0)
    assert s["num_classes"] == 1000 and "toy-cls.onnx.report.json" in s["num_classes_source"]
    assert s["tool_version"] == __version__
    assert abs(time.mktime(time.strptime(s["created"][:19], "%Y-%m-%dT%H:%M:%S")) - time.time()) < 600

    # The same folder scored with --results: model, backend and batch come from its records.
    again = tmp_path / "again.json"
    run("eval", "--results", tmp_path / "result_bs4", "--labels", chain["labels"], "--output", again)
    r = summary(again)
    for key in ("Acc@1", "Acc@5", "model", "model_file", "model_sha256", "backend", "batch_size", "num_classes",
                "num_classes_source", "labels_sha256"):
        assert r[key] == s[key], key

    # A rerun of the same model, inputs and batch reuses every output.
    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
        "--output", out, "--batch-size", 4, "--quiet")
    assert (summary(out)["outputs_written"], summary(out)["outputs_reused"]) == (0, IMAGES)


def test_results_batch_size_must_match_the_recorded_one(chain, tmp_path):
    out = tmp_path / "r.json"
    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
        "--output", out, "--batch-size", 4, "--quiet")
    res = run("eval", "--results", tmp_path / "r", "--labels", chain["labels"], "--output", tmp_path / "x.json",
              "--batch-size", 16, code=2)
    assert "--batch-size 16" in res.output and "made at batch 4" in res.output
    assert not (tmp_path / "x.json").exists()
    run("eval", "--results", tmp_path / "r", "--labels", chain["labels"], "--output", tmp_path / "x.json",
        "--batch-size", 4)
    assert summary(tmp_path / "x.json")["batch_size"] == 4
    # Nothing recorded (ais_bench's folder copied without its summary or record): the flag fills it in.
    bare = tmp_path / "bare"
    shutil.copytree(tmp_path / "r", bare)
    run("eval", "--results", bare, "--labels", chain["labels"], "--output", tmp_path / "b.json", "--batch-size", 16,
        "--num-classes", 1000)
    assert summary(tmp_path / "b.json")["batch_size"] == 16


def test_results_reads_every_field_a_newer_infer_record_holds(chain, tmp_path):
    """The infer record may carry model, batch, inputs and counts (written by infer since issue 10):
    eval reads what is there; a model file that changed since the run is not trusted."""
    from focalinfer.records import InferRecord

    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
        "--output", tmp_path / "made.json", "--batch-size", 3, "--quiet")
    folder = tmp_path / "copied"
    shutil.copytree(tmp_path / "made", folder)  # no summary beside it: only the record speaks
    changed = tmp_path / "changed.onnx"
    shutil.copy(chain["onnx"]["toy-ten"], changed)
    InferRecord(model_file=str(changed), model_sha256="0" * 64, backend="ais_bench", model="toy-cls",
                batch_size=3, input_dir="/npu/databin", manifest_sha256="ab" * 32, preset="modelzoo",
                files_written=5, files_kept=4).write(folder)
    res = run("eval", "--results", folder, "--labels", chain["labels"], "--output", tmp_path / "r.json")
    assert f"{changed} changed since it wrote {folder}" in res.output
    s = summary(tmp_path / "r.json")
    assert (s["model"], s["backend"], s["batch_size"], s["preset"]) == ("toy-cls", "ais_bench", 3, "modelzoo")
    assert (s["input_dir"], s["manifest_sha256"]) == ("/npu/databin", "ab" * 32)
    assert (s["outputs_written"], s["outputs_reused"]) == (5, 4)
    assert (s["num_classes"], s["num_classes_source"]) == (1000, "the registry entry of toy-cls")
    assert s["Acc@1"] == pytest.approx(expected_acc1())
    res = run("eval", "--results", folder, "--labels", chain["labels"], "--output", tmp_path / "r.json",
              "--batch-size", 4, code=2)
    assert "made at batch 3" in res.output and ".focalinfer.json" in res.output


def test_flags_that_contradict_the_records_are_errors(chain, tmp_path):
    out = tmp_path / "r.json"
    common = ("--labels", chain["labels"], "--input", chain["databin"], "--quiet")
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], *common, "--output", out, "--batch-size", 1,
              "--model", "toy-ten", code=2)
    assert "was made by toy-cls" in res.output and not (tmp_path / "r").exists()
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], *common, "--output", out, "--batch-size", 1,
              "--num-classes", 10, code=2)
    assert "the model has 1000 classes" in res.output and not (tmp_path / "r").exists()


# --- rule 2: outputs must be this model's --------------------------------------------------


def test_ten_class_model_against_imagenet_labels_fails_before_inference(chain, tmp_path):
    out = tmp_path / "r.json"
    res = run("eval", "--onnx", chain["onnx"]["toy-ten"], "--labels", chain["labels"], "--input", chain["databin"],
              "--output", out, "--batch-size", 2, code=1)
    assert f"none of its {IMAGES} label lines can be scored" in res.output  # labels up to 999
    assert "the model's 10 classes: " in res.output and "toy-ten.onnx.report.json" in res.output
    assert not (tmp_path / "r").exists() and not out.exists()  # no inference ran


def test_outputs_of_another_class_count_are_an_error_naming_the_file(chain, tmp_path):
    """The issue's case: a 10-class model's outputs scored 100 % with labels 0–9, exit 0."""
    labels = tmp_path / "small_labels.txt"
    labels.write_text("".join(f"{stem}.JPEG {i % 10}\n" for i, stem in enumerate(sorted(chain["label_map"]))))
    out = tmp_path / "ten.json"
    run("eval", "--onnx", chain["onnx"]["toy-ten"], "--labels", labels, "--input", chain["databin"],
        "--output", out, "--batch-size", 2, "--quiet")
    assert summary(out)["num_classes"] == 10  # right for this model: its own class count
    copied = tmp_path / "copied"
    shutil.copytree(tmp_path / "ten", copied)  # without the record beside it
    first = sorted(copied.iterdir())[0]
    for flags in (("--model", "toy-cls"), ("--num-classes", 1000)):
        res = run("eval", "--results", copied, "--labels", labels, "--output", tmp_path / "x.json", *flags, code=1)
        assert f"{first}: 10 values, expected 1000" in res.output and "not made by this model" in res.output
        assert not (tmp_path / "x.json").exists()
    # Nothing says the model: the count is sniffed, and said loudly.
    res = run("eval", "--results", copied, "--labels", labels, "--output", tmp_path / "x.json")
    assert "CLASS COUNT NOT CHECKED" in res.output
    assert summary(tmp_path / "x.json")["num_classes_source"] == "sniffed from the outputs (not checked)"
    # The record beside the folder says 10 classes: --num-classes 1000 contradicts it.
    res = run("eval", "--results", tmp_path / "ten", "--labels", labels, "--output", tmp_path / "y.json",
              "--num-classes", 1000, code=2)
    assert "the model has 10 classes" in res.output


def map_model(path: Path) -> Path:
    """A segmentation-style ONNX: (N, 3, 32, 32) → (N, 21, 4, 4) map, no export report."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).normal(size=(21, 3, 8, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "W"], ["map"], kernel_shape=[8, 8], strides=[8, 8])], "map",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["N", 21, 4, 4])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def test_a_map_output_is_not_scored(chain, tmp_path):
    model = map_model(tmp_path / "seg.onnx")
    res = run("eval", "--onnx", model, "--labels", chain["labels"], "--input", chain["databin"],
              "--output", tmp_path / "r.json", "--batch-size", 1, code=1)
    assert "output 0 'map' has shape [None, 21, 4, 4]" in res.output and not (tmp_path / "r").exists()

    # The same map as TXT outputs (infer wrote them), scored with --results: 84 lines of 4 values.
    from focalinfer.infer import run_inference

    made = run_inference(model, chain["databin"], output=tmp_path, output_dirname="seg", batch_size=1,
                         progress=False)
    copied = tmp_path / "copied"
    shutil.copytree(made.output_dir, copied)
    first = sorted(copied.iterdir())[0]
    res = run("eval", "--results", copied, "--labels", chain["labels"], "--output", tmp_path / "x.json", code=1)
    assert f"{first}: 84 lines of 4 values (a (84, 4) tensor)" in res.output
    assert "the first line of each was used" not in res.output  # not taken for appended reruns
    res = run("eval", "--results", copied, "--labels", chain["labels"], "--output", tmp_path / "x.json",
              "--num-classes", 1000, code=1)
    assert "84 lines of 4 values (a (84, 4) tensor), expected one line of 1000" in res.output
    # With its infer record beside it, the folder names its model, whose graph says it is a map.
    res = run("eval", "--results", made.output_dir, "--labels", chain["labels"], "--output", tmp_path / "y.json",
              code=1)
    assert "output 0 'map' has shape" in res.output


def test_the_issues_4704_line_txt_is_a_shape_error(chain, tmp_path):
    """(1, 21, 224, 224) written as ais_bench TXT: 4,704 lines of 224 values, not 'appended reruns'."""
    stems = sorted(chain["label_map"])[:2]
    folder = tmp_path / "seg"
    folder.mkdir()
    for stem in stems:
        write_sample(folder, stem, np.zeros((1, 21, 224, 224), np.float32), "TXT")
    labels = tmp_path / "l.txt"
    labels.write_text("".join(f"{s}.JPEG 1\n" for s in stems))
    for flags in ((), ("--num-classes", 1000)):
        res = run("eval", "--results", folder, "--labels", labels, "--output", tmp_path / "x.json", *flags, code=1)
        assert "4704 lines of 224 values (a (4704, 224) tensor)" in res.output
        assert "the first line of each was used" not in res.output  # not taken for appended reruns


def test_fp16_bin_outputs_need_output_dtype(chain, tmp_path):
    out = tmp_path / "bin.json"
    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
        "--output", out, "--batch-size", 4, "--outfmt", "BIN", "--quiet")
    fp32 = tmp_path / "bin"
    # What an fp16-output .om writes: the same logits as 2,000-byte float16 files.
    fp16 = tmp_path / "bin16"
    fp16.mkdir()
    for path in fp32.iterdir():
        np.fromfile(path, "<f4").astype("<f2").tofile(fp16 / path.name)
    first = sorted(fp16.iterdir())[0]
    res = run("eval", "--results", fp16, "--labels", chain["labels"], "--output", tmp_path / "x.json",
              "--model", "toy-cls", code=1)
    assert (f"{first}: 2000 bytes = 1000 float16 values, not 1000 float32 (4000 bytes); pass --output-dtype float16"
            in res.output)
    run("eval", "--results", fp16, "--labels", chain["labels"], "--output", tmp_path / "x.json",
        "--model", "toy-cls", "--output-dtype", "float16")
    s = summary(tmp_path / "x.json")
    assert s["num_classes"] == 1000 and s["output_dtype"] == "float16"
    images = json.loads((tmp_path / "x.json").read_text())["images"]
    for stem, row in chain["logits"].items():  # top-5 of the fp16-rounded logits, ranked by torch
        rounded = row.to(torch.float16).to(torch.float32)
        assert images[f"{stem}.JPEG"]["top5"] == torch.topk(rounded, 5).indices.tolist()
    # The other way round: float32 files read as float16.
    res = run("eval", "--results", fp32, "--labels", chain["labels"], "--output", tmp_path / "y.json",
              "--output-dtype", "float16", code=1)
    assert "4000 bytes = 1000 float32 values, not 1000 float16 (2000 bytes); pass --output-dtype float32" in res.output


def test_an_ambiguous_bin_folder_is_refused_not_scored(chain, tmp_path):
    """Issue 22, point 4: 2,000-byte BIN files, no record, no --model, no --num-classes: 500 float32 or
    1,000 float16 values. Read as float32 they scored Acc@1 0.000 with exit 0; now eval refuses."""
    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
        "--output", tmp_path / "bin.json", "--batch-size", 4, "--outfmt", "BIN", "--quiet")
    fp16, fp32 = tmp_path / "bin16", tmp_path / "bin32"  # copied without the record beside them
    fp16.mkdir()
    shutil.copytree(tmp_path / "bin", fp32)
    for path in (tmp_path / "bin").iterdir():
        np.fromfile(path, "<f4").astype("<f2").tofile(fp16 / path.name)
    first = fp16 / f"{sorted(chain['label_map'])[0]}_0.bin"
    highest = max(chain["label_map"].values())
    res = run("eval", "--results", fp16, "--labels", chain["labels"], "--output", tmp_path / "x.json", code=1)
    assert last_line(res) == (
        f"focalinfer: error: {first}: 2000 bytes are 500 float32 or 1000 float16 values, and nothing says which (no "
        f"infer record beside {fp16}, no --model or --num-classes; ImageNet has 1000 classes, the labels reach class "
        f"{highest}); pass --num-classes 500 (or --model NAME) if the model has 500 classes, or --output-dtype "
        "float16 if it writes float16 (1000 classes)")
    assert not (tmp_path / "x.json").exists()
    # Either flag settles it; the float16 reading is ImageNet's 1000 classes.
    run("eval", "--results", fp16, "--labels", chain["labels"], "--output", tmp_path / "x.json",
        "--output-dtype", "float16")
    assert summary(tmp_path / "x.json")["Acc@1"] == pytest.approx(expected_acc1())
    # 4,000-byte files: 1000 float32 (ImageNet's count) or 2000 float16 (nobody's): scored, loudly.
    res = run("eval", "--results", fp32, "--labels", chain["labels"], "--output", tmp_path / "y.json")
    assert "CLASS COUNT NOT CHECKED" in res.output and summary(tmp_path / "y.json")["num_classes"] == 1000


# --- rule 3: labels as users write them ----------------------------------------------------


@pytest.fixture(scope="module")
def spaced(chain, tmp_path_factory):
    """Class folders whose image names hold spaces, preprocessed with --labels-out."""
    root = tmp_path_factory.mktemp("spaced")
    sources = sorted((chain["root"] / "images").glob("*.JPEG"))
    for i, src in enumerate(sources[:6]):
        folder = root / "images" / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / f"my photo {i}.JPEG")
    run("preprocess", "--model", "toy-cls", "--images", root / "images", "--out", root / "databin", "--quiet",
        "--workers", 1, "--labels-out", root / "val_label.txt")
    return root


def test_names_with_spaces_from_preprocess_are_scored(spaced, chain, tmp_path):
    text = (spaced / "val_label.txt").read_text()
    assert "my photo 0.JPEG " in text
    out = tmp_path / "r.json"
    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", spaced / "val_label.txt", "--input",
        spaced / "databin", "--output", out, "--batch-size", 2, "--quiet")
    s = summary(out)
    assert (s["count"], s["missing"], s["extra"], s["malformed_labels"]) == (6, 0, 0, 0)
    images = json.loads(out.read_text())["images"]
    assert set(images) == {line.rsplit(" ", 1)[0] for line in text.splitlines()}

    # The same labels with a BOM, CRLF line ends and tabs give the same scores.
    messy = tmp_path / "messy.txt"
    lines = [line.rsplit(" ", 1) for line in text.splitlines()]
    messy.write_bytes(b"\xef\xbb\xbf" + "".join(f"{name}\t{c}\r\n" for name, c in lines).encode())
    run("eval", "--results", tmp_path / "r", "--labels", messy, "--output", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["images"] == images


@pytest.mark.parametrize("content,message", [
    (b"", "label file is empty"),
    (b"# only a comment\n\n", "label file is empty"),
    (b"65\n970\n230\n", "holds class indexes without image names"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "none of its 3 lines parses as '<image file name> <class index>'"),
])
def test_unusable_label_files_are_their_own_error_before_inference(chain, tmp_path, content, message):
    labels = tmp_path / "val_label.txt"
    labels.write_bytes(content)
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", labels, "--input", chain["databin"],
              "--output", tmp_path / "r.json", "--batch-size", 1, code=1)
    assert message in res.output and str(labels) in res.output
    assert not (tmp_path / "r").exists()


def test_bad_label_lines_stop_eval_unless_allowed(chain, tmp_path):
    lines = chain["labels"].read_text().splitlines()
    lines[2] = lines[2].split()[0] + " seven"
    lines[5] = lines[5].split()[0] + " 1000"
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines) + "\n")
    common = ("--onnx", chain["onnx"]["toy-cls"], "--input", chain["databin"], "--batch-size", 3, "--quiet")
    res = run("eval", *common, "--labels", bad, "--output", tmp_path / "r.json", code=1)
    assert "2 label lines cannot be scored (line 3: class index 'seven'" in res.output
    assert "line 6: class 1000 is outside the model's 0–999" in res.output and not (tmp_path / "r").exists()
    res = run("eval", *common, "--labels", bad, "--output", tmp_path / "r.json", "--allow-bad-labels")
    s = summary(tmp_path / "r.json")
    assert (s["count"], s["malformed_labels"], s["extra"]) == (IMAGES - 2, 2, 2)
    assert "2 bad label lines not scored" in res.output


def test_labels_without_inputs_fail_before_inference_unless_allowed(chain, tmp_path):
    labels = tmp_path / "more.txt"
    labels.write_text(chain["labels"].read_text() + "ILSVRC2012_val_00009999.JPEG 3\n")
    common = ("--onnx", chain["onnx"]["toy-cls"], "--input", chain["databin"], "--batch-size", 3, "--quiet")
    res = run("eval", *common, "--labels", labels, "--output", tmp_path / "r.json", code=1)
    assert f"1 of {IMAGES + 1} labelled images have no input file" in res.output
    assert "ILSVRC2012_val_00009999.JPEG" in res.output and not (tmp_path / "r").exists()
    run("eval", *common, "--labels", labels, "--output", tmp_path / "r.json", "--allow-missing")
    s = summary(tmp_path / "r.json")
    assert (s["count"], s["missing"]) == (IMAGES, 1)


def test_inputs_made_with_another_transform_need_the_flag(chain, tmp_path):
    other = tmp_path / "databin"
    shutil.copytree(chain["databin"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["transform"]["mean"] = [0.5, 0.5, 0.5]  # another model's normalisation
    (other / "manifest.json").write_text(json.dumps(manifest))
    common = ("--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", other,
              "--output", tmp_path / "r.json", "--batch-size", 3, "--quiet")
    res = run("eval", *common, code=1)
    assert "--allow-transform-mismatch" in res.output and not (tmp_path / "r").exists()
    run("eval", *common, "--allow-transform-mismatch")
    assert summary(tmp_path / "r.json")["manifest_sha256"] == sha256(other / "manifest.json")


# --- rule 5: fail before the work ----------------------------------------------------------


def test_missing_label_file_runs_no_inference(chain, tmp_path):
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", tmp_path / "val_label.txt",
              "--input", chain["databin"], "--output", tmp_path / "r.json", "--batch-size", 1, code=1)
    assert "label file not found" in res.output and not (tmp_path / "r").exists()


def test_unwritable_result_and_report_paths_fail_first(chain, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")  # root ignores chmod; this cannot be written into
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
              "--output", blocker / "r.json", "--batch-size", 1, code=1)
    assert len(res.output.strip().splitlines()) == 1 and f"{blocker / 'r.json'}: result.json cannot be written: {blocker}: folder is not writable" in res.output
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
              "--output", tmp_path, "--batch-size", 1, "--quiet")  # a folder: result.json inside it
    assert (tmp_path / "result.json").is_file() and len(list((tmp_path / "result").glob("*_0.txt"))) == IMAGES
    a = tmp_path / "a"
    run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
        "--output", tmp_path / "a.json", "--batch-size", 1, "--quiet")
    res = run("compare", a, a, "--json", blocker / "c.json", code=1)
    assert len(res.output.strip().splitlines()) == 1 and f"{blocker / 'c.json'}: compare report cannot be written" in res.output


# --- rule 6: numbers mean what they say ----------------------------------------------------


def test_images_per_s_counts_real_images_not_padding(chain, tmp_path):
    three = tmp_path / "three"
    three.mkdir()
    for path in sorted(chain["databin"].glob("*.bin"))[:3]:
        shutil.copy(path, three / path.name)
    out = tmp_path / "r.json"
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", three,
              "--output", out, "--batch-size", 64, "--quiet", "--allow-missing")
    s = summary(out)
    run_summary = json.loads((tmp_path / "r_summary.json").read_text())
    seconds = sum(run_summary["npu_compute_time_list"]) / 1000
    assert s["images_per_s"] == pytest.approx(3 / seconds)
    assert s["ais_bench_throughput"] == pytest.approx(64 / seconds)  # its formula: 64 slots per run
    assert f"{s['images_per_s']:.2f} images/s (ais_bench 1000×batch/mean: {s['ais_bench_throughput']:.2f} " \
           "samples/s)" in res.output


def test_compare_fails_on_images_missing_from_one_side(chain, tmp_path):
    for batch in (1, 3):
        run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"],
            "--output", tmp_path / f"bs{batch}.json", "--batch-size", batch, "--quiet")
    run("compare", tmp_path / "bs1", tmp_path / "bs3", "--min-cosine", 0.99999)
    gone = sorted((tmp_path / "bs3").iterdir())[4]
    gone.unlink()
    stem = gone.name[:-len("_0.txt")]
    res = run("compare", tmp_path / "bs1", tmp_path / "bs3", "--json", tmp_path / "c.json", code=1)
    assert f"1 images only in A (first: {stem})" in last_line(res)
    assert json.loads((tmp_path / "c.json").read_text())["summary"]["passed"] is False
    res = run("compare", tmp_path / "bs1", tmp_path / "bs3", "--allow-missing")
    assert "allowed by --allow-missing" in res.output and "PASS" in res.output


def test_compare_refuses_runs_of_models_with_other_class_counts(chain, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("".join(f"{s}.JPEG 1\n" for s in chain["label_map"]))
    for name, labels in (("toy-cls", chain["labels"]), ("toy-ten", small)):
        run("eval", "--onnx", chain["onnx"][name], "--labels", labels, "--input", chain["databin"],
            "--output", tmp_path / f"{name}.json", "--batch-size", 3, "--quiet")
    res = run("compare", tmp_path / "toy-cls", tmp_path / "toy-ten", code=1)
    assert "1000-class model" in res.output and "10-class one" in res.output


# --- also seen: --force, --output-dirname, --quiet -----------------------------------------


def test_eval_has_the_flags_its_messages_name(chain, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("".join(f"{s}.JPEG 1\n" for s in chain["label_map"]))
    common = ("--input", chain["databin"], "--batch-size", 3, "--output", tmp_path / "r.json")
    res = run("eval", "--onnx", chain["onnx"]["toy-cls"], "--labels", chain["labels"], *common)
    assert "infer" in res.output  # the progress bar
    res = run("eval", "--onnx", chain["onnx"]["toy-ten"], "--labels", small, *common, "--quiet", code=1)
    assert "--output-dirname" in res.output and "--force" in res.output  # infer's hint, flags eval has
    res = run("eval", "--onnx", chain["onnx"]["toy-ten"], "--labels", small, *common, "--quiet",
              "--output-dirname", "ten")
    assert summary(tmp_path / "r.json")["results_dir"] == str(tmp_path / "ten")
    assert res.output.strip().splitlines()[-1].startswith("Acc@1")  # --quiet: no bar
    assert "infer:" not in res.output and "batch/s" not in res.output
    run("eval", "--onnx", chain["onnx"]["toy-ten"], "--labels", small, *common, "--quiet", "--force")
    assert summary(tmp_path / "r.json")["model"] == "toy-ten"
    res = run("eval", "--results", tmp_path / "r", "--labels", small, "--output", tmp_path / "x.json", "--force",
              code=2)
    assert "--results only reads" in res.output


# --- the .om path: class count through the ATC record to the ONNX's export report ----------


@pytest.fixture()
def standins(tmp_path, monkeypatch, ais_bench_generation):
    """`atc` (tests/standins/atc_standin.py) on PATH and `python -m ais_bench` on PYTHONPATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    atc = bin_dir / "atc"
    atc.write_text(f"#!{sys.executable}\nimport runpy\n"
                   f"runpy.run_path({str(STANDINS / 'atc_standin.py')!r}, run_name='__main__')\n")
    atc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(STANDINS), os.environ.get("PYTHONPATH", "")]))


def test_om_class_count_comes_from_its_onnx(chain, tmp_path, standins):
    om_dir = tmp_path / "om"
    for name in TOYS:
        run("om", "--onnx", chain["onnx"][name], "--batch-sizes", 3, "--out-dir", om_dir)
    om = {name: om_dir / f"{name}_bs3.om" for name in TOYS}
    assert AtcRecord.for_om(om["toy-ten"]).onnx == str(chain["onnx"]["toy-ten"])
    assert ExportRecord.read(chain["onnx"]["toy-ten"]).num_classes == 10
    res = run("eval", "--om", om["toy-ten"], "--labels", chain["labels"], "--input", chain["databin"],
              "--output", tmp_path / "ten.json", code=1)
    assert "the model's 10 classes" in res.output and not (tmp_path / "ten").exists()
    out = tmp_path / "om.json"
    run("eval", "--om", om["toy-cls"], "--labels", chain["labels"], "--input", chain["databin"], "--output", out,
        "--quiet")
    s = summary(out)
    assert (s["model"], s["backend"], s["batch_size"], s["num_classes"]) == ("toy-cls", "ais_bench", 3, 1000)
    assert s["Acc@1"] == pytest.approx(expected_acc1()) and s["model_sha256"] == sha256(om["toy-cls"])
    run("eval", "--results", tmp_path / "om", "--labels", chain["labels"], "--output", tmp_path / "again.json")
    again = summary(tmp_path / "again.json")
    assert (again["model"], again["backend"], again["batch_size"]) == ("toy-cls", "ais_bench", 3)


def test_library_refuses_a_probe_majority_of_the_wrong_shape(tmp_path):
    """Direct use of score_results: one bad file among many is invalid; most of them is an error."""
    from focalinfer.postprocess.scoring import score_results

    stems = [f"img_{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    folder = tmp_path / "r"
    folder.mkdir()
    for i, stem in enumerate(stems):
        write_sample(folder, stem, rng.normal(size=1000 if i == 0 else 10).astype(np.float32), "NPY")
    labels = tmp_path / "l.txt"
    labels.write_text("".join(f"{s}.png 3\n" for s in stems))
    with pytest.raises(FocalinferError, match=r"img_1_0.npy: 10 values, expected 1000, but --num-classes gives"):
        score_results(folder, labels, num_classes=1000, classes_source="--num-classes")
    result = score_results(folder, labels, num_classes=10, classes_source="--num-classes")
    assert result.summary["invalid"] == 1 and result.summary["count"] == 5
