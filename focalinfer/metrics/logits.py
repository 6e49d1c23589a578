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
    """Per-row cosine; two zero rows are identical (1), one zero row shares no direction (0)."""
    norm_a = np.linalg.norm(a, axis=1)
    norm_b = np.linalg.norm(b, axis=1)
    norms = norm_a * norm_b
    dots = np.einsum("ij,ij->i", a, b)
    cosine = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return np.where((norm_a == 0) & (norm_b == 0), 1.0, cosine)


def row_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row columns: cosine, max abs error, mean relative error, top-1/top-5 agreement, top-1s."""
    ref = _as_rows("reference", reference)
    cand = _as_rows("candidate", candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {ref.shape} vs candidate {cand.shape}")
    abs_err = np.abs(ref - cand)
    # ranked as torch.topk ranks them, ties included, so agreement means "eval would report the same"
    top_ref, top_cand = topk_indices(ref, 5), topk_indices(cand, 5)
    return {
        "cosine": row_cosine(ref, cand),
        "max_abs_err": abs_err.max(axis=1) if ref.shape[1] else np.zeros(len(ref)),
        # Same floor of 1 as the bound, so near-zero logits do not blow it up.
        "mean_rel_err": (abs_err / np.maximum(1.0, np.abs(ref))).mean(axis=1),
        "top1_agree": top_ref[:, 0] == top_cand[:, 0],
        "top5_agree": (np.sort(top_ref, axis=1) == np.sort(top_cand, axis=1)).all(axis=1),
        "top1_a": top_ref[:, 0],
        "top1_b": top_cand[:, 0],
    }


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> LogitComparison:
    """Compare ``candidate`` logits against ``reference`` logits, row by row, over (N, C) arrays."""
    ref = _as_rows("reference", reference)
    cand = _as_rows("candidate", candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {ref.shape} vs candidate {cand.shape}")
    bound = parity_bound(ref)
    if ref.shape[0] == 0:
        return LogitComparison(0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, bound, True)
    rows = row_metrics(ref, cand)
    max_abs_diff = float(rows["max_abs_err"].max())
    return LogitComparison(
        count=int(ref.shape[0]),
        max_abs_diff=max_abs_diff,
        mean_abs_diff=float(np.abs(ref - cand).mean()),
        mean_rel_err=float(rows["mean_rel_err"].mean()),
        cosine_min=float(rows["cosine"].min()),
        cosine_mean=float(rows["cosine"].mean()),
        top1_agreement=float(rows["top1_agree"].mean()),
        top5_agreement=float(rows["top5_agree"].mean()),
        bound=bound,
        within_bound=bool(np.isfinite(max_abs_diff) and max_abs_diff <= bound),
    )
