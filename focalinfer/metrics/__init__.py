"""Numbers shared by export parity, eval, compare and the benchmark: torch's top-k rule and logit comparison."""

from focalinfer.metrics.logits import (PARITY_REL_TOL, LogitComparison, compare_logits, parity_bound, row_cosine,
                                       row_metrics)
from focalinfer.metrics.topk import topk_indices

__all__ = ["PARITY_REL_TOL", "LogitComparison", "compare_logits", "parity_bound", "row_cosine", "row_metrics",
           "topk_indices"]
