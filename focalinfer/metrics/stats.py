"""The statistics behind an accuracy figure: its interval, a paired test, calibration.

Plain numpy and ``math`` (no scipy): the tests check each formula against an independent
reference (scipy's binomtest, statsmodels' Wilson interval, published values, brute force).

- ``wilson_interval``: the Wilson score interval of a proportion (Wilson 1927).
- ``mcnemar_exact_p``: McNemar's exact test, the two-sided binomial test of the discordant pairs.
- ``newcombe_paired_interval``: the interval of a difference of two paired proportions, Newcombe's
  method 10 (Stat. Med. 17:2635, 1998: Wilson limits combined with the pairs' correlation).
- ``top1_confidence`` and ``expected_calibration_error`` (Guo et al. 2017, equal-width bins).
"""

from __future__ import annotations

import math

import numpy as np

# Two-sided 95 %: the standard normal's 0.975 quantile.
Z95 = 1.959963984540054
ECE_BINS = 15


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` as proportions in [0, 1] ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The limits at 0 and n are exactly 0 and 1; computed, they can miss by a rounding error.
    lower = 0.0 if successes <= 0 else max(0.0, centre - half)
    upper = 1.0 if successes >= n else min(1.0, centre + half)
    return lower, upper


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: P(X <= min(b, c)) doubled, X ~ Binomial(b + c, 1/2), capped at 1.

    Summed from the largest term down in log space, so 50,000 discordant pairs stay exact to
    float precision.
    """
    n, k = b + c, min(b, c)
    if n == 0 or 2 * k == n:
        return 1.0
    log_half_n = n * math.log(2.0)
    term = math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - log_half_n)
    total, i = 0.0, k
    while i >= 0 and term > 0.0:
        total += term
        if term < total * 1e-17:
            break
        term *= i / (n - i + 1)   # C(n, i-1) / C(n, i)
        i -= 1
    return min(1.0, 2.0 * total)


def newcombe_paired_interval(both: int, a_only: int, b_only: int, neither: int,
                             z: float = Z95) -> tuple[float, float]:
    """Interval of p_B − p_A for paired outcomes (Newcombe 1998, method 10).

    ``a_only``: right in A and wrong in B; ``b_only`` the reverse. The correlation term uses
    Newcombe's continuity-corrected phi, as Fagerland, Lydersen & Laake (2017) implement it.
    """
    n = both + a_only + b_only + neither
    if n == 0:
        return -1.0, 1.0
    row_a, row_not_a = both + a_only, b_only + neither        # A right / A wrong
    col_b, col_not_b = both + b_only, a_only + neither        # B right / B wrong
    p_a, p_b = row_a / n, col_b / n
    l_a, u_a = wilson_interval(row_a, n, z)
    l_b, u_b = wilson_interval(col_b, n, z)
    psi = 0.0
    if min(row_a, row_not_a, col_b, col_not_b) > 0:
        cross = both * neither - a_only * b_only
        if cross > n / 2:
            cross -= n / 2
        elif cross >= 0:
            cross = 0.0
        psi = cross / math.sqrt(row_a * row_not_a * col_b * col_not_b)
    diff = p_b - p_a
    lower = diff - math.sqrt(max(0.0, (p_b - l_b) ** 2 + (u_a - p_a) ** 2 - 2 * psi * (p_b - l_b) * (u_a - p_a)))
    upper = diff + math.sqrt(max(0.0, (u_b - p_b) ** 2 + (p_a - l_a) ** 2 - 2 * psi * (u_b - p_b) * (p_a - l_a)))
    return max(-1.0, lower), min(1.0, upper)


def looks_like_probabilities(values: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Every row is in [0, 1] and sums to 1: a softmax was already applied (the outputs are not logits)."""
    if values.size == 0:
        return False
    return bool(values.min() >= 0.0 and values.max() <= 1.0
                and np.all(np.abs(values.sum(axis=1, dtype=np.float64) - 1.0) <= tolerance))


def top1_confidence(logits: np.ndarray, rows: np.ndarray | None = None, block: int = 2048) -> np.ndarray:
    """The largest softmax probability of each row (1 / Σ exp(x − max x)), in float64, by blocks."""
    rows = np.arange(len(logits)) if rows is None else np.asarray(rows)
    out = np.empty(len(rows), np.float64)
    for start in range(0, len(rows), block):
        x = logits[rows[start:start + block]].astype(np.float64)
        x -= x.max(axis=1, keepdims=True)
        out[start:start + block] = 1.0 / np.exp(x).sum(axis=1)
    return out


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = ECE_BINS) -> tuple[float, list[dict]]:
    """ECE = Σ_bins |B|/n · |accuracy(B) − mean confidence(B)|, bins (i/bins, (i+1)/bins].

    Returns the ECE (a fraction) and the non-empty bins: {lower, upper, count, accuracy, confidence}.
    """
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, bool)
    n = len(confidence)
    if n == 0:
        return 0.0, []
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    hit_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    table, ece = [], 0.0
    for i in np.flatnonzero(counts):
        acc, conf = hit_sum[i] / counts[i], conf_sum[i] / counts[i]
        ece += counts[i] / n * abs(acc - conf)
        table.append({"lower": i / bins, "upper": (i + 1) / bins, "count": int(counts[i]),
                      "accuracy": float(acc), "confidence": float(conf)})
    return float(ece), table
