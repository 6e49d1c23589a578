"""result.json's intervals, per-class accuracy and calibration, on planted outputs whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.layout import write_sample
from focalinfer.postprocess.scoring import score_results

proportion = pytest.importorskip("statsmodels.stats.proportion",
                                 reason="statsmodels is the test reference (pip install -e '.[test]')")

CLASSES = 10


def planted_run(tmp_path: Path, rights: dict[int, tuple[int, int]], scale: float = 4.0, probabilities=False):
    """Per class c: rights[c] = (images, how many the model gets right). Right images have the
    label's logit highest; wrong ones have class (c + 1) % 10 highest and the label 6th, so they
    miss Top-5 too. Returns the result folder, the label file and the logits in label order."""
    stems, labels, rows = [], [], []
    for c, (images, right) in sorted(rights.items()):
        for i in range(images):
            row = np.linspace(0, 1, CLASSES, dtype=np.float32)[::-1].copy()   # 1.0, 0.89, ... 0.0
            order = np.arange(CLASSES)
            order = np.roll(order, -c) if i < right else np.roll(order, -(c + 1))
            if i >= right:   # the label 6th: a Top-5 miss as well
                order = np.concatenate([order[order != c][:5], [c], order[order != c][5:]])
            logits = np.empty(CLASSES, np.float32)
            logits[order] = row * scale + 0.01 * i
            if probabilities:
                logits = np.exp(logits) / np.exp(logits).sum()
            stems.append(f"img_c{c}_{i:03d}")
            labels.append(c)
            rows.append(logits)
    folder = tmp_path / "result"
    folder.mkdir()
    for stem, row in zip(stems, rows):
        write_sample(folder, stem, row, "NPY")
    label_file = tmp_path / "val_label.txt"
    label_file.write_text("".join(f"{s}.JPEG {c}\n" for s, c in zip(stems, labels)))
    return folder, label_file, np.array(rows), np.array(labels)


RIGHTS = {0: (10, 10), 1: (8, 2), 2: (5, 0), 3: (6, 3), 4: (4, 4), 5: (3, 0), 6: (7, 6), 7: (2, 1), 8: (5, 5),
          9: (10, 9)}


def test_intervals_are_wilsons_from_the_counts(tmp_path):
    folder, label_file, _, _ = planted_run(tmp_path, RIGHTS)
    s = score_results(folder, label_file, num_classes=CLASSES).summary
    n, hits = sum(v[0] for v in RIGHTS.values()), sum(v[1] for v in RIGHTS.values())
    assert s["count"] == n and s["Acc@1"] == pytest.approx(100 * hits / n)
    want = proportion.proportion_confint(hits, n, alpha=0.05, method="wilson")
    assert s["Acc@1_ci95"] == pytest.approx([100 * want[0], 100 * want[1]], abs=1e-9)
    assert s["Acc@5"] == s["Acc@1"]   # planted: wrong images miss Top-5 too
    assert s["Acc@5_ci95"] == s["Acc@1_ci95"]


def test_every_class_has_its_accuracy_and_the_worst_come_first(tmp_path):
    folder, label_file, _, _ = planted_run(tmp_path, RIGHTS)
    result = score_results(folder, label_file, num_classes=CLASSES)
    assert set(result.per_class) == {str(c) for c in RIGHTS}
    for c, (images, right) in RIGHTS.items():
        row = result.per_class[str(c)]
        assert (row["images"], row["hit@1"], row["hit@5"]) == (images, right, right)
        assert row["Acc@1"] == pytest.approx(100 * right / images)
    worst = [w["class"] for w in result.summary["worst_classes"]]
    # 0 %: class 2 (5 images) before 5 (3 images); then 1 (25 %), 3 and 7 (50 %: more images first), ...
    assert worst == [2, 5, 1, 3, 7, 6, 9, 0, 8, 4]
    assert result.summary["classes_scored"] == 10


def brute_force_ece(logits, labels, bins=15):
    conf, right = [], []
    for row, label in zip(logits.astype(np.float64), labels):
        p = np.exp(row - row.max())
        p /= p.sum()
        conf.append(p.max())
        right.append(int(np.argmax(row)) == label)
    total = 0.0
    for b in range(bins):
        members = [i for i, c in enumerate(conf) if b / bins < c <= (b + 1) / bins]
        if members:
            total += len(members) / len(conf) * abs(np.mean([right[i] for i in members]) - np.mean([conf[i] for i in members]))
    return float(np.mean(conf)), total


@pytest.mark.parametrize("scale", [4.0, 12.0])
def test_calibration_is_the_softmax_of_the_logits(tmp_path, scale):
    folder, label_file, logits, labels = planted_run(tmp_path, RIGHTS, scale=scale)
    s = score_results(folder, label_file, num_classes=CLASSES).summary
    mean_conf, ece = brute_force_ece(logits, labels)
    assert s["mean_confidence"] == pytest.approx(mean_conf, rel=1e-6)
    assert s["ece"] == pytest.approx(ece, rel=1e-6)
    assert s["ece_bins"] == 15 and s["calibration_note"] is None


def test_probability_outputs_get_a_note_and_no_second_softmax(tmp_path):
    folder, label_file, probs, labels = planted_run(tmp_path, RIGHTS, probabilities=True)
    s = score_results(folder, label_file, num_classes=CLASSES).summary
    assert "not logits" in s["calibration_note"]
    assert s["mean_confidence"] == pytest.approx(float(probs.max(axis=1).mean()), rel=1e-6)


def test_eval_prints_the_intervals_and_ten_worst_classes_and_keeps_old_keys(tmp_path):
    folder, label_file, _, _ = planted_run(tmp_path, RIGHTS)
    out = tmp_path / "result.json"
    res = CliRunner().invoke(cli, ["eval", "--results", str(folder), "--labels", str(label_file), "--output", str(out),
                                   "--num-classes", str(CLASSES)])
    assert res.exit_code == 0, res.output
    lines = res.output.rstrip("\n").splitlines()
    assert lines[-1].startswith("Acc@1: ")   # the summary line stays last
    assert any(line.startswith("  95 % intervals (Wilson): Acc@1 ") and "ECE" in line for line in lines)
    worst = next(line for line in lines if "worst 10 of 10 classes" in line)
    assert worst.split(": ", 1)[1].startswith("2 0.0 % (0/5), 5 0.0 % (0/3), 1 25.0 % (2/8)")
    data = json.loads(out.read_text())
    assert {"summary", "images", "issues", "per_class"} <= set(data)
    assert data["per_class"]["1"] == {"images": 8, "hit@1": 2, "hit@5": 2, "Acc@1": 25.0, "Acc@5": 25.0}
    assert data["summary"]["precision_mode"] is None   # --results without records: nothing says
