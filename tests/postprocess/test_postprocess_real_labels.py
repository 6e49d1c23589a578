"""eval --real-labels: ReaL accuracy beside the original, from a real.json in ImageNet-ReaL's
format that the test writes (one list of valid classes per validation image, in file order)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clitools import error_line, run
from focalinfer.layout import write_sample

CLASSES = 10


def one_hot_logits(top: int) -> np.ndarray:
    """Top-1 ``top``, then top + 1, … (so the top-5 is top … top + 4 mod 10)."""
    out = np.zeros(CLASSES, np.float32)
    for rank in range(CLASSES):
        out[(top + rank) % CLASSES] = CLASSES - rank
    return out


@pytest.fixture
def val_subset(tmp_path):
    """Validation images 3, 5, 6, 9 of a 10-image 'val set' (ReaL entries 2, 4, 5, 8)."""
    numbers = [3, 5, 6, 9]
    tops = {3: 1, 5: 2, 6: 7, 9: 4}
    labels = {3: 1, 5: 3, 6: 0, 9: 4}           # original: 3 and 9 right (50 %)
    folder = tmp_path / "result"
    folder.mkdir()
    for n in numbers:
        write_sample(folder, f"ILSVRC2012_val_{n:08d}", one_hot_logits(tops[n]), "NPY")
    label_file = tmp_path / "val_label.txt"
    label_file.write_text("".join(f"ILSVRC2012_val_{n:08d}.JPEG {labels[n]}\n" for n in numbers))
    real = [[] for _ in range(10)]
    real[2] = [1, 8]      # image 3: top-1 1 is valid            → ReaL@1 hit
    real[4] = [2, 3]      # image 5: top-1 2 valid (orig. missed) → ReaL@1 hit
    real[5] = []          # image 6: no valid label              → left out
    real[8] = [9]         # image 9: top-1 4 not valid; 9 is not in 4..8 → miss at 1 and 5
    path = tmp_path / "real.json"
    path.write_text(json.dumps(real))
    return folder, label_file, path


def test_real_accuracy_beside_the_original(val_subset, tmp_path):
    folder, label_file, real = val_subset
    out = tmp_path / "r.json"
    res = run("eval", "--results", folder, "--labels", label_file, "--output", out, "--num-classes", CLASSES,
              "--real-labels", real)
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())["summary"]
    assert s["Acc@1"] == 50.0
    assert (s["ReaL_Acc@1"], s["ReaL_Acc@5"]) == (pytest.approx(200 / 3), pytest.approx(200 / 3))
    assert (s["ReaL_count"], s["ReaL_excluded"]) == (3, 1)
    assert s["ReaL_labels_file"] == str(real) and len(s["ReaL_labels_sha256"]) == 64
    assert "ReaL Acc@1 66.667" in res.output and "1 without a valid ReaL label left out" in res.output


def test_other_names_map_by_sorted_order_when_the_counts_agree(tmp_path):
    folder = tmp_path / "result"
    folder.mkdir()
    for stem, top in (("b", 1), ("a", 2)):
        write_sample(folder, stem, one_hot_logits(top), "NPY")
    label_file = tmp_path / "val_label.txt"
    label_file.write_text("b.JPEG 1\na.JPEG 5\n")
    real = tmp_path / "real.json"
    real.write_text(json.dumps([[2], [0]]))   # sorted: a → [2] (hit), b → [0] (miss)
    out = tmp_path / "r.json"
    assert run("eval", "--results", folder, "--labels", label_file, "--output", out, "--num-classes", CLASSES,
               "--real-labels", real).exit_code == 0
    assert json.loads(out.read_text())["summary"]["ReaL_Acc@1"] == 50.0
    real.write_text(json.dumps([[2], [0], [1]]))
    res = run("eval", "--results", folder, "--labels", label_file, "--output", out, "--num-classes", CLASSES,
              "--real-labels", real)
    assert res.exit_code == 1 and "3 entries for 2 labelled images" in error_line(res)


@pytest.mark.parametrize("content, reason", [('{"a": 1}', "not ReaL's format"), ("[[1, -2]]", "not ReaL's format"),
                                             ("[[1], ", "not readable JSON")])
def test_a_file_not_in_reals_format_stops_eval_before_anything_is_written(val_subset, tmp_path, content, reason):
    folder, label_file, _ = val_subset
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "r.json"
    res = run("eval", "--results", folder, "--labels", label_file, "--output", out, "--num-classes", CLASSES,
              "--real-labels", bad)
    assert res.exit_code == 1 and reason in error_line(res) and str(bad) in error_line(res)
    assert not out.exists()


def test_a_real_json_shorter_than_the_image_numbers_is_refused(val_subset, tmp_path):
    folder, label_file, _ = val_subset
    short = tmp_path / "short.json"
    short.write_text(json.dumps([[1]] * 5))
    res = run("eval", "--results", folder, "--labels", label_file, "--output", tmp_path / "r.json",
              "--num-classes", CLASSES, "--real-labels", short)
    assert res.exit_code == 1 and "validation image 6" in error_line(res)
