"""Top-k class indices exactly as ``torch.topk(logits, k)`` on CPU gives them, ties included.

torch's CPU kernel (aten/src/ATen/native/TopKImpl.h) does not break ties by lowest index. For
``k * 64 <= C`` (top-5 of 1000 classes) it runs ``std::partial_sort`` over (value, index) pairs
with the comparator "greater, NaN first" — a heap select, not stable — and otherwise
``std::nth_element`` + ``std::sort``. The seed scored with ``output.topk(5)`` and took the first
column as the top-1, so that is the rule to match (tests/postprocess/test_postprocess_scoring.py shows rows where the
lowest-index rule and torch disagree, and checks this module against torch on heavily tied rows).

Rows whose k+1 largest values are all distinct have one answer whatever the algorithm; numpy
computes those, vectorised. The rare rows with a tie there (or a NaN) go through a replica of
libstdc++'s partial_sort (what torch's Linux builds compile), so torch need not be imported; other
shapes and platforms hand those rows to torch itself.
"""

from __future__ import annotations

import math
import sys

import numpy as np

# Row blocks keep the index arrays small: one 50,000-row argpartition spends more time faulting
# in 400 MB of fresh memory than partitioning.
_BLOCK_ROWS = 2048


def topk_indices(logits: np.ndarray, k: int = 5, rows: np.ndarray | None = None) -> np.ndarray:
    """(N, min(k, C)) int64 class indices per row of an (N, C) array, as torch.topk on CPU orders them.

    ``rows`` selects rows (N = len(rows)) without copying the whole array first.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {logits.shape}")
    rows = np.arange(len(logits)) if rows is None else np.asarray(rows)
    k = min(k, logits.shape[1])
    result = np.zeros((len(rows), k), np.int64)
    if k == 0:
        return result
    for start in range(0, len(rows), _BLOCK_ROWS):
        block = logits[rows[start:start + _BLOCK_ROWS]]
        result[start:start + len(block)] = _block_topk(block, k)
    return result


def _block_topk(block: np.ndarray, k: int) -> np.ndarray:
    indices, values = _numpy_topk(block, min(k + 1, block.shape[1]))
    # Equal neighbours among the k+1 largest make the order (or the k-th member) ambiguous.
    ambiguous = np.any(values[:, 1:] == values[:, :-1], axis=1) | np.isnan(values).any(axis=1)
    result = indices[:, :k]
    if ambiguous.any():
        result[ambiguous] = tied_topk(block[ambiguous], k)
    return result


def _numpy_topk(logits: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of each row's ``take`` largest values, largest first."""
    classes = logits.shape[1]
    if take < classes:
        # Several times faster with the kth counted from the top than argpartition(-logits, take).
        part = np.argpartition(logits, classes - take, axis=1)[:, classes - take:]
    else:
        part = np.broadcast_to(np.arange(classes), logits.shape).copy()
    values = np.take_along_axis(logits, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)


def tied_topk(logits: np.ndarray, k: int) -> np.ndarray:
    """torch's answer for rows with ties: the partial_sort replica where it applies, else torch."""
    if k * 64 <= logits.shape[1] and sys.platform.startswith("linux"):
        return np.array([partial_sort_topk(row, k) for row in logits.astype(np.float64)], np.int64)
    return torch_topk(logits, k)


def torch_topk(logits: np.ndarray, k: int) -> np.ndarray:
    """torch.topk(logits, k, dim=1).indices: the reference."""
    import torch

    with torch.no_grad():
        return torch.topk(torch.from_numpy(np.ascontiguousarray(logits)), k, dim=1).indices.numpy()


# --- libstdc++ std::partial_sort with torch's comparator, over (value, index) pairs -----------


def _before(a: tuple[float, int], b: tuple[float, int]) -> bool:
    """torch's "largest" comparator: NaN first, then greater values; indices never compared."""
    return (math.isnan(a[0]) and not math.isnan(b[0])) or a[0] > b[0]


def _push_heap(heap: list, hole: int, top: int, value: tuple) -> None:
    parent = (hole - 1) // 2
    while hole > top and _before(heap[parent], value):
        heap[hole] = heap[parent]
        hole = parent
        parent = (hole - 1) // 2
    heap[hole] = value


def _adjust_heap(heap: list, hole: int, length: int, value: tuple) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if _before(heap[child], heap[child - 1]):
            child -= 1
        heap[hole] = heap[child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        heap[hole] = heap[child - 1]
        hole = child - 1
    _push_heap(heap, hole, top, value)


def partial_sort_topk(row: np.ndarray, k: int) -> list[int]:
    """The first k indices std::partial_sort(begin, begin + k, end, comp) leaves, as in torch."""
    pairs = list(zip(row.tolist(), range(len(row))))
    heap = pairs[:k]
    # make_heap
    if k >= 2:
        for parent in range((k - 2) // 2, -1, -1):
            _adjust_heap(heap, parent, k, heap[parent])
    # heap select: anything that beats the heap's weakest member replaces it.
    for candidate in pairs[k:]:
        if _before(candidate, heap[0]):
            _adjust_heap(heap, 0, k, candidate)
    # sort_heap: move the heap's top (the weakest kept) behind the shrinking heap, re-heap.
    for last in range(k - 1, 0, -1):
        displaced, heap[last] = heap[last], heap[0]
        _adjust_heap(heap, 0, last, displaced)
    return [index for _, index in heap]
