"""`focalinfer compare A B`: per-image agreement of two result directories (A is the reference).

Typical use: A = onnxruntime fp32 outputs, B = the OM's outputs from the NPU; a low cosine or a
top-1 flip on some images is how an ATC precision problem (fp16 overflow in a LayerNorm or
softmax) shows up. Cosine, error and parity-bound aggregates come from focalinfer.metrics.logits (the
rule export uses); the per-image rows use the same definitions, vectorised here. Top-1/top-5
agreement ranks ties as torch.topk does, like eval (see focalinfer.metrics.topk).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from focalinfer.defaults import COMPARE_MIN_COSINE

from focalinfer.errors import FocalinferError
from focalinfer.metrics.logits import compare_logits, row_metrics
from focalinfer.metrics.paired import Gate
from focalinfer.metrics.topk import topk_indices
from focalinfer.postprocess.labels import read_labels
from focalinfer.runlock import refuse_if_written
from focalinfer.postprocess.model_facts import results_facts
from focalinfer.postprocess.outputs import Logits, read_result_logits, scan_results
from focalinfer.postprocess.paired import gate_failure, paired_block, paired_lines
from focalinfer.postprocess.scoring import BACKGROUND_CLASSES, TOPK, check_label_range

ROW_FIELDS = ("cosine", "max_abs_err", "mean_rel_err", "top1_agree", "top5_agree", "top1_a", "top1_b")


@dataclass
class CompareReport:
    reference_dir: str
    candidate_dir: str
    summary: dict
    images: dict[str, dict]            # stem -> per-image row
    worst: list[str]                   # stems, worst first
    only_in_reference: list[str] = field(default_factory=list)
    only_in_candidate: list[str] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)   # stem -> "A: reason" / "B: reason"
    accuracy: dict | None = None       # with --labels: flips, ΔAcc@1/ΔAcc@5, p-values, the gate

    @property
    def passed(self) -> bool:
        return self.summary["passed"]

    def as_dict(self) -> dict:
        return {
            "reference": self.reference_dir,
            "candidate": self.candidate_dir,
            "summary": self.summary,
            "worst": [{"image": stem, **self.images[stem]} for stem in self.worst],
            "only_in_reference": self.only_in_reference,
            "only_in_candidate": self.only_in_candidate,
            "invalid": self.invalid,
            "accuracy": self.accuracy,
            "images": self.images,
        }

    def format_table(self) -> str:
        s = self.summary
        lines = [
            f"compare: {self.candidate_dir} (B) against {self.reference_dir} (A, reference)",
            f"  images compared {s['count']}  only in A {s['only_in_reference']}  only in B {s['only_in_candidate']}  "
            f"invalid {s['invalid']}",
            f"  cosine min {s['cosine_min']:.6f} mean {s['cosine_mean']:.6f}   max abs err {s['max_abs_diff']:.6g}   "
            f"mean rel err {s['mean_rel_err']:.3g}",
            f"  top-1 agreement {100 * s['top1_agreement']:.2f} %   top-5 agreement {100 * s['top5_agreement']:.2f} %   "
            f"within fp32 parity bound ({s['bound']:.3g}): {'yes' if s['within_bound'] else 'no'}",
        ]
        if self.worst:
            width = max(12, *(len(stem) for stem in self.worst))
            lines.append(f"  worst {len(self.worst)} by cosine:")
            lines.append(f"  {'image':<{width}}  {'cosine':>10}  {'max abs':>10}  {'mean rel':>9}  top-1 A→B   top-5")
            for stem in self.worst:
                r = self.images[stem]
                top1 = f"{r['top1_a']}→{r['top1_b']}" if not r["top1_agree"] else f"{r['top1_a']} same"
                lines.append(
                    f"  {stem:<{width}}  {r['cosine']:>10.6f}  {r['max_abs_err']:>10.4g}  {r['mean_rel_err']:>9.3g}  "
                    f"{top1:<11} {'same' if r['top5_agree'] else 'differs'}"
                )
        if self.accuracy:
            lines += [line for line in paired_lines(self.accuracy, "A", "B") if not line.startswith("  gate")]
        verdict = "PASS" if s["passed"] else "FAIL"
        lines.append(f"  {verdict}: {s['verdict']}")
        return "\n".join(lines)


def _invalid(logits: Logits, side: str) -> dict[str, str]:
    return {logits.stems[r]: f"{side}: {logits.problem(r)}" for r in np.flatnonzero(~logits.valid)}


def _model_classes(reference_dir, candidate_dir) -> tuple[int | None, str | None]:
    """The class count the infer records beside the two folders give (they must agree)."""
    known = [(facts.num_classes, facts.classes_source, side)
             for facts, side in ((results_facts(reference_dir), "A"), (results_facts(candidate_dir), "B"))
             if facts.num_classes]
    if len(known) == 2 and known[0][0] != known[1][0]:
        raise FocalinferError(
            f"{reference_dir} holds outputs of a {known[0][0]}-class model ({known[0][1]}) and {candidate_dir} of a "
            f"{known[1][0]}-class one ({known[1][1]}); compare runs of the same model"
        )
    return (known[0][0], known[0][1]) if known else (None, None)


def _missing_verdict(only_ref: list[str], only_cand: list[str], allow_missing: bool) -> str | None:
    if not (only_ref or only_cand):
        return None
    parts = [f"{len(names)} images only in {side} (first: {names[0]})"
             for names, side in ((only_ref, "A"), (only_cand, "B")) if names]
    return ", ".join(parts) + (" (allowed by --allow-missing)" if allow_missing else " (--allow-missing accepts this)")


def _labelled_rows(stems: list[str], values, labels, offset: int) -> dict[str, dict]:
    """result.json-style rows {label, top5, hit@1, hit@5} of the labelled ``stems``, keyed by image name."""
    top = topk_indices(values, TOPK) - offset
    rows = {}
    for stem, top5 in zip(stems, top.tolist()):
        label = labels.labels.get(stem)
        if label is not None:
            rows[label.image] = {"label": label.target, "top5": top5, "hit@1": top5[0] == label.target,
                                 "hit@5": label.target in top5}
    return rows


def _accuracy(stems, ref_values, cand_values, labels_file, num_classes: int, gate: Gate) -> dict:
    labels = read_labels(labels_file)
    check_label_range(labels, num_classes, None)
    labels.require_clean(False)
    offset = 1 if num_classes == BACKGROUND_CLASSES else 0
    rows_a = _labelled_rows(stems, ref_values, labels, offset)
    if not rows_a:
        raise FocalinferError(f"{labels_file}: no compared image is labelled (e.g. {stems[0]}); outputs are joined to "
                              "labels by the image name up to its first '.'")
    return paired_block(rows_a, _labelled_rows(stems, cand_values, labels, offset), gate)


def compare_results(
    reference_dir: str | os.PathLike, candidate_dir: str | os.PathLike, *, worst: int = 10,
    min_cosine: float = COMPARE_MIN_COSINE, reference_outfmt: str | None = None,
    candidate_outfmt: str | None = None, reference_dtype: str = "float32", candidate_dtype: str = "float32",
    allow_missing: bool = False, workers: int | None = None, labels_file: str | os.PathLike | None = None,
    gate: Gate = Gate(),
) -> CompareReport:
    """Join two result directories by output name and compare their logits image by image.

    Images present on one side only fail the comparison unless ``allow_missing``. The class
    count comes from the folders' infer records when they have them, else from A's outputs. A folder
    another live run is still writing (its lock is held) is refused. With ``labels_file``: the
    accuracy of each side on the compared images, the flips, the paired deltas, and ``gate``
    (which then decides too).
    """
    for folder in (reference_dir, candidate_dir):
        refuse_if_written(folder, "comparing it")
    ref_dir = scan_results(reference_dir, reference_outfmt)
    cand_dir = scan_results(candidate_dir, candidate_outfmt)
    common = sorted(set(ref_dir.outputs) & set(cand_dir.outputs))
    if not common:
        raise FocalinferError(
            f"{reference_dir} and {candidate_dir} share no output names (e.g. {next(iter(ref_dir.outputs))} vs "
            f"{next(iter(cand_dir.outputs))}); compare runs over the same input files"
        )
    classes, source = _model_classes(reference_dir, candidate_dir)
    ref = read_result_logits(ref_dir, common, classes, workers, output_dtype=reference_dtype, classes_source=source)
    cand = read_result_logits(cand_dir, common, ref.num_classes, workers, output_dtype=candidate_dtype,
                              classes_source=source or f"the outputs of {reference_dir}")
    invalid = {**_invalid(cand, "B"), **_invalid(ref, "A")}
    both = ref.valid & cand.valid
    if not both.any():
        first = next(iter(invalid.items()))
        raise FocalinferError(f"no image has a valid output in both directories (first: {first[0]}: {first[1]}); "
                              "nothing to compare")
    stems = [common[i] for i in np.flatnonzero(both)]
    ref_values, cand_values = ref.values[both], cand.values[both]

    aggregate = compare_logits(ref_values, cand_values).as_dict()
    columns = row_metrics(ref_values, cand_values)
    lists = {name: column.tolist() for name, column in columns.items()}
    images = {stem: {name: lists[name][i] for name in ROW_FIELDS} for i, stem in enumerate(stems)}
    order = np.lexsort((-columns["max_abs_err"], columns["cosine"]))
    worst_stems = [stems[i] for i in order[:max(0, worst)]]

    accuracy = (_accuracy(stems, ref_values, cand_values, labels_file, ref.num_classes, gate)
                if labels_file else None)
    only_ref = sorted(set(ref_dir.outputs) - set(cand_dir.outputs))
    only_cand = sorted(set(cand_dir.outputs) - set(ref_dir.outputs))
    low = int((columns["cosine"] < min_cosine).sum())
    one_side = _missing_verdict(only_ref, only_cand, allow_missing)
    gate_line = gate_failure(accuracy)
    passed = low == 0 and not invalid and (allow_missing or not one_side) and not gate_line
    failures = [f"{low} images below cosine {min_cosine}" if low else None,
                f"{len(invalid)} invalid outputs" if invalid else None,
                one_side if one_side and not allow_missing else None, gate_line]
    verdict = (
        f"every compared image has cosine ≥ {min_cosine}" + (f"; {one_side}" if one_side else "")
        + (f"; {accuracy['gate']['line']}" if accuracy and accuracy["gate"] else "") if passed else
        ", ".join(f for f in failures if f)
    )
    summary = {
        **aggregate,
        "count": len(stems),
        "only_in_reference": len(only_ref),
        "only_in_candidate": len(only_cand),
        "invalid": len(invalid),
        "min_cosine": min_cosine,
        "below_min_cosine": low,
        "passed": passed,
        "verdict": verdict,
        "num_classes": ref.num_classes,
        "reference_outfmt": ref_dir.outfmt,
        "candidate_outfmt": cand_dir.outfmt,
        "topk_rule": "torch.topk on CPU, as eval",
    }
    return CompareReport(str(ref_dir.path), str(cand_dir.path), summary, images, worst_stems,
                         only_ref, only_cand, invalid, accuracy)
