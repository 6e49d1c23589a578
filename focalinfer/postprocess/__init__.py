"""eval stage: read ais_bench result folders, score them against val_label.txt, compare two runs.

- ``score_results(results_dir, labels_file, ...) -> EvalResult`` and ``write_result`` /
  ``require_complete`` (``focalinfer.pipeline.evaluate`` runs inference first, then this).
- ``compare_results(reference_dir, candidate_dir, ...) -> CompareReport`` (with labels: flips, ΔAcc, gate).
- Beside Acc@1: ``accuracy`` (intervals, per-class, calibration), ``paired`` (against a reference
  run), ``real_labels`` (ImageNet-ReaL), ``results_csv`` (eval --csv), ``amend`` (eval's extras).
- Building blocks: ``read_labels``, ``scan_results``, ``read_logits``, ``topk_indices``.
See docs/eval.md.
"""

from focalinfer.postprocess.compare import CompareReport, compare_results
from focalinfer.postprocess.labels import LabelSet, read_labels
from focalinfer.postprocess.outputs import Logits, ResultDir, read_logits, read_run_summary, scan_results
from focalinfer.postprocess.scoring import EvalResult, require_complete, score_results, write_result
from focalinfer.metrics.topk import topk_indices

__all__ = [
    "CompareReport", "EvalResult", "LabelSet", "Logits", "ResultDir", "compare_results",
    "read_labels", "read_logits", "read_run_summary", "require_complete", "scan_results", "score_results",
    "topk_indices", "write_result",
]
