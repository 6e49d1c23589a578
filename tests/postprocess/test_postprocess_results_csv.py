"""eval --csv: a row per run in timm's results-table columns, plus backend, precision, batch and images/s."""

from __future__ import annotations

import csv

import numpy as np

from clitools import error_line, run
from focalinfer.layout import write_sample
from focalinfer.postprocess.results_csv import COLUMNS, TIMM_COLUMNS

CLASSES = 1000


def scored_folder(tmp_path, right: int, count: int = 8):
    folder = tmp_path / "result"
    folder.mkdir()
    lines = []
    for i in range(count):
        row = np.zeros(CLASSES, np.float32)
        row[i] = 1.0
        write_sample(folder, f"img_{i}", row, "NPY")
        lines.append(f"img_{i}.JPEG {i if i < right else 999}\n")
    labels = tmp_path / "val_label.txt"
    labels.write_text("".join(lines))
    return folder, labels


def test_rows_are_appended_under_timms_header(tmp_path):
    folder, labels = scored_folder(tmp_path, right=6)
    table = tmp_path / "results.csv"
    for _ in range(2):
        res = run("eval", "--results", folder, "--labels", labels, "--output", tmp_path / "r.json",
                  "--model", "focal-fast-s", "--batch-size", 16, "--csv", table)
        assert res.exit_code == 0, res.output
        assert f"csv: a row added to {table}" in res.output
    rows = list(csv.reader(table.open()))
    assert tuple(rows[0]) == COLUMNS and COLUMNS[:9] == TIMM_COLUMNS
    assert len(rows) == 3 and rows[1] == rows[2]
    got = dict(zip(rows[0], rows[1]))
    # focal-fast-s: 224 crop of a 256 bicubic resize, 51.5 M parameters (the registry's).
    assert got == {"model": "focal-fast-s", "img_size": "224", "top1": "75.0", "top1_err": "25.0", "top5": "75.0",
                   "top5_err": "25.0", "param_count": "51.53", "crop_pct": "0.875", "interpolation": "bicubic",
                   "backend": "", "precision_mode": "", "batch_size": "16", "images_per_s": ""}


def test_a_csv_with_another_header_is_refused_before_scoring(tmp_path):
    folder, labels = scored_folder(tmp_path, right=6)
    table = tmp_path / "results.csv"
    table.write_text("name,acc\nx,1\n")
    res = run("eval", "--results", folder, "--labels", labels, "--output", tmp_path / "r.json", "--csv", table,
              "--num-classes", CLASSES)
    assert res.exit_code == 1 and "pass a new file to --csv" in error_line(res)
    assert table.read_text() == "name,acc\nx,1\n" and not (tmp_path / "r.json").exists()
