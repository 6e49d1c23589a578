"""The statistics of focalinfer.metrics.stats against independent references (tests only: scipy,
statsmodels, published values, brute force), on data whose answers are known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from focalinfer.metrics.stats import (
    expected_calibration_error, looks_like_probabilities, mcnemar_exact_p, newcombe_paired_interval,
    top1_confidence, wilson_interval,
)

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the test reference (pip install -e '.[test]')")
proportion = pytest.importorskip("statsmodels.stats.proportion",
                                 reason="statsmodels is the test reference (pip install -e '.[test]')")


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (40_880, 50_000), (7, 13), (1, 48)])
def test_wilson_interval_is_statsmodels_wilson(k, n):
    want = proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx(want, abs=1e-12)


def test_wilson_interval_of_nothing_is_everything():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("n", [1, 3, 24, 48, 1000, 50_000])
def test_wilson_interval_ends_exactly_at_0_and_1(n):
    # Computed, centre − half at 0 hits can come out as +1e-17: the interval would then miss its estimate.
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (1, 0), (6, 16), (16, 6), (5, 5), (12, 13), (0, 30),
                                  (150, 210), (2400, 2600), (24_000, 25_000)])
def test_mcnemar_exact_p_is_scipy_binomtest_on_the_discordant_pairs(b, c):
    want = 1.0 if b + c == 0 else scipy_stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact_p(b, c) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_mcnemar_exact_p_of_the_published_example():
    # Fagerland, Lydersen & Laake (2017), ch. 8, Cavo et al. 2012: 6 and 16 discordant pairs.
    assert mcnemar_exact_p(6, 16) == pytest.approx(0.052479, abs=5e-7)


def test_newcombe_interval_of_the_published_example():
    # Same table, [[59, 6], [16, 80]]: p1 − p2 = −0.0621, 95 % CI −0.1186 to −0.0046 (Newcombe square-and-add).
    # Our Δ is B − A with A the rows: the published p1 − p2 is A − B, so the interval is mirrored.
    lower, upper = newcombe_paired_interval(both=59, a_only=6, b_only=16, neither=80)
    assert (round(-upper, 4), round(-lower, 4)) == (-0.1186, -0.0046)


def test_newcombe_interval_covers_the_true_difference_about_95_percent_of_the_time():
    """Planted paired data with a known Δ: the interval covers it in ~95 % of 2,000 draws."""
    rng = np.random.default_rng(7)
    cells = np.array([0.70, 0.05, 0.08, 0.17])   # both, a_only, b_only, neither: Δ = +0.03
    covered = 0
    draws = 2000
    for counts in rng.multinomial(400, cells, size=draws):
        lower, upper = newcombe_paired_interval(*map(int, counts))
        covered += lower <= 0.03 <= upper
    # Binomial(2000, 0.95) has sd 0.49 %: 93.5–96.5 % is ±3 sd.
    assert 0.935 <= covered / draws <= 0.965


def test_newcombe_interval_contains_the_estimate_and_stays_in_range():
    for both, a_only, b_only, neither in itertools.product((0, 1, 5), (0, 2), (0, 3), (0, 4)):
        n = both + a_only + b_only + neither
        if not n:
            continue
        lower, upper = newcombe_paired_interval(both, a_only, b_only, neither)
        delta = (b_only - a_only) / n
        assert -1.0 <= lower <= delta <= upper <= 1.0


def brute_force_ece(confidence, correct, bins=15):
    """One image at a time: find its bin by scanning the edges."""
    total, n = 0.0, len(confidence)
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i in range(n) if (lo < confidence[i] <= hi) or (b == 0 and confidence[i] == 0.0)]
        if members:
            acc = sum(bool(correct[i]) for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


def test_ece_is_the_brute_force_sum_over_15_bins():
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.05, 1.0, 500)
    confidence[:15] = np.arange(1, 16) / 15   # exactly on the edges: belongs to the bin below
    correct = rng.uniform(size=500) < confidence ** 2
    ece, table = expected_calibration_error(confidence, correct)
    assert ece == pytest.approx(brute_force_ece(confidence, correct), abs=1e-12)
    assert sum(row["count"] for row in table) == 500 and len(table) == 15


def test_ece_of_a_planted_case():
    # 10 images at confidence 0.9, 6 right: ECE = |0.6 − 0.9| = 0.3; perfectly calibrated: 0.
    assert expected_calibration_error(np.full(10, 0.9), np.arange(10) < 6)[0] == pytest.approx(0.3)
    assert expected_calibration_error(np.full(10, 0.9), np.arange(10) < 9)[0] == pytest.approx(0.0, abs=1e-12)


def test_top1_confidence_is_the_largest_softmax_probability():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 30, (40, 1000)).astype(np.float32)   # large logits: no overflow
    x = logits.astype(np.float64)
    softmax = np.exp(x - x.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    assert np.allclose(top1_confidence(logits, block=7), softmax.max(axis=1), rtol=1e-12)
    assert np.allclose(top1_confidence(logits, rows=np.array([3, 5])), softmax.max(axis=1)[[3, 5]], rtol=1e-12)


def test_probabilities_are_told_from_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(8, 10))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert looks_like_probabilities(probs.astype(np.float32))
    assert not looks_like_probabilities(logits)
    assert not looks_like_probabilities(np.full((3, 10), 0.05))   # in [0, 1] but rows sum to 0.5
