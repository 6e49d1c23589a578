"""eval stage: reading ais_bench result folders, joining to labels by name, Top-1/Top-5, result.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.errors import FocalinferError
from focalinfer.postprocess import outputs as outputs_mod
from focalinfer.bench.eval import bench_eval
from focalinfer.layout import txt_bytes, write_sample as write_output


def txt_line(vector):
    return txt_bytes(np.asarray(vector).reshape(1, -1))
from focalinfer.postprocess.labels import read_labels
from focalinfer.postprocess.outputs import read_logits, read_run_summary, scan_results
from focalinfer.pipeline import evaluate
from focalinfer.postprocess.scoring import require_complete, score_results
from focalinfer.metrics.topk import partial_sort_topk, topk_indices

CLASSES = 1000


# --- helpers ---------------------------------------------------------------------------


def names(count: int) -> list[str]:
    return [f"ILSVRC2012_val_{i:08d}" for i in range(1, count + 1)]


def make_logits(count: int, seed: int = 0, classes: int = CLASSES) -> np.ndarray:
    """Random logits rounded to what ais_bench's %f TXT keeps, so every format holds the same values."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 3, size=(count, classes)), 6).astype(np.float32)


def make_labels(logits: np.ndarray, seed: int = 1) -> np.ndarray:
    """Labels that give a Top-1 well away from 0 and 100 %: the arg-max for half, random otherwise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, logits.shape[1], size=len(logits))
    keep = rng.random(len(logits)) < 0.5
    labels[keep] = logits[keep].argmax(axis=1)
    return labels


def write_labels(path: Path, stems, labels, suffix=".JPEG") -> Path:
    path.write_text("".join(f"{s}{suffix} {int(c)}\n" for s, c in zip(stems, labels)))
    return path


def write_results(directory: Path, stems, logits, outfmt="TXT") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, row in zip(stems, logits):
        write_output(directory, stem, row, outfmt)
    return directory


def seed_style_hits(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """What the seed computed per image: output.topk(5) on a (1, C) tensor, first column = top-1."""
    hit1 = hit5 = 0
    for row, label in zip(logits, labels):
        top = torch.from_numpy(row).unsqueeze(0).topk(5, 1, True, True).indices[0]
        hit1 += int(top[0] == label)
        hit5 += int((top == label).any())
    return 100.0 * hit1 / len(labels), 100.0 * hit5 / len(labels)


@pytest.fixture
def scored_set(tmp_path):
    stems = names(40)
    logits = make_logits(40)
    labels = make_labels(logits)
    results = write_results(tmp_path / "result", stems, logits)
    label_file = write_labels(tmp_path / "val_label.txt", stems, labels)
    return stems, logits, labels, results, label_file


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# --- a real inference chain at several batch sizes and formats ---------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A dynamic-batch ONNX classifier (flatten + matmul, 1000 classes) and 37 input .bin files."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(7)
    weight = rng.normal(0, 1, size=(48, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["class"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, ["N", CLASSES])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx_path = root / "tiny.onnx"
    onnx.save(model, onnx_path)

    databin = root / "databin"
    databin.mkdir()
    stems = names(37)  # 37: the last batch is padded at batch sizes 4 and 16
    images = rng.normal(size=(37, 1, 3, 4, 4)).astype(np.float32)
    for stem, image in zip(stems, images):
        image.tofile(databin / f"{stem}.bin")
    direct = images.reshape(37, 48) @ weight  # the model's logits, computed without files
    labels = make_labels(direct, seed=3)
    label_file = write_labels(root / "val_label.txt", stems, labels)
    return onnx_path, databin, label_file, direct, labels


def test_batch_sizes_and_formats_give_identical_numbers(tiny_model, tmp_path):
    from focalinfer.infer import run_inference

    onnx_path, databin, label_file, direct, labels = tiny_model
    expected = seed_style_hits(direct, labels)
    seen = {}
    for outfmt in ("TXT", "NPY", "BIN"):
        for batch in (1, 4, 16):
            run = run_inference(onnx_path, input_dir=databin, output=tmp_path, output_dirname=f"{outfmt}_bs{batch}",
                                outfmt=outfmt, batch_size=batch, backend="onnxruntime", progress=False)
            result = score_results(run.output_dir, label_file)
            s = result.summary
            assert s["count"] == 37 and s["missing"] == s["extra"] == s["invalid"] == 0
            assert s["outfmt"] == outfmt and s["batch_size"] == batch  # batch recovered from the summary
            assert s["ais_bench_throughput"] == pytest.approx(run.throughput)
            # ais_bench's formula counts the padded slots of the last batch; images/s counts 37 images.
            slots = batch * -(-37 // batch)
            assert s["images_per_s"] == pytest.approx(run.throughput * 37 / slots)
            seen[(outfmt, batch)] = result
    first = seen[("TXT", 1)]
    assert (first.summary["Acc@1"], first.summary["Acc@5"]) == pytest.approx(expected)
    assert 10 < first.summary["Acc@1"] < 90
    for key, result in seen.items():
        assert result.summary["Acc@1"] == first.summary["Acc@1"], key
        assert result.summary["Acc@5"] == first.summary["Acc@5"], key
        assert result.images == first.images, key


def test_eval_cli_runs_onnxruntime_then_scores(tiny_model, tmp_path):
    onnx_path, databin, label_file, direct, labels = tiny_model
    out = tmp_path / "infer" / "result_bs4.json"
    res = run_cli("eval", "--onnx", onnx_path, "--labels", label_file, "--input", databin, "--output", out,
                  "--batch-size", 4)
    assert res.exit_code == 0, res.output
    acc1, acc5 = seed_style_hits(direct, labels)
    assert f"Acc@1: {acc1:.3f}  Acc@5: {acc5:.3f}" in res.output
    data = json.loads(out.read_text())
    s = data["summary"]
    assert s["backend"] == "onnxruntime" and s["batch_size"] == 4
    # No export report and no metadata: the registry name is unknown, the file is recorded.
    assert s["model"] is None and s["model_file"] == str(onnx_path)
    assert s["num_classes"] == CLASSES and s["num_classes_source"].startswith(f"{onnx_path} output 0 'class'")
    assert s["images_per_s"] > 0 and s["outputs_written"] == 37 and s["outputs_reused"] == 0
    assert Path(s["results_dir"]) == tmp_path / "infer" / "result_bs4"  # outputs beside result.json
    assert (tmp_path / "infer" / "result_bs4_summary.json").is_file()
    assert len(data["images"]) == 37


def test_eval_cli_om_without_ais_bench_is_a_one_line_error(tiny_model, tmp_path):
    import importlib.util

    if importlib.util.find_spec("ais_bench") is not None:
        pytest.skip("ais_bench is installed: the .om would really run")
    _, databin, label_file, _, _ = tiny_model
    om = tmp_path / "focal-fast-s_bs16.om"
    om.write_bytes(b"not a real om")
    res = run_cli("eval", "--om", om, "--labels", label_file, "--input", databin, "--output", tmp_path / "r.json")
    assert res.exit_code == 2 and "--onnx X.onnx" in res.output and "Traceback" not in res.output


def test_eval_cli_needs_exactly_one_source(scored_set, tmp_path):
    _, _, _, results, label_file = scored_set
    res = run_cli("eval", "--labels", label_file)
    assert res.exit_code == 2 and "exactly one of" in res.output
    res = run_cli("eval", "--labels", label_file, "--results", results, "--onnx", tmp_path / "x.onnx")
    assert res.exit_code == 2
    res = run_cli("eval", "--labels", label_file, "--om", tmp_path / "x.onnx")
    assert res.exit_code == 2 and "expected an .om" in res.output


# --- scoring rules -----------------------------------------------------------------------


def test_scores_match_the_seed_method_and_result_json_schema(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    out = tmp_path / "out" / "result.json"
    res = run_cli("eval", "--results", results, "--labels", label_file, "--output", out, "--model", "focal-fast-s")
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    s = data["summary"]
    for key in ("Acc@1", "Acc@5", "count", "missing", "extra", "invalid", "model", "backend", "batch_size",
                "images_per_s", "ais_bench_throughput", "labels_file", "results_dir"):
        assert key in s
    assert (s["Acc@1"], s["Acc@5"]) == pytest.approx(seed_style_hits(logits, labels))
    assert s["model"] == "focal-fast-s" and s["count"] == 40 and s["images_per_s"] is None
    assert s["num_classes_source"] == "the registry entry of focal-fast-s"
    entry = data["images"][f"{stems[0]}.JPEG"]
    top5 = torch.from_numpy(logits[0]).topk(5).indices.tolist()
    assert entry == {"label": int(labels[0]), "top5": top5, "hit@1": top5[0] == labels[0],
                     "hit@5": int(labels[0]) in top5}
    assert [p.name for p in out.parent.iterdir()] == ["result.json"]  # atomic: no temp file left
    assert res.output.strip().splitlines()[-1].startswith("Acc@1: ")


def test_shuffled_label_file_gives_the_same_numbers(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    order = np.random.default_rng(5).permutation(len(stems))
    shuffled = write_labels(tmp_path / "shuffled.txt", [stems[i] for i in order], labels[order])
    a = score_results(results, label_file)
    b = score_results(results, shuffled)
    assert a.summary["Acc@1"] == b.summary["Acc@1"] and a.summary["Acc@5"] == b.summary["Acc@5"]
    assert a.images == b.images
    # A position join would score the shuffled file differently; the name join does not.
    assert labels[order][0] != labels[0]


def test_missing_output_fails_unless_allowed(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    (results / f"{stems[3]}_0.txt").unlink()
    out = tmp_path / "r.json"
    res = run_cli("eval", "--results", results, "--labels", label_file, "--output", out)
    assert res.exit_code == 1
    assert "labelled images 1 without an output (first: " in res.output and "Traceback" not in res.output
    assert json.loads(out.read_text())["issues"]["missing"] == [f"{stems[3]}.JPEG"]  # still written
    res = run_cli("eval", "--results", results, "--labels", label_file, "--output", out, "--allow-missing")
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())["summary"]
    keep = [i for i in range(40) if i != 3]
    assert s["missing"] == 1 and s["count"] == 39
    assert (s["Acc@1"], s["Acc@5"]) == pytest.approx(seed_style_hits(logits[keep], labels[keep]))


def test_extra_outputs_are_counted_not_scored(scored_set):
    stems, logits, labels, results, label_file = scored_set
    extra = make_logits(2, seed=9)
    write_results(results, ["not_in_labels_a", "not_in_labels_b"], extra)
    result = score_results(results, label_file)
    assert result.summary["extra"] == 2 and result.summary["count"] == 40
    assert sorted(result.issues["extra"]) == ["not_in_labels_a", "not_in_labels_b"]
    assert any("2 outputs have no label" in w for w in result.warnings)


def test_duplicate_labels(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    text = label_file.read_text()
    same = tmp_path / "dup_same.txt"
    same.write_text(text + f"{stems[5]}.JPEG {labels[5]}\n")
    result = score_results(results, same)
    assert result.summary["duplicate_labels"] == 1 and result.summary["count"] == 40
    assert result.issues["duplicate_labels"] == [{"line": 41, "image": f"{stems[5]}.JPEG", "first_line": 6}]

    conflict = tmp_path / "dup_conflict.txt"
    conflict.write_text(text + f"{stems[5]}.png {(labels[5] + 1) % CLASSES}\n")  # same stem, other class
    with pytest.raises(FocalinferError, match=r"dup_conflict.txt:41: .* line 6"):
        score_results(results, conflict)
    res = run_cli("eval", "--results", results, "--labels", conflict, "--output", tmp_path / "r.json")
    assert res.exit_code == 1 and "remove one of the two lines" in res.output


def test_malformed_label_lines_are_counted_and_skipped(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    lines = label_file.read_text().splitlines()
    lines[0] = f"{stems[0]}.JPEG"                        # no class
    lines[1] = f"{stems[1]}.JPEG seven"                  # not an integer
    lines[2] = f"{stems[2]}.JPEG -4"                     # negative
    lines[3] = f"{stems[3]}.JPEG {CLASSES}"              # no such class
    lines[4] = f"{stems[4]}.JPEG 1 2"                    # the class is the last field: image "….JPEG 1", class 2
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\n\n" + "\n".join(lines) + "\n")
    with pytest.raises(FocalinferError, match=r"bad.txt: 4 label lines cannot be scored \(line 3: expected .* "
                                              r"--allow-bad-labels"):
        score_results(results, bad)
    res = run_cli("eval", "--results", results, "--labels", bad, "--output", tmp_path / "r.json")
    assert res.exit_code == 1 and "--allow-bad-labels" in res.output and not (tmp_path / "r.json").exists()
    result = score_results(results, bad, allow_bad_labels=True)
    s = result.summary
    assert s["malformed_labels"] == 4 and s["count"] == 36 and s["missing"] == 0
    assert [m["line"] for m in result.issues["malformed_labels"]] == [3, 4, 5, 6]
    assert "outside the model's 0–999" in result.issues["malformed_labels"][3]["reason"]
    assert s["extra"] == 4  # outputs whose label line is bad have no label
    relabelled = labels.copy()
    relabelled[4] = 2
    assert (s["Acc@1"], s["Acc@5"]) == pytest.approx(seed_style_hits(logits[4:], relabelled[4:]))


def test_nan_logit_is_invalid_not_a_crash(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    broken = logits[7].copy()
    broken[10] = np.nan
    write_output(results, stems[7], broken, "TXT")
    result = score_results(results, label_file)
    assert result.summary["invalid"] == 1 and result.summary["count"] == 39
    assert result.issues["invalid"] == {f"{stems[7]}.JPEG": "non-finite logit (NaN or inf)"}
    res = run_cli("eval", "--results", results, "--labels", label_file, "--output", tmp_path / "r.json")
    assert res.exit_code == 1 and "1 with an invalid one" in res.output and "Traceback" not in res.output
    res = run_cli("eval", "--results", results, "--labels", label_file, "--output", tmp_path / "r.json",
                  "--allow-missing")
    assert res.exit_code == 0
    only_nan = write_labels(tmp_path / "one.txt", [stems[7]], [labels[7]])
    with pytest.raises(FocalinferError, match="none of the 1 labelled outputs is valid .*non-finite"):
        score_results(results, only_nan)


@pytest.mark.parametrize("outfmt", ["TXT", "NPY", "BIN"])
def test_wrong_vector_length_is_invalid(scored_set, tmp_path, outfmt):
    stems, logits, labels, _, label_file = scored_set
    results = write_results(tmp_path / outfmt, stems, logits, outfmt)
    write_output(results, stems[2], logits[2][:999], outfmt)
    if outfmt == "NPY":
        np.save(results / f"{stems[4]}_0.npy", logits[4:6])          # two vectors in one file
    else:
        (results / f"{stems[4]}_0.{outfmt.lower()}").write_bytes(b"garbage\x00\x01")
    result = score_results(results, label_file)
    assert result.summary["invalid"] == 2 and result.summary["count"] == 38
    assert result.issues["invalid"][f"{stems[2]}.JPEG"].startswith("999 values, expected 1000")
    reason = {"TXT": "unreadable: string or file could not be read", "NPY": "shape (2, 1000) holds more than one vector",
              "BIN": "unreadable: 9 bytes is not a whole number of float32 values"}[outfmt]
    assert result.issues["invalid"][f"{stems[4]}.JPEG"].startswith(reason)


def test_appended_txt_uses_the_first_line_and_warns(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    rerun = logits[0].copy()
    rerun[(labels[0] + 1) % CLASSES] = 100.0  # a second line whose top-1 would differ
    path = results / f"{stems[0]}_0.txt"
    path.write_bytes(txt_line(logits[0]) + txt_line(rerun))
    result = score_results(results, label_file)
    assert result.summary["appended_txt"] == 1 and result.summary["invalid"] == 0
    assert result.images[f"{stems[0]}.JPEG"]["top5"] == torch.from_numpy(logits[0]).topk(5).indices.tolist()
    res = run_cli("eval", "--results", results, "--labels", label_file, "--output", tmp_path / "r.json")
    assert res.exit_code == 0 and "the first line of each was used" in res.output


def test_summary_beside_and_old_sumary_inside(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    beside = results.with_name(results.name + "_summary.json")
    timing = {"min": 5.0, "max": 5.0, "mean": 5.0, "median": 5.0, "percentile(99%)": 5.0, "count": 3}
    beside.write_text(json.dumps({"NPU_compute_time": timing, "throughput": 3200.0,
                                  "args": ["/usr/lib/python3/site-packages/ais_bench/__main__.py", "--model",
                                           "om/focalv2_bs16.om", "--batchsize", "16", "--outfmt", "TXT"]}))
    s = score_results(results, label_file).summary
    assert (s["ais_bench_throughput"], s["batch_size"], s["model_file"], s["backend"]) == \
        (3200.0, 16, "om/focalv2_bs16.om", "ais_bench")
    assert s["model"] is None  # a file stem is not a registry name
    assert s["images_per_s"] is None  # no filesinfo / timing list: the real rate is unknown
    assert s["summary_file"] == str(beside)

    beside.unlink()
    (results / "sumary.json").write_text(json.dumps({"NPU_compute_time": timing, "throughput": 800.0,
                                                     "args": ["ais_infer.py", "--model=m_bs4.om"]}))
    s = score_results(results, label_file).summary
    # No batch flag: recovered from throughput = 1000 × batch / mean compute time.
    assert (s["ais_bench_throughput"], s["batch_size"], s["backend"]) == (800.0, 4, "ais_bench")
    assert s["count"] == 40  # the summary inside the folder is not mistaken for an output

    info = read_run_summary(results)
    assert info.path == results / "sumary.json"
    # "-m" is a model only in ais_bench's own argv (pytest -m "not fullsize" is not a model).
    (results / "sumary.json").write_text(json.dumps({"args": ["/x/ais_bench/__main__.py", "-m", "a_bs2.om"]}))
    assert read_run_summary(results).model == "a_bs2.om"
    (results / "sumary.json").write_text(json.dumps({"args": ["/x/bin/pytest", "-m", "not fullsize"]}))
    assert read_run_summary(results).model is None
    # What the caller knows wins over the summary (the CLI refuses a contradicting --batch-size).
    s = score_results(results, label_file, run={"batch_size": 8, "model": "x"}).summary
    assert (s["batch_size"], s["model"]) == (8, "x")


def test_multi_device_folders_are_merged(scored_set, tmp_path):
    stems, logits, labels, _, label_file = scored_set
    run = tmp_path / "run"
    write_results(run / "device0", stems[:20], logits[:20])
    write_results(run / "device1", stems[20:], logits[20:])
    timing = {"mean": 10.0}
    for dev, rate in ((0, 100.0), (1, 110.0)):
        (run / f"device{dev}_summary.json").write_text(json.dumps(
            {"NPU_compute_time": timing, "throughput": rate, "args": ["-", "--batchsize", "1"]}))
    s = score_results(run, label_file).summary
    assert s["count"] == 40 and s["ais_bench_throughput"] == 210.0
    assert s["Acc@1"] == pytest.approx(seed_style_hits(logits, labels)[0])


def test_name_mismatch_and_mixed_formats_are_one_line_errors(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    other = write_labels(tmp_path / "other.txt", [f"x{i}" for i in range(40)], labels)
    with pytest.raises(FocalinferError, match="joined to labels by the image name"):
        score_results(results, other)
    write_output(results, stems[0], logits[0], "NPY")
    with pytest.raises(FocalinferError, match="pass --outfmt"):
        score_results(results, label_file)
    assert score_results(results, label_file, outfmt="npy").summary["count"] == 1
    with pytest.raises(FocalinferError, match="does not exist"):
        score_results(tmp_path / "nope", label_file)


def test_1001_class_outputs_add_one_to_labels(tmp_path):
    """TF-origin models put a background class at index 0: label L is logit L + 1 (ModelZoo's rule)."""
    stems = names(30)
    logits = make_logits(30, seed=4, classes=1001)
    labels = make_labels(logits[:, 1:], seed=2)
    logits[0, 0] = 50.0  # background wins image 0: its top-1 is reported as -1, never a hit
    results = write_results(tmp_path / "r", stems, logits)
    result = score_results(results, write_labels(tmp_path / "l.txt", stems, labels))
    s = result.summary
    assert s["num_classes"] == 1001 and s["label_offset"] == 1
    shifted = seed_style_hits(logits, labels + 1)
    assert (s["Acc@1"], s["Acc@5"]) == pytest.approx(shifted)
    assert result.images[f"{stems[0]}.JPEG"]["top5"][0] == -1
    assert result.images[f"{stems[1]}.JPEG"]["top5"] == [i - 1 for i in torch.from_numpy(logits[1]).topk(5).indices.tolist()]


# --- top-k ties --------------------------------------------------------------------------


def tied_rows(count: int, classes: int, levels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, levels, size=(count, classes)).astype(np.float32)


def test_topk_ties_follow_torch_not_lowest_index():
    rows = tied_rows(300, CLASSES, 3, seed=0)
    rows[0] = 0.0                       # all equal
    rows[1, ::7] = np.nan               # NaN is "largest" for torch
    ours = topk_indices(rows, 5)
    reference = np.stack([torch.from_numpy(r).unsqueeze(0).topk(5, 1, True, True).indices[0].numpy() for r in rows])
    assert np.array_equal(ours, reference)
    assert np.array_equal(ours, torch.topk(torch.from_numpy(rows), 5, dim=1).indices.numpy())
    # The lowest-index-first rule (a stable sort) disagrees with torch on tied rows, so it is not used.
    stable = np.argsort(-rows, axis=1, kind="stable")[:, :5]
    assert (stable != reference).any(axis=1).sum() > 100


@pytest.mark.parametrize("classes,levels", [(1000, 2), (1001, 5), (320, 3), (100, 3), (6, 2), (5, 4)])
def test_topk_matches_torch_on_heavy_ties(classes, levels):
    rows = tied_rows(200, classes, levels, seed=classes)
    for k in (1, 5):
        expected = torch.topk(torch.from_numpy(rows), min(k, classes), dim=1).indices.numpy()
        assert np.array_equal(topk_indices(rows, k), expected)


def test_partial_sort_replica_equals_torch_row_by_row():
    rows = tied_rows(50, CLASSES, 4, seed=11)
    for row in rows:
        assert partial_sort_topk(row.astype(np.float64), 5) == torch.from_numpy(row).topk(5).indices.tolist()


# --- the fast TXT path against a slow reference ------------------------------------------


def test_fast_txt_reader_equals_loadtxt(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    count = 300
    logits = rng.normal(0, 4, size=(count, CLASSES)).astype(np.float32)
    logits[0, :5] = [0.0, -0.0, -1e-9, 123456.75, -0.5]   # "-0.000000" sends a row to the float parser
    logits[1, :3] = [1e-7, -3e-7, 2.5e-6]
    stems = names(count)
    results = write_results(tmp_path / "r", stems, logits)
    (results / f"{stems[2]}_0.txt").write_bytes(b"\t".join(b"%.3f" % v for v in logits[2]) + b"\n")  # other layout
    paths = [results / f"{s}_0.txt" for s in stems]
    reference = np.stack([np.loadtxt(p, dtype=np.float32) for p in paths])

    serial = read_logits(stems, paths, "TXT", workers=1)
    monkeypatch.setattr(outputs_mod, "POOL_MIN_FILES", 10)
    pooled = read_logits(stems, paths, "TXT", workers=2)
    for got in (serial, pooled):
        assert got.valid.all()
        assert np.array_equal(got.values.view(np.int32), reference.view(np.int32))  # bit for bit

    labels = make_labels(reference, seed=6)
    result = score_results(results, write_labels(tmp_path / "l.txt", stems, labels), workers=2)
    slow = [torch.from_numpy(np.loadtxt(p, dtype=np.float32)).unsqueeze(0).topk(5, 1, True, True).indices[0].tolist()
            for p in paths]
    assert [result.images[f"{s}.JPEG"]["top5"] for s in stems] == slow


def test_txt_reader_edge_cases(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    cases = {
        "empty": b"",
        "blank_line": b"   \n",
        "words": b"1.0 abc 2.0\n",
        "crlf": txt_line(np.arange(CLASSES, dtype=np.float32)).replace(b"\n", b"\r\n"),
    }
    for stem, data in cases.items():
        (d / f"{stem}_0.txt").write_bytes(data)
    result = scan_results(d)
    got = read_logits(list(cases), [result.outputs[s] for s in cases], "TXT", num_classes=CLASSES)
    assert got.status.tolist() == [outputs_mod.BAD_LENGTH, outputs_mod.BAD_LENGTH, outputs_mod.UNREADABLE,
                                   outputs_mod.OK]
    assert got.lengths.tolist()[:2] == [0, 0]  # not numpy's [-1.] for blank text
    assert np.array_equal(got.values[3], np.arange(CLASSES, dtype=np.float32))


def test_labels_reader_keys_by_stem(tmp_path):
    path = tmp_path / "val_label.txt"
    path.write_text("ILSVRC2012_val_00000001.JPEG 65\r\nsub/dir/a.b.png 3\n\n")
    labels = read_labels(path)
    assert list(labels.labels) == ["ILSVRC2012_val_00000001", "a"]
    assert labels.labels["a"].target == 3 and labels.labels["a"].image == "sub/dir/a.b.png"
    with pytest.raises(FocalinferError, match="label file not found"):
        read_labels(tmp_path / "missing.txt")


def test_require_complete_and_evaluate_arguments(scored_set, tmp_path):
    stems, logits, labels, results, label_file = scored_set
    result, path = evaluate(label_file, results_dir=results, output=tmp_path / "a" / "result.json")
    assert path.is_file()
    require_complete(result, allow_missing=False)  # complete: no error
    with pytest.raises(FocalinferError, match="exactly one of"):
        evaluate(label_file, output=tmp_path / "r.json")
    result.summary["missing"] = 2
    result.issues["missing"] = ["x.JPEG", "y.JPEG"]
    with pytest.raises(FocalinferError, match="--allow-missing"):
        require_complete(result, allow_missing=False)


def test_bench_eval_small_run_reports_both_rates():
    figures = bench_eval(count=300, baseline_count=40, repeats=1, workers=1)
    assert figures["count"] == 300 and figures["baseline"]["files_measured"] == 40
    assert figures["focalinfer"]["files_per_s"] > 0 and figures["baseline"]["files_per_s"] > 0
    assert figures["same_hits_on_baseline_subset"] is True
    assert figures["ratio"] == pytest.approx(figures["focalinfer"]["files_per_s"] / figures["baseline"]["files_per_s"],
                                             abs=0.01)
    assert "scaled" in figures["baseline"]["note"]
