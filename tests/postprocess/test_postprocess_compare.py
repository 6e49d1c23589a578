"""`focalinfer compare A B`: per-image agreement of two result folders joined by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from focalinfer.cli import cli
from focalinfer.metrics.logits import compare_logits
from focalinfer.errors import FocalinferError
from focalinfer.layout import write_sample as write_output
from focalinfer.postprocess.compare import compare_results

CLASSES = 1000


def names(count: int) -> list[str]:
    return [f"img_{i:04d}" for i in range(count)]


def write_results(directory, stems, logits, outfmt="NPY"):
    directory.mkdir(parents=True, exist_ok=True)
    for stem, row in zip(stems, logits):
        write_output(directory, stem, row, outfmt)
    return directory


@pytest.fixture
def pair(tmp_path):
    """A reference run (fp32) and a candidate that went through fp16, as an OM without keep_dtype would."""
    rng = np.random.default_rng(0)
    stems = names(30)
    reference = rng.normal(0, 3, size=(30, CLASSES)).astype(np.float32)
    candidate = reference.astype(np.float16).astype(np.float32)
    a = write_results(tmp_path / "onnx", stems, reference)
    b = write_results(tmp_path / "om", stems, candidate)
    return stems, reference, candidate, a, b


def slow_rows(reference, candidate):
    """Per-image metrics one row at a time, in float64: the reference for the vectorised table."""
    rows = []
    for r, c in zip(reference.astype(np.float64), candidate.astype(np.float64)):
        diff = np.abs(r - c)
        # The seed's ranking (torch.topk on a (1, C) tensor), which eval and compare share.
        top_r = torch.from_numpy(r).unsqueeze(0).topk(5).indices[0].numpy()
        top_c = torch.from_numpy(c).unsqueeze(0).topk(5).indices[0].numpy()
        rows.append({
            "cosine": float(r @ c / (np.linalg.norm(r) * np.linalg.norm(c))),
            "max_abs_err": float(diff.max()),
            "mean_rel_err": float(np.mean(diff / np.maximum(1.0, np.abs(r)))),
            "top1_agree": bool(top_r[0] == top_c[0]),
            "top5_agree": set(top_r.tolist()) == set(top_c.tolist()),
        })
    return rows


def test_fp16_candidate_passes_and_rows_match_a_slow_reference(pair):
    stems, reference, candidate, a, b = pair
    report = compare_results(a, b, worst=5)
    assert report.passed and report.summary["count"] == 30
    aggregate = compare_logits(reference, candidate).as_dict()
    for key in ("count", "max_abs_diff", "mean_abs_diff", "mean_rel_err", "cosine_min", "cosine_mean", "bound",
                "within_bound"):
        assert report.summary[key] == pytest.approx(aggregate[key]), key
    rows = slow_rows(reference, candidate)
    assert report.summary["top1_agreement"] == pytest.approx(np.mean([r["top1_agree"] for r in rows]))
    assert report.summary["top5_agreement"] == pytest.approx(np.mean([r["top5_agree"] for r in rows]))
    assert 0.9999 < report.summary["cosine_min"] < 1.0  # fp16 rounding is visible, and small
    for stem, expected in zip(stems, rows):
        row = report.images[stem]
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (stem, key)
    cosines = [report.images[s]["cosine"] for s in report.worst]
    assert cosines == sorted(cosines) and len(report.worst) == 5
    assert min(report.images[s]["cosine"] for s in stems) == cosines[0]


def test_identical_runs_agree_fully(pair, tmp_path):
    stems, reference, _, a, _ = pair
    same = write_results(tmp_path / "again", stems, reference, "TXT")  # another format, same values
    report = compare_results(a, same)
    s = report.summary
    assert s["top1_agreement"] == 1.0 and s["top5_agreement"] == 1.0 and s["within_bound"]
    assert s["cosine_min"] == pytest.approx(1.0) and s["max_abs_diff"] < 2e-6  # TXT keeps 6 decimals


def test_a_broken_image_fails_the_threshold_and_leads_the_worst_table(pair, tmp_path):
    stems, reference, candidate, a, b = pair
    broken = candidate[7].copy()
    broken[np.argsort(broken)[-5:]] = -20.0  # its top-5 classes collapse: top-1 and top-5 flip
    write_output(b, stems[7], broken, "NPY")
    report = compare_results(a, b, worst=3, min_cosine=0.99)
    assert not report.passed and report.summary["below_min_cosine"] == 1
    assert report.worst[0] == stems[7]
    row = report.images[stems[7]]
    assert row["cosine"] < 0.99 and not row["top1_agree"] and not row["top5_agree"]
    assert report.summary["top1_agreement"] == pytest.approx(29 / 30)
    table = report.format_table()
    assert stems[7] in table and "FAIL" in table and "worst 3" in table

    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(cli, ["compare", str(a), str(b), "--json", str(out), "--worst", "3"])
    assert res.exit_code == 1 and "1 images below cosine 0.99" in res.output and "Traceback" not in res.output
    data = json.loads(out.read_text())
    assert data["worst"][0]["image"] == stems[7] and len(data["images"]) == 30
    assert data["summary"]["passed"] is False
    res = CliRunner().invoke(cli, ["compare", str(a), str(b), "--min-cosine", "0.5"])
    assert res.exit_code == 0, res.output


def test_nan_and_unmatched_outputs_are_reported(pair, tmp_path):
    stems, reference, candidate, a, b = pair
    nan_row = candidate[3].copy()
    nan_row[0] = np.nan
    write_output(b, stems[3], nan_row, "NPY")
    (b / f"{stems[4]}_0.npy").unlink()
    write_output(b, "only_in_b", candidate[0], "NPY")
    report = compare_results(a, b)
    s = report.summary
    assert s["count"] == 28 and s["invalid"] == 1 and s["only_in_reference"] == 1 and s["only_in_candidate"] == 1
    assert report.invalid == {stems[3]: "B: non-finite logit (NaN or inf)"}
    assert report.only_in_reference == [stems[4]] and report.only_in_candidate == ["only_in_b"]
    assert not report.passed  # a NaN output is a failed comparison, whatever the cosines


def test_no_common_names_is_a_one_line_error(pair, tmp_path):
    stems, reference, _, a, _ = pair
    other = write_results(tmp_path / "other", [f"x{i}" for i in range(3)], reference[:3])
    with pytest.raises(FocalinferError, match="share no output names"):
        compare_results(a, other)
    res = CliRunner().invoke(cli, ["compare", str(a), str(tmp_path / "missing")])
    assert res.exit_code != 0 and "Traceback" not in res.output
