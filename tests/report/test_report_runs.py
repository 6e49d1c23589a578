"""focalinfer report on a real chain of runs (tests/report/report_chain.py): what it reads from the
records, and what the page says."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest

from clitools import error_line, run
from report_chain import GAINED, IMAGES, LOST, report_runs  # noqa: F401  (the module's chain of runs)


def test_the_om_run_is_gated_against_the_fp32_reference(report_runs):
    work, reference, om, labels, result = report_runs
    # 3 lost, 1 gained out of 24: ΔAcc@1 = −2/24 = −8.333 points, more than --max-drop 5.
    assert result.exit_code == 1, result.output
    assert error_line(result) == ("focalinfer: error: gate FAILED: Acc@1 dropped 8.333 points (50.000 → 41.667), "
                                  "3.333 more than --max-drop 5")
    block = json.loads(om.read_text())["reference"]
    names = sorted(labels)
    assert [f["image"] for f in block["flips"]["right_in_a_wrong_in_b"]] == [f"{names[i]}.jpg" for i in LOST]
    assert [f["image"] for f in block["flips"]["wrong_in_a_right_in_b"]] == [f"{names[i]}.jpg" for i in GAINED]
    summary = json.loads(om.read_text())["summary"]
    assert summary["precision_mode"] == "force_fp16" and summary["backend"] == "ais_bench"
    assert summary["batch_size"] == 4 and summary["model"] == "bench-tiny"


def test_csv_holds_both_runs_in_timms_columns(report_runs):
    work = report_runs[0]
    rows = list(csv.DictReader((work / "results.csv").open()))
    assert [(r["backend"], r["precision_mode"], r["batch_size"]) for r in rows] == [
        ("onnxruntime", "fp32", "1"), ("ais_bench", "force_fp16", "4")]
    assert rows[0]["top1"] == "50.0" and rows[1]["top1"] == "41.667" and rows[1]["top1_err"] == "58.333"
    assert rows[0]["img_size"] == "32" and rows[0]["interpolation"] == "bicubic"
    assert float(rows[0]["images_per_s"]) > 0


@pytest.fixture(scope="module")
def html_report(report_runs):
    work, reference, om, _, _ = report_runs
    out = work / "report.html"
    res = run("report", reference, om, "--out", out, "--max-drop", 5)
    return out, res


def test_report_exits_1_on_a_failed_gate_and_still_writes_the_page(html_report):
    out, res = html_report
    assert res.exit_code == 1 and out.is_file()
    assert error_line(res).startswith("focalinfer: error: result_om.json: gate FAILED: Acc@1 dropped 8.333 points")
    assert f"report: {out}" in res.output


def test_the_page_is_self_contained(html_report):
    html = html_report[0].read_text()
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)   # every picture inline, links in-page
    assert "default-src 'none'" in html                                 # and the browser may load nothing
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 2   # accuracy and throughput plots
    assert len(re.findall(r'src="data:image/jpeg;base64,', html)) == len(LOST) + len(GAINED)   # flip thumbnails


def test_the_page_says_what_a_person_asks(report_runs, html_report):
    work, _, _, labels, _ = report_runs
    html = html_report[0].read_text()
    for text in ("result_om.json fails the gate against result_bs1.json", "Acc@1 dropped 8.333 points",
                 "95 % interval", "ECE", "Against the reference", "Flipped images", "Worst classes", "Throughput",
                 "Precision check", "fp16-safe", "Provenance", "checkpoint", "m_bs4.om", "--precision_mode=force_fp16",
                 "val_label.txt", "focalinfer 0.1.0"):
        assert text in html, text
    assert f"{sorted(labels)[LOST[0]]}.jpg" in html
    assert "-8.333 (" in html and ">FAIL<" in html


def test_markdown_has_the_same_content_without_pictures(report_runs):
    work, reference, om, labels, _ = report_runs
    out = work / "report.md"
    res = run("report", reference, om, "--out", out, "--format", "md")
    assert res.exit_code == 0, res.output   # no gate given: the report only informs
    md = out.read_text()
    assert md.startswith("# focalinfer report — bench-tiny")
    assert "## Against the reference" in md and "| result_om.json | 24 | 83.33 % | -8.333 (" in md
    assert f"- {sorted(labels)[LOST[0]]}.jpg — label" in md
    assert "data:image" not in md and "<" not in md.replace("<ONNX folder>", "")


def test_a_file_that_is_not_a_result_is_one_line(tmp_path):
    bogus = tmp_path / "x.json"
    bogus.write_text("[]")
    res = run("report", bogus, "--out", tmp_path / "r.html")
    assert res.exit_code == 1 and "not a JSON object" in error_line(res)
    assert not (tmp_path / "r.html").exists()


def test_a_result_json_from_before_these_figures_still_reports(report_runs, tmp_path):
    _, reference, _, _, _ = report_runs
    data = json.loads(reference.read_text())
    new = ("Acc@1_ci95", "Acc@5_ci95", "ci_method", "mean_confidence", "ece", "ece_bins", "calibration_note",
           "calibration_table", "classes_scored", "worst_classes", "precision_mode")
    old = {"summary": {k: v for k, v in data["summary"].items() if k not in new}, "images": data["images"],
           "issues": data["issues"]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    out = tmp_path / "old.md"
    res = run("report", path, "--out", out, "--format", "md")
    assert res.exit_code == 0, res.output
    md = out.read_text()
    lo, hi = data["summary"]["Acc@1_ci95"]
    assert f"| {lo:.2f} – {hi:.2f} |" in md              # the interval, computed from the images
    assert "carry no per-class table" in md


def test_flipped_images_without_their_source_say_so(report_runs, tmp_path):
    work, reference, om, _, _ = report_runs
    moved = tmp_path / "elsewhere"
    shutil.copytree(work / "images", moved)
    shutil.rmtree(work / "images")
    try:
        out = tmp_path / "r.html"
        run("report", reference, om, "--out", out)
        html = out.read_text()
        assert "data:image/jpeg" not in html and html.count("source image not on this machine") == len(LOST + GAINED)
    finally:
        shutil.copytree(moved, work / "images")
