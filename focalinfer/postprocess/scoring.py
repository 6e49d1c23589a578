"""Top-1/Top-5 of a result directory against val_label.txt, joined by name, into result.json."""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from focalinfer import __version__
from focalinfer.errors import FocalinferError
from focalinfer.postprocess.accuracy import accuracy_figures, detail_lines
from focalinfer.postprocess.labels import LabelSet, read_labels
from focalinfer.postprocess.paired import paired_lines
from focalinfer.postprocess.real_labels import real_line
from focalinfer.postprocess.outputs import OUTPUT_DTYPES, Logits, ResultDir, read_result_logits, scan_results
from focalinfer.metrics.topk import topk_indices
from focalinfer.records import AtcRecord
from focalinfer.util import sha256_file, write_bytes_atomic

TOPK = 5
# TensorFlow-origin ImageNet models have a background class 0; ModelZoo's scorer then adds 1 to
# every label. Their logits have this many classes.
BACKGROUND_CLASSES = 1001


# What result.json records about the run, filled by the caller (pipeline.evaluate) from the
# model file, the infer record and the inputs; None where nothing says.
RUN_FIELDS = ("model", "model_file", "model_sha256", "backend", "batch_size", "images_per_call", "input_dir",
              "manifest_sha256", "preset", "outputs_written", "outputs_reused")


@dataclass
class EvalResult:
    summary: dict
    images: dict[str, dict]
    issues: dict
    warnings: list[str] = field(default_factory=list)
    per_class: dict[str, dict] = field(default_factory=dict)   # class -> {images, hit@1, hit@5, Acc@1, Acc@5}
    extra: dict = field(default_factory=dict)                   # more top-level keys (e.g. eval --reference's)

    @property
    def incomplete(self) -> int:
        """Labelled images without a usable output (missing or invalid)."""
        return self.summary["missing"] + self.summary["invalid"]

    def summary_line(self, written_to: str | os.PathLike | None = None) -> str:
        s = self.summary
        run = ", ".join(
            part for part in (
                s["model"] or (Path(s["model_file"]).name if s["model_file"] else None), s["backend"],
                _batch_text(s), speed_text(s),
            ) if part
        )
        line = (
            f"Acc@1: {s['Acc@1']:.3f}  Acc@5: {s['Acc@5']:.3f}  ({s['count']} images; missing {s['missing']}, "
            f"extra {s['extra']}, invalid {s['invalid']}{'; ' + run if run else ''})"
        )
        return f"{line} -> {written_to}" if written_to else line

    def detail_lines(self) -> list[str]:
        """Intervals, calibration, the worst classes, ReaL and the reference, printed above the summary line."""
        lines = detail_lines(self.summary) + [line for line in (real_line(self.summary),) if line]
        if self.extra.get("reference"):
            lines += paired_lines(self.extra["reference"], Path(self.extra["reference"]["file"]).name, "this run")
        return lines

    def as_dict(self) -> dict:
        return {"summary": self.summary, "images": self.images, "issues": self.issues, "per_class": self.per_class,
                **self.extra}


def _batch_text(summary: dict) -> str | None:
    """``bs 16``, and the images per call when a batch ran as several calls."""
    batch, per_call = summary.get("batch_size"), summary.get("images_per_call")
    if not batch:
        return None
    if per_call and per_call != batch:
        return f"bs {batch} run {per_call} image(s) per call"
    return f"bs {batch}"


def speed_text(summary: dict) -> str | None:
    """Real images/s first; ais_bench's own formula (which counts padding slots) beside it, labelled."""
    real, formula = summary.get("images_per_s"), summary.get("ais_bench_throughput")
    parts = []
    if real:
        parts.append(f"{real:.2f} images/s")
    if formula:
        parts.append(f"ais_bench 1000×batch/mean: {formula:.2f} samples/s")
    return " (".join(parts) + ")" if len(parts) == 2 else (parts[0] if parts else None)


def label_space(classes: int) -> int:
    """Label values a ``classes``-wide output covers (1001: background first, labels 0–999)."""
    return classes - 1 if classes == BACKGROUND_CLASSES else classes


def check_label_range(labels: LabelSet, classes: int, source: str | None) -> None:
    """Lines naming a class the model does not have become bad lines (see LabelSet.require_clean)."""
    where = source or "sniffed from the outputs"
    labels.drop_out_of_range(label_space(classes), f"the model's {classes} classes: {where}")


IMAGENET_CLASSES = 1000


def check_sniffed_bin(result: ResultDir, labels: LabelSet, logits: Logits) -> None:
    """BIN files carry neither a dtype nor a shape: a 2,000-byte file is 500 float32 or 1,000 float16
    values. When nothing said the class count, accept the count read from the size only when it is
    ImageNet's (1000 or 1001) or the labels' (highest class + 1) and the other dtype's reading is not;
    otherwise refuse, stating the size rule and the flags that settle it."""
    highest = max(lab.target for lab in labels.labels.values())
    plausible = {IMAGENET_CLASSES, BACKGROUND_CLASSES, highest + 1}
    nbytes = logits.num_classes * np.dtype(logits.output_dtype).itemsize
    readings = {d: nbytes // np.dtype(d).itemsize for d in OUTPUT_DTYPES if not nbytes % np.dtype(d).itemsize}
    others = {d: n for d, n in readings.items() if d != logits.output_dtype}
    if logits.num_classes in plausible and not any(n in plausible for n in others.values()):
        return
    row = int(np.flatnonzero(logits.lengths == logits.num_classes)[0])
    values = " or ".join(f"{n} {d}" for d, n in readings.items())
    settle = [f"--num-classes {logits.num_classes} (or --model NAME) if the model has {logits.num_classes} classes"]
    settle += [f"--output-dtype {d} if it writes {d} ({n} classes)" for d, n in others.items()]
    raise FocalinferError(
        f"{result.outputs[logits.stems[row]]}: {nbytes} bytes are {values} values, and nothing says which (no infer "
        f"record beside {result.path}, no --model or --num-classes; ImageNet has {IMAGENET_CLASSES} classes, the "
        f"labels reach class {highest}); pass {', or '.join(settle)}"
    )


def _label_targets(labels: LabelSet, stems: list[str], classes: int) -> tuple[np.ndarray, int]:
    """Targets in the logits' index space: +1 for 1001-class (background-first) outputs."""
    offset = 1 if classes == BACKGROUND_CLASSES else 0
    targets = np.fromiter((labels.labels[s].target for s in stems), np.int64, len(stems))
    return targets + offset, offset


def _name_hint(labels: LabelSet, result: ResultDir) -> str:
    label_example = next(iter(labels.labels), None)
    output_example = next(iter(result.outputs), None)
    return (
        f"label names (e.g. {label_example!r}) and output names (e.g. {output_example!r}_0) do not match; "
        "outputs are joined to labels by the image name up to its first '.'"
    )


def _sniffed_warning(result: ResultDir, logits: Logits) -> str:
    bin_note = (f"; BIN files carry no dtype and were read as {logits.output_dtype} (--output-dtype)"
                if result.outfmt == "BIN" else "")
    return (
        f"CLASS COUNT NOT CHECKED: nothing says which model made {result.path} (no infer record beside it, no "
        f"model file), so the {logits.num_classes} classes were read from the outputs themselves{bin_note}; pass "
        "--num-classes N or --model NAME to check them against the model"
    )


def _warnings(labels: LabelSet, result: ResultDir, logits: Logits, extra: list[str], sniffed: bool) -> list[str]:
    notes = ([_sniffed_warning(result, logits)] if sniffed else []) + list(result.notes)
    if labels.malformed:
        first = labels.malformed[0]
        notes.append(f"{labels.path}: {len(labels.malformed)} bad label lines not scored (--allow-bad-labels; "
                     f"first: line {first['line']}: {first['reason']})")
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


def _run_facts(run: Mapping | None, meta) -> dict:
    """The run fields of result.json: the caller's, then what the run summary says."""
    facts = {name: (run or {}).get(name) for name in RUN_FIELDS}
    if meta:
        facts["batch_size"] = facts["batch_size"] or meta.batch_size
        facts["backend"] = facts["backend"] or meta.backend
        facts["model_file"] = facts["model_file"] or meta.model
    return facts


def precision_mode(facts: Mapping) -> str | None:
    """How the run computed: an .om's ATC --precision_mode (from its build record), fp32 or bf16 on the CPU."""
    model_file, backend = facts.get("model_file") or "", facts.get("backend") or ""
    if model_file.lower().endswith(".om"):
        record = AtcRecord.for_om(model_file) if Path(model_file).is_file() else None
        return record.precision_mode if record else None
    if not backend or backend.startswith("ais_bench"):
        return None
    return "bf16" if "bf16" in backend else "fp32"


def score_results(
    results_dir: str | os.PathLike, labels_file: str | os.PathLike | LabelSet, *, outfmt: str | None = None,
    num_classes: int | None = None, classes_source: str | None = None, output_dtype: str = "float32",
    allow_bad_labels: bool = False, run: Mapping | None = None, workers: int | None = None,
) -> EvalResult:
    """Score every labelled image's output 0 against its label.

    ``num_classes`` (with ``classes_source``, said in messages) is the model's class count; None
    sniffs it from the outputs and says so loudly. Bad label lines (unparsable, or a class the
    model lacks) are an error unless ``allow_bad_labels``. ``run`` holds the RUN_FIELDS the
    caller knows; they win over the run summary.
    """
    labels = labels_file if isinstance(labels_file, LabelSet) else read_labels(labels_file)
    result = scan_results(results_dir, outfmt)
    scored = [s for s in labels.labels if s in result.outputs]
    if not scored:
        raise FocalinferError(f"{labels.path} vs {results_dir}: no labelled image has an output; "
                              f"{_name_hint(labels, result)}")
    logits = read_result_logits(result, scored, num_classes, workers, output_dtype=output_dtype,
                                classes_source=classes_source)
    if num_classes is None and result.outfmt == "BIN":
        check_sniffed_bin(result, labels, logits)
    if labels.checked_space != label_space(logits.num_classes):  # the caller checked against no or another count
        check_label_range(labels, logits.num_classes, classes_source)
        labels.require_clean(allow_bad_labels)
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
    figures, classes = accuracy_figures(targets - offset, hit1, hit5, logits.values, rows)

    top_labels = (top - offset).tolist()
    images = {}
    for i, row in enumerate(rows.tolist()):
        lab = labels.labels[scored[row]]
        images[lab.image] = {"label": lab.target, "top5": top_labels[i], "hit@1": bool(hit1[i]), "hit@5": bool(hit5[i])}
    invalid = {labels.labels[scored[r]].image: logits.problem(r) for r in np.flatnonzero(keep & ~logits.valid)}

    meta = result.summary
    summary = {
        "Acc@1": 100.0 * float(hit1.mean()),
        "Acc@5": 100.0 * float(hit5.mean()),
        "count": count,
        "missing": len(missing),
        "extra": len(extra),
        "invalid": len(invalid),
        **(facts := _run_facts(run, meta)),
        "precision_mode": precision_mode(facts),
        "images_per_s": meta.images_per_s if meta else None,
        "ais_bench_throughput": meta.throughput if meta else None,
        "labels_file": str(labels.path),
        "labels_sha256": sha256_file(labels.path),
        "results_dir": str(result.path),
        "labels": len(labels.labels),
        "outfmt": result.outfmt,
        "output_dtype": logits.output_dtype if result.outfmt == "BIN" else None,
        "num_classes": logits.num_classes,
        "num_classes_source": classes_source or "sniffed from the outputs (not checked)",
        "label_offset": offset,
        "malformed_labels": len(labels.malformed),
        "duplicate_labels": len(labels.duplicates),
        "appended_txt": len(logits.appended),
        **figures,
        "summary_file": str(meta.path) if meta else None,
        "topk_rule": "torch.topk on CPU (first of the top-5 is the top-1)",
        "tool_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    issues = {
        "missing": missing,
        "invalid": invalid,
        "extra": extra,
        "malformed_labels": labels.malformed,
        "duplicate_labels": labels.duplicates,
        "appended_txt": logits.appended,
    }
    return EvalResult(summary, images, issues, _warnings(labels, result, logits, extra, num_classes is None),
                      per_class=classes)


_encode = json.JSONEncoder(separators=(", ", ": ")).encode


def _scalar_like(value) -> bool:
    return not isinstance(value, (dict, list)) or (isinstance(value, list) and not any(
        isinstance(v, (dict, list)) for v in value))


def _pretty(value, pad: str = "  ", expand: bool = False) -> str:
    """JSON with one entry per line down to objects of plain values, which stay on one line."""
    inner = pad + "  "
    if isinstance(value, dict) and value and (expand or not all(map(_scalar_like, value.values()))):
        items = ",\n".join(f"{inner}{_encode(k)}: {_pretty(v, inner)}" for k, v in value.items())
        return f"{{\n{items}\n{pad}}}"
    if isinstance(value, list) and value and not all(map(_scalar_like, value)):
        items = ",\n".join(f"{inner}{_pretty(v, inner)}" for v in value)
        return f"[\n{items}\n{pad}]"
    return _encode(value)


def result_json_bytes(result: EvalResult) -> bytes:
    """result.json with one image (and one class) per line: readable, and ~10× faster than json.dumps(indent=...)."""
    issues = json.dumps(result.issues, indent=None, separators=(", ", ": "))
    image_lines = ",\n".join(f"    {_encode(name)}: {_encode(entry)}" for name, entry in result.images.items())
    class_lines = ",\n".join(f"    {_encode(name)}: {_encode(entry)}" for name, entry in result.per_class.items())
    extra = "".join(f",\n  {_encode(key)}: {_pretty(value, expand=True)}" for key, value in result.extra.items())
    body = (
        "{\n"
        f'  "summary": {_pretty(result.summary, expand=True)},\n'
        f'  "images": {{\n{image_lines}\n  }},\n'
        f'  "issues": {issues},\n'
        f'  "per_class": {{\n{class_lines}\n  }}{extra}\n'
        "}\n"
    )
    return body.encode()


def write_result(result: EvalResult, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = result_json_bytes(result)
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise FocalinferError(f"{path}: no space left on device for result.json ({len(data):,} bytes); free that "
                              "much there or choose another --output (inference outputs are reused on a rerun)") from None
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
