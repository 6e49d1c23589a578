"""Scoring an emulated run against fp32: the thresholds and the fp16 tie rule for top-1."""

from __future__ import annotations

import numpy as np
import pytest

from focalinfer.precision.evaluate import Figures, Thresholds, score


def logits(*rows):
    return np.array(rows, np.float32)


def test_a_flip_within_one_fp16_step_is_a_tie():
    # fp16's step at 2.9 is 2**-9 = 0.00195: 2.9078 and 2.9067 cannot be ordered by an fp16 output
    reference = logits([2.9078, 2.9067, 1.0], [5.0, 1.0, 0.0])
    candidate = logits([2.90625, 2.9082, 1.0], [5.0, 1.0, 0.0])
    figures = score(reference, candidate)
    assert (figures.top1_flips, figures.top1_ties, figures.top1_agreement) == (1, 1, 100.0)


def test_a_real_flip_counts():
    reference = logits([3.0, 2.9, 1.0], [5.0, 1.0, 0.0])  # 0.1 apart: 51 fp16 steps
    candidate = logits([2.9, 3.0, 1.0], [5.0, 1.0, 0.0])
    figures = score(reference, candidate)
    assert (figures.top1_flips, figures.top1_ties, figures.top1_agreement) == (1, 0, 50.0)
    assert figures.samples == 2 and figures.min_cosine == pytest.approx(np.dot([3, 2.9, 1], [2.9, 3, 1]) / (3 ** 2 + 2.9 ** 2 + 1))


def test_thresholds_and_unusable_runs():
    reference = logits([3.0, 1.0, 0.0], [0.0, 2.0, 1.0])
    good = score(reference, reference * 1.0001)
    assert Thresholds().passed(good) and not Thresholds(min_cosine=1.0 + 1e-12).passed(good)
    broken = score(reference, logits([np.nan, 1.0, 0.0], [0.0, 2.0, 1.0]))
    assert not Thresholds(min_cosine=-1.0, min_top1=0.0).passed(broken)
    assert broken.as_dict()["max_abs"] is None and broken.as_dict()["min_cosine"] is None


def test_reported_figures_do_not_round_across_a_threshold():
    figures = Figures(100.0, 0.99899996, 0.9995, 0.1, 0, 0, 8)
    assert figures.as_dict()["min_cosine"] < 0.999
