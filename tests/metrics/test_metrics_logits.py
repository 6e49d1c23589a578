import numpy as np
import pytest
import torch

from focalinfer.metrics.logits import LogitComparison, compare_logits, parity_bound
from focalinfer.metrics.topk import topk_indices


def test_parity_bound_has_floor_of_one():
    assert parity_bound(np.array([[0.5, -0.2]])) == pytest.approx(1e-4)
    assert parity_bound(np.array([[3.0, -20.0]])) == pytest.approx(20.0 * 1e-4)


def test_identical_logits_agree_everywhere():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 1000)).astype(np.float32)
    result = compare_logits(logits, logits.copy())
    assert result.count == 6
    assert result.max_abs_diff == 0.0
    assert result.within_bound
    assert result.cosine_min == pytest.approx(1.0)
    assert result.top1_agreement == 1.0 and result.top5_agreement == 1.0


def test_difference_figures_are_computed_per_element():
    ref = np.array([[1.0, 2.0, 4.0], [0.0, -1.0, 0.5]])
    cand = ref + np.array([[0.0, 0.0, 0.4], [0.1, 0.0, 0.0]])
    result = compare_logits(ref, cand)
    assert result.max_abs_diff == pytest.approx(0.4)
    assert result.mean_abs_diff == pytest.approx(0.5 / 6)
    # rel err: 0.4/4 for the first row, 0.1/max(1,0) for the second
    assert result.mean_rel_err == pytest.approx((0.1 + 0.1) / 6)
    assert result.bound == pytest.approx(4e-4)
    assert not result.within_bound


def test_within_bound_edge():
    ref = np.array([[10.0, 0.0]])
    assert compare_logits(ref, ref + [[0.0, 9e-4]]).within_bound
    assert not compare_logits(ref, ref + [[0.0, 1.1e-3]]).within_bound


def test_cosine_per_row_min_and_mean():
    ref = np.array([[1.0, 0.0], [1.0, 0.0]])
    cand = np.array([[1.0, 0.0], [0.0, 1.0]])
    result = compare_logits(ref, cand)
    assert result.cosine_min == pytest.approx(0.0)
    assert result.cosine_mean == pytest.approx(0.5)


def test_topk_ties_broken_like_torch_topk():
    logits = np.array([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    ours = topk_indices(logits, 5)[0]
    theirs = torch.topk(torch.from_numpy(logits), 5, dim=1).indices[0].numpy()
    assert ours.tolist() == theirs.tolist()


def test_tied_agreement_follows_torch_order():
    """Equal top logits: the run whose torch.topk puts the same class first agrees on top-1."""
    ref = np.array([[0.0, 2.0, 2.0, 1.0, 0.5, 0.2]])
    first = torch.topk(torch.from_numpy(ref), 1).indices.item()
    cand = ref.copy()
    cand[0, first] += 1e-3  # the class torch already reports first, now strictly first
    assert compare_logits(ref, cand).top1_agreement == 1.0


def test_top1_and_top5_agreement_fractions():
    ref = np.tile(np.arange(10, dtype=np.float64), (4, 1))  # top1 = 9, top5 = {5..9}
    cand = ref.copy()
    cand[0, 0] = 100.0  # row 0: top1 and top5 change
    cand[1, 4] = 5.5  # row 1: top5 set changes (4 in, 5 out), top1 same
    cand[2, [8, 9]] = cand[2, [9, 8]]  # row 2: top1 changes, top5 set the same
    result = compare_logits(ref, cand)
    assert result.top1_agreement == pytest.approx(2 / 4)
    assert result.top5_agreement == pytest.approx(2 / 4)


def test_nan_candidate_is_out_of_bound():
    ref = np.ones((1, 4))
    cand = ref.copy()
    cand[0, 1] = np.nan
    assert not compare_logits(ref, cand).within_bound


def test_shape_mismatch_and_bad_rank_raise():
    with pytest.raises(ValueError):
        compare_logits(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        compare_logits(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)))


def test_as_dict_round_trip():
    result = compare_logits(np.eye(3), np.eye(3))
    data = result.as_dict()
    assert set(data) == {
        "count", "max_abs_diff", "mean_abs_diff", "mean_rel_err", "cosine_min", "cosine_mean",
        "top1_agreement", "top5_agreement", "bound", "within_bound",
    }
    assert LogitComparison(**data) == result
