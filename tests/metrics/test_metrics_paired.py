"""ΔAcc of two runs on the same images and the MLPerf-style gate, on planted hit patterns."""

from __future__ import annotations

import numpy as np
import pytest

from focalinfer.metrics.paired import Gate, paired_accuracy
from focalinfer.metrics.stats import mcnemar_exact_p, newcombe_paired_interval


def planted(both, a_only, b_only, neither):
    hit_a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    hit_b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return np.array(hit_a), np.array(hit_b)


def test_paired_accuracy_counts_the_flips_both_ways():
    hit_a, hit_b = planted(70, 6, 2, 22)
    got = paired_accuracy(hit_a, hit_b)
    assert (got["count"], got["a_only"], got["b_only"]) == (100, 6, 2)
    assert (got["acc_a"], got["acc_b"], got["delta"]) == (pytest.approx(76.0), pytest.approx(72.0), pytest.approx(-4.0))
    lower, upper = newcombe_paired_interval(70, 6, 2, 22)
    assert got["delta_ci95"] == [pytest.approx(100 * lower), pytest.approx(100 * upper)]
    assert got["p_value"] == mcnemar_exact_p(6, 2)
    assert got["delta_ci95"][0] < -4.0 < got["delta_ci95"][1]


def test_identical_runs_differ_by_nothing():
    hit_a, _ = planted(30, 0, 0, 10)
    got = paired_accuracy(hit_a, hit_a)
    assert got["delta"] == 0.0 and got["p_value"] == 1.0 and got["a_only"] == got["b_only"] == 0


def test_gate_max_drop_says_by_how_much_it_failed():
    result = Gate(max_drop=0.5).check(81.76, 80.56)
    assert not result["passed"]
    assert result["line"] == ("gate FAILED: Acc@1 dropped 1.200 points (81.760 → 80.560), 0.700 more than "
                              "--max-drop 0.5")
    assert Gate(max_drop=1.2).check(81.76, 80.56)["passed"]   # exactly at the limit passes


def test_gate_min_ratio_is_mlperfs_99_percent_of_the_reference():
    failed = Gate(min_ratio=0.99).check(80.0, 79.0)
    assert not failed["passed"] and failed["ratio"] == pytest.approx(0.9875)
    assert "ratio 0.9875 (79.000 / 80.000) is 0.0025 below --min-ratio 0.99" in failed["line"]
    assert Gate(min_ratio=0.99).check(80.0, 79.2)["passed"]   # 0.99 exactly
    both = Gate(max_drop=0.1, min_ratio=0.99).check(80.0, 70.0)
    assert len(both["failures"]) == 2 and both["line"].count(";") == 1


def test_a_better_candidate_always_passes_and_no_gate_is_inactive():
    assert Gate(max_drop=0.0, min_ratio=1.0).check(50.0, 60.0)["passed"]
    assert not Gate().active and Gate(min_ratio=0.99).active
