"""Compare two sets of logits: the parity rule shared by export (PyTorch vs onnxruntime) and eval.

The bound is the one the model specs use: two implementations agree when the largest absolute
difference of their logits is at most ``1e-4 * max(1, max |reference|)`` (fp32).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from focalinfer.metrics.topk import topk_indices

PARITY_REL_TOL = 1e-4


def parity_bound(reference: np.ndarray) -> float:
    """Largest max-abs-diff still counted as parity: 1e-4 × max(1, max |reference|)."""
    reference = np.asarray(reference)
    peak = float(np.max(np.abs(reference))) if reference.size else 0.0
    return PARITY_REL_TOL * max(1.0, peak)


@dataclass
class LogitComparison:
    count: int
    max_abs_diff: float
    mean_abs_diff: float
    mean_rel_err: float
    cosine_min: float
    cosine_mean: float
    top1_agreement: float
    top5_agreement: float
    bound: float
    within_bound: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _as_rows(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{name} logits must be (N, C), got shape {array.shape}")
    return array


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    # Two all-zero rows are identical; one zero row against a non-zero one shares no direction.
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cosine)


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> LogitComparison:
    """Compare ``candidate`` logits against ``reference`` logits, row by row, over (N, C) arrays."""
    ref = _as_rows("reference", reference)
    cand = _as_rows("candidate", candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {ref.shape} vs candidate {cand.shape}")
    count = ref.shape[0]
    bound = parity_bound(ref)
    if count == 0:
        return LogitComparison(0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, bound, True)

    abs_diff = np.abs(ref - cand)
    max_abs_diff = float(abs_diff.max())
    # Relative error per element, with the same floor of 1 as the bound so near-zero logits do not
    # blow it up.
    rel_err = abs_diff / np.maximum(1.0, np.abs(ref))
    cosine = row_cosine(ref, cand)

    # ranked as torch.topk ranks them, ties included, so agreement means "eval would report the same"
    ref_top, cand_top = topk_indices(ref, 5), topk_indices(cand, 5)
    top1 = ref_top[:, 0] == cand_top[:, 0]
    top5 = np.all(np.sort(ref_top, axis=1) == np.sort(cand_top, axis=1), axis=1)

    return LogitComparison(
        count=int(count),
        max_abs_diff=max_abs_diff,
        mean_abs_diff=float(abs_diff.mean()),
        mean_rel_err=float(rel_err.mean()),
        cosine_min=float(cosine.min()),
        cosine_mean=float(cosine.mean()),
        top1_agreement=float(top1.mean()),
        top5_agreement=float(top5.mean()),
        bound=bound,
        within_bound=bool(np.isfinite(max_abs_diff) and max_abs_diff <= bound),
    )
