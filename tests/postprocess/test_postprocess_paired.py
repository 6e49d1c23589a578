"""A run against a reference run: compare --labels, eval --reference and the gate, on planted
outputs whose flips are known image by image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clitools import error_line, run
from focalinfer.layout import write_sample

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the test reference (pip install -e '.[test]')")

CLASSES = 10
COUNT = 40


def logits_for(top: int, label: int, hit5: bool) -> np.ndarray:
    """Logits whose top-1 is ``top``; the label is in the top-5 only when ``hit5``."""
    row = np.linspace(1, 0, CLASSES).astype(np.float32) * 5
    order = [top] + [c for c in range(CLASSES) if c not in (top, label)]
    if label != top:
        order.insert(2 if hit5 else 6, label)
    out = np.empty(CLASSES, np.float32)
    out[order] = row
    return out


def planted_pair(tmp_path: Path, lost: range, gained: range):
    """A gets images 0–29 right (Top-1); B loses ``lost`` and gains ``gained`` (Top-5 follows Top-1)."""
    labels = [i % CLASSES for i in range(COUNT)]
    stems = [f"img_{i:03d}" for i in range(COUNT)]
    right_a = {i for i in range(30)}
    right_b = (right_a - set(lost)) | set(gained)
    for side, right in (("a", right_a), ("b", right_b)):
        folder = tmp_path / side
        folder.mkdir()
        for i, stem in enumerate(stems):
            top = labels[i] if i in right else (labels[i] + 1) % CLASSES
            write_sample(folder, stem, logits_for(top, labels[i], hit5=i in right), "NPY")
    label_file = tmp_path / "val_label.txt"
    label_file.write_text("".join(f"{s}.JPEG {c}\n" for s, c in zip(stems, labels)))
    return tmp_path / "a", tmp_path / "b", label_file


def test_compare_with_labels_lists_the_flips_and_the_paired_figures(tmp_path):
    a, b, labels = planted_pair(tmp_path, lost=range(20, 25), gained=range(30, 32))
    res = run("compare", a, b, "--min-cosine", 0, "--labels", labels, "--json", tmp_path / "c.json")
    assert res.exit_code == 0, res.output
    acc = json.loads((tmp_path / "c.json").read_text())["accuracy"]
    lost = [f["image"] for f in acc["flips"]["right_in_a_wrong_in_b"]]
    gained = [f["image"] for f in acc["flips"]["wrong_in_a_right_in_b"]]
    assert lost == [f"img_{i:03d}.JPEG" for i in range(20, 25)] and gained == ["img_030.JPEG", "img_031.JPEG"]
    assert acc["flips"]["right_in_a_wrong_in_b"][0] == {"image": "img_020.JPEG", "label": 0, "top1_a": 0, "top1_b": 1}
    one = acc["Acc@1"]
    assert (one["acc_a"], one["acc_b"], one["delta"]) == (75.0, 67.5, -7.5)
    assert one["p_value"] == pytest.approx(scipy_stats.binomtest(2, 7, 0.5).pvalue, rel=1e-12)
    assert one["delta_ci95"][0] < -7.5 < one["delta_ci95"][1]
    assert acc["Acc@5"]["delta"] == -7.5 and acc["top1_agreement"] == pytest.approx(33 / 40)
    assert acc["gate"] is None
    assert "ΔAcc@1 -7.500 points" in res.output and "5 right in the reference and wrong here, 2 the reverse" in res.output
    assert "img_020.JPEG (0: 0→1)" in res.output


def test_compare_gate_exits_1_with_one_line_saying_by_how_much(tmp_path):
    a, b, labels = planted_pair(tmp_path, lost=range(20, 25), gained=range(30, 32))
    failed = run("compare", a, b, "--min-cosine", 0, "--labels", labels, "--max-drop", 1)
    assert failed.exit_code == 1
    assert error_line(failed) == ("focalinfer: error: gate FAILED: Acc@1 dropped 7.500 points (75.000 → 67.500), "
                                  "6.500 more than --max-drop 1")
    ratio = run("compare", a, b, "--min-cosine", 0, "--labels", labels, "--min-ratio", 0.99)
    assert ratio.exit_code == 1 and "ratio 0.9000 (67.500 / 75.000) is 0.0900 below --min-ratio 0.99" in error_line(ratio)
    passed = run("compare", a, b, "--min-cosine", 0, "--labels", labels, "--max-drop", 8, "--min-ratio", 0.9)
    assert passed.exit_code == 0, passed.output
    assert "gate passed: Acc@1 75.000 → 67.500" in passed.output


def test_gate_without_labels_or_reference_is_a_usage_error(tmp_path):
    a, b, labels = planted_pair(tmp_path, lost=range(0), gained=range(0))
    res = run("compare", a, b, "--max-drop", 1)
    assert res.exit_code == 2 and "add --labels" in res.output
    res = run("eval", "--results", b, "--labels", labels, "--output", tmp_path / "r.json", "--num-classes", CLASSES,
              "--min-ratio", 0.99)
    assert res.exit_code == 2 and "add --reference RESULT.json" in res.output
    assert not (tmp_path / "r.json").exists()


def test_eval_reference_compares_with_an_earlier_result_json_and_gates(tmp_path):
    a, b, labels = planted_pair(tmp_path, lost=range(20, 23), gained=range(0))
    ref = tmp_path / "fp32.json"
    assert run("eval", "--results", a, "--labels", labels, "--output", ref, "--num-classes", CLASSES).exit_code == 0
    out = tmp_path / "om.json"
    res = run("eval", "--results", b, "--labels", labels, "--output", out, "--num-classes", CLASSES,
              "--reference", ref, "--max-drop", 0.5)
    assert res.exit_code == 1
    assert error_line(res) == ("focalinfer: error: gate FAILED: Acc@1 dropped 7.500 points (75.000 → 67.500), "
                               "7.000 more than --max-drop 0.5")
    block = json.loads(out.read_text())["reference"]   # written before the gate's exit
    assert block["file"] == str(ref) and block["count"] == COUNT
    assert [f["image"] for f in block["flips"]["right_in_a_wrong_in_b"]] == ["img_020.JPEG", "img_021.JPEG",
                                                                             "img_022.JPEG"]
    assert block["Acc@1"]["p_value"] == pytest.approx(scipy_stats.binomtest(0, 3, 0.5).pvalue)
    assert block["gate"]["passed"] is False and block["gate"]["drop"] == pytest.approx(7.5)
    assert "against fp32.json (reference) on 40 common images" in res.output
    ok = run("eval", "--results", b, "--labels", labels, "--output", out, "--num-classes", CLASSES,
             "--reference", ref, "--min-ratio", 0.85)
    assert ok.exit_code == 0 and "gate passed" in ok.output


def test_eval_reference_must_be_a_result_json(tmp_path):
    _, b, labels = planted_pair(tmp_path, lost=range(0), gained=range(0))
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    res = run("eval", "--results", b, "--labels", labels, "--output", tmp_path / "r.json", "--num-classes", CLASSES,
              "--reference", bogus)
    assert res.exit_code == 1 and "not a focalinfer result.json" in error_line(res)
    assert not (tmp_path / "r.json").exists()
