"""Top-1/Top-5 of a result directory against val_label.txt, joined by name, into result.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from focalinfer.errors import FocalinferError
from focalinfer.postprocess.labels import LabelSet, read_labels
from focalinfer.postprocess.outputs import Logits, ResultDir, read_result_logits, scan_results
from focalinfer.metrics.topk import topk_indices
from focalinfer.util import write_bytes_atomic

TOPK = 5
# TensorFlow-origin ImageNet models have a background class 0; ModelZoo's scorer then adds 1 to
# every label. Their logits have this many classes.
BACKGROUND_CLASSES = 1001


@dataclass
class EvalResult:
    summary: dict
    images: dict[str, dict]
    issues: dict
    warnings: list[str] = field(default_factory=list)

    @property
    def incomplete(self) -> int:
        """Labelled images without a usable output (missing or invalid)."""
        return self.summary["missing"] + self.summary["invalid"]

    def summary_line(self, written_to: str | os.PathLike | None = None) -> str:
        s = self.summary
        run = ", ".join(
            part for part in (
                s["model"], s["backend"],
                f"bs {s['batch_size']}" if s["batch_size"] else None,
                f"{s['throughput_fps']:.2f} fps" if s["throughput_fps"] else None,
            ) if part
        )
        line = (
            f"Acc@1: {s['Acc@1']:.3f}  Acc@5: {s['Acc@5']:.3f}  ({s['count']} images; missing {s['missing']}, "
            f"extra {s['extra']}, invalid {s['invalid']}{'; ' + run if run else ''})"
        )
        return f"{line} -> {written_to}" if written_to else line

    def as_dict(self) -> dict:
        return {"summary": self.summary, "images": self.images, "issues": self.issues}


def _label_targets(labels: LabelSet, stems: list[str], classes: int) -> tuple[np.ndarray, int]:
    """Targets in the logits' index space: +1 for 1001-class (background-first) outputs."""
    offset = 1 if classes == BACKGROUND_CLASSES else 0
    targets = np.fromiter((labels.labels[s].target for s in stems), np.int64, len(stems))
    return targets + offset, offset


def _drop_out_of_range(labels: LabelSet, classes: int) -> None:
    """Labels naming a class the outputs do not have are malformed lines, not misses."""
    label_space = classes - 1 if classes == BACKGROUND_CLASSES else classes
    for stem in [s for s, lab in labels.labels.items() if lab.target >= label_space]:
        lab = labels.labels.pop(stem)
        labels.malformed.append({
            "line": lab.line, "text": f"{lab.image} {lab.target}",
            "reason": f"class index {lab.target} is outside 0–{label_space - 1} (outputs have {classes} classes)",
        })


def _name_hint(labels: LabelSet, result: ResultDir) -> str:
    label_example = next(iter(labels.labels), None)
    output_example = next(iter(result.outputs), None)
    return (
        f"label names (e.g. {label_example!r}) and output names (e.g. {output_example!r}_0) do not match; "
        "outputs are joined to labels by the image name up to its first '.'"
    )


def _warnings(labels: LabelSet, result: ResultDir, logits: Logits, extra: list[str]) -> list[str]:
    notes = list(result.notes)
    if labels.malformed:
        first = labels.malformed[0]
        notes.append(f"{labels.path}: {len(labels.malformed)} malformed label lines skipped "
                     f"(first: line {first['line']}: {first['reason']})")
    if labels.duplicates:
        first = labels.duplicates[0]
        notes.append(f"{labels.path}: {len(labels.duplicates)} duplicate label lines with the same class ignored "
                     f"(first: line {first['line']} repeats line {first['first_line']})")
    if logits.appended:
        notes.append(f"{len(logits.appended)} TXT outputs hold more than one line (ais_infer before Nov 2022 "
                     f"appended on reruns, e.g. {logits.appended[0]}_0.txt); the first line of each was used")
    if extra:
        notes.append(f"{len(extra)} outputs have no label (e.g. {extra[0]}) and were not scored")
    if result.other_outputs:
        notes.append(f"{result.other_outputs} files of output index > 0 ignored (only output 0 holds the logits)")
    return notes


def score_results(
    results_dir: str | os.PathLike, labels_file: str | os.PathLike, *, outfmt: str | None = None,
    num_classes: int | None = None, model: str | None = None, backend: str | None = None,
    batch_size: int | None = None, throughput: float | None = None, workers: int | None = None,
) -> EvalResult:
    """Score every labelled image's output 0; the metadata arguments override the run summary."""
    labels = read_labels(labels_file)
    result = scan_results(results_dir, outfmt)
    scored = [s for s in labels.labels if s in result.outputs]
    if not scored:
        raise FocalinferError(f"{labels_file} vs {results_dir}: no labelled image has an output; "
                              f"{_name_hint(labels, result)}")
    logits = read_result_logits(result, scored, num_classes, workers)
    _drop_out_of_range(labels, logits.num_classes)
    keep = np.fromiter((s in labels.labels for s in scored), bool, len(scored))
    extra = [s for s in result.outputs if s not in labels.labels]
    missing = [lab.image for s, lab in labels.labels.items() if s not in result.outputs]

    rows = np.flatnonzero(logits.valid & keep)
    count = len(rows)
    if count == 0:
        first = int(np.flatnonzero(keep)[0]) if keep.any() else 0
        raise FocalinferError(f"{results_dir}: none of the {int(keep.sum())} labelled outputs is valid "
                              f"(first: {scored[first]}: {logits.problem(first)}); nothing to score")
    targets, offset = _label_targets(labels, [scored[r] for r in rows], logits.num_classes)
    top = topk_indices(logits.values, TOPK, rows=rows)
    hit1 = top[:, 0] == targets
    hit5 = (top == targets[:, None]).any(axis=1)

    top_labels = (top - offset).tolist()
    images = {}
    for i, row in enumerate(rows.tolist()):
        lab = labels.labels[scored[row]]
        images[lab.image] = {"label": lab.target, "top5": top_labels[i], "hit@1": bool(hit1[i]), "hit@5": bool(hit5[i])}
    invalid = {labels.labels[scored[r]].image: logits.problem(r) for r in np.flatnonzero(keep & ~logits.valid)}

    meta = result.summary
    if meta and batch_size and meta.batch_size and meta.batch_size != batch_size:
        result.notes.append(f"--batch-size {batch_size} differs from the run summary's {meta.batch_size} "
                            f"({meta.path}); reporting {batch_size}")
    summary = {
        "Acc@1": 100.0 * float(hit1.mean()),
        "Acc@5": 100.0 * float(hit5.mean()),
        "count": count,
        "missing": len(missing),
        "extra": len(extra),
        "invalid": len(invalid),
        "model": model or (Path(meta.model).stem if meta and meta.model else None),
        "backend": backend or (meta.backend if meta else None),
        "batch_size": batch_size or (meta.batch_size if meta else None),
        "throughput_fps": throughput if throughput is not None else (meta.throughput if meta else None),
        "labels_file": str(labels.path),
        "results_dir": str(result.path),
        "labels": len(labels.labels),
        "outfmt": result.outfmt,
        "num_classes": logits.num_classes,
        "label_offset": offset,
        "malformed_labels": len(labels.malformed),
        "duplicate_labels": len(labels.duplicates),
        "appended_txt": len(logits.appended),
        "summary_file": str(meta.path) if meta else None,
        "topk_rule": "torch.topk on CPU (first of the top-5 is the top-1)",
    }
    issues = {
        "missing": missing,
        "invalid": invalid,
        "extra": extra,
        "malformed_labels": labels.malformed,
        "duplicate_labels": labels.duplicates,
        "appended_txt": logits.appended,
    }
    return EvalResult(summary, images, issues, _warnings(labels, result, logits, extra))


def result_json_bytes(result: EvalResult) -> bytes:
    """result.json with one image per line: readable, and ~10× faster than json.dumps(indent=...)."""
    summary = json.dumps(result.summary, indent=2).replace("\n", "\n  ")
    issues = json.dumps(result.issues, indent=None, separators=(", ", ": "))
    encode = json.JSONEncoder(separators=(", ", ": ")).encode
    image_lines = ",\n".join(f"    {encode(name)}: {encode(entry)}" for name, entry in result.images.items())
    body = (
        "{\n"
        f'  "summary": {summary},\n'
        f'  "images": {{\n{image_lines}\n  }},\n'
        f'  "issues": {issues}\n'
        "}\n"
    )
    return body.encode()


def write_result(result: EvalResult, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, result_json_bytes(result))
    return path


def require_complete(result: EvalResult, allow_missing: bool) -> None:
    """Raise when a labelled image has no usable output, unless the user allowed it."""
    if allow_missing or not result.incomplete:
        return
    s = result.summary
    problems = [f"{n} {what}" for n, what in ((s["missing"], "without an output"), (s["invalid"], "with an invalid one"))
                if n]
    first = (result.issues["missing"] or list(result.issues["invalid"]))[0]
    raise FocalinferError(
        f"{s['results_dir']}: labelled images {' and '.join(problems)} (first: {first}); the accuracy covers only "
        f"the {s['count']} others — rerun inference for them, or pass --allow-missing to accept a partial score"
    )
