"""Where stages meet: ``eval`` with a model file is infer then score (the only place that runs both).

Everything that can refuse is checked before inference starts: the result.json path, the label
file, the model's class count against the labels, labels without an input file. Each fact is
derived once: the model file's identity (``records.identify_model``), then the infer plan (which
takes that identity), whose run comes back with the infer record it wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

from focalinfer import layout
from focalinfer.defaults import DATABIN_DIR, RESULT_JSON
from focalinfer.errors import FocalinferError, ToolMissingError, UsageError
from focalinfer.infer import InferPlan, execute, plan_inference
from focalinfer.postprocess import EvalResult, score_results, write_result
from focalinfer.postprocess.labels import LabelSet, read_labels
from focalinfer.postprocess.model_facts import ModelFacts, results_facts
from focalinfer.postprocess.outputs import run_summary
from focalinfer.postprocess.scoring import RUN_FIELDS, check_label_range
from focalinfer.records import InferRecord, identify_model, infer_record_path, registry_classes
from focalinfer.util import ensure_writable_file


def evaluate(
    labels_file: str | os.PathLike, *, results_dir: str | os.PathLike | None = None,
    model_file: str | os.PathLike | None = None, input_dir: str | os.PathLike = DATABIN_DIR,
    output: str | os.PathLike = RESULT_JSON, output_dirname: str | None = None, outfmt: str | None = None,
    batch_size: int | None = None, model: str | None = None, num_classes: int | None = None,
    output_dtype: str = "float32", backend: str | None = None, allow_missing: bool = False,
    allow_bad_labels: bool = False, force: bool = False, progress: bool = True, workers: int | None = None,
    allow_transform_mismatch: bool = False, threads: int | None = None, precision: str = "fp32",
    ray: str | None = None, ray_actors: int | None = None, ray_ship_inputs: bool = False,
) -> tuple[EvalResult, Path]:
    """Score ``results_dir``, or first run ``model_file`` (.om → ais_bench, .onnx → the CPU backend
    ``backend`` names; 'auto' or None: the one measured fastest here) on ``input_dir`` into
    ``<output dir>/<output_dirname or output stem>/``; write result.json to ``output``.

    ``model`` / ``num_classes`` / ``batch_size`` that contradict what the records say are errors.
    ``ray`` / ``ray_actors`` / ``ray_ship_inputs``: run the inference on a Ray cluster (see run_inference).
    """
    if (results_dir is None) == (model_file is None):
        raise UsageError("pass exactly one of a model file (--om / --onnx) or --results DIR")
    output = ensure_writable_file(output, "result.json")
    labels = read_labels(labels_file)
    where = str(model_file if model_file is not None else results_dir)
    identity = identify_model(model_file) if model_file is not None else None
    facts = ModelFacts.of(identity) if identity else results_facts(results_dir)
    _apply_flags(facts, model, num_classes, where)
    if facts.num_classes:
        check_label_range(labels, facts.num_classes, facts.classes_source)
    labels.require_clean(allow_bad_labels)
    if model_file is not None:
        with _in_eval_terms(Path(model_file)):
            plan = plan_inference(
                model_file, input_dir, output=output.parent, output_dirname=output_dirname or output.stem,
                outfmt=(outfmt or "TXT").upper(), batch_size=batch_size, backend=backend or "auto",
                threads=threads, allow_transform_mismatch=allow_transform_mismatch, precision=precision,
                identity=identity, ray=ray, ray_actors=ray_actors, ray_ship_inputs=ray_ship_inputs,
            )
            _check_inputs(labels, plan, allow_missing)
            run = execute(plan, force=force, progress=progress)
        results_dir, outfmt = run.output_dir, run.outfmt
        fields = _run_fields(run.record, facts, precision)
    else:
        fields = _recorded_run(Path(results_dir), facts, batch_size)
    result = score_results(
        results_dir, labels, outfmt=outfmt, num_classes=facts.num_classes, classes_source=facts.classes_source,
        output_dtype=output_dtype, allow_bad_labels=allow_bad_labels, run=fields, workers=workers,
    )
    result.warnings[:0] = facts.notes
    return result, write_result(result, output)


def _apply_flags(facts: ModelFacts, model: str | None, num_classes: int | None, where: str) -> None:
    """--model and --num-classes fill what the records do not say, and may not contradict them."""
    if model:
        if facts.model and facts.model != model:
            raise UsageError(f"--model {model}: {where} was made by {facts.model} (its records say so); "
                             "omit --model")
        facts.model = model
        if facts.num_classes is None:
            classes = registry_classes(model)
            if classes:
                facts.num_classes, facts.classes_source = classes, f"the registry entry of {model}"
    if num_classes:
        if facts.num_classes and facts.num_classes != num_classes:
            raise UsageError(f"--num-classes {num_classes}: the model has {facts.num_classes} classes "
                             f"({facts.classes_source}); omit --num-classes")
        if facts.num_classes is None:
            facts.num_classes, facts.classes_source = num_classes, "--num-classes"


def _check_inputs(labels: LabelSet, plan: InferPlan, allow_missing: bool) -> None:
    """Labels whose image has no input file would be missing after the whole run: say so first.

    The inputs are the files the plan runs (those the manifest lists).
    """
    stems = {layout.output_stem(path) for path in plan.files or ()}
    missing = [lab.image for stem, lab in labels.labels.items() if stem not in stems]
    if missing and not allow_missing:
        raise FocalinferError(
            f"{labels.path}: {len(missing)} of {len(labels)} labelled images have no input file in {plan.input_dir} "
            f"(first: {missing[0]}); preprocess them, or pass --allow-missing to score the "
            f"{len(labels) - len(missing)} that have one"
        )


class _in_eval_terms:
    """infer's hint for a missing ais_bench names infer's flags; say it in eval's terms."""

    def __init__(self, model_file: Path):
        self.model_file = model_file

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _tb):
        if kind is ToolMissingError and self.model_file.suffix.lower() == ".om":
            raise ToolMissingError(
                f"{self.model_file}: running an .om needs ais_bench (CANN and an NPU), not installed here; score the "
                "ONNX on CPU with --onnx X.onnx, or score a folder ais_bench wrote on the NPU host with --results DIR"
            ) from error
        return False


def _run_fields(record: InferRecord, facts: ModelFacts, precision: str) -> dict:
    """result.json's run fields from the infer record the run wrote (and --model's name)."""
    fields = _record_fields(record)
    # A reduced-precision score must say so wherever it is shown.
    backend = record.backend if precision == "fp32" else f"{record.backend} ({precision})"
    fields.update(model=facts.model or fields["model"], backend=backend)
    return fields


def _record_fields(record: InferRecord | None) -> dict:
    """result.json's run fields as the infer record gives them (None for what it lacks)."""
    if record is None:
        return dict.fromkeys(RUN_FIELDS)
    # A record of a folder with outputs that wrote and kept none predates these counts.
    counted = bool(record.files_written or record.files_kept)
    return {
        "model": record.model, "model_file": record.model_file or None, "model_sha256": record.model_sha256 or None,
        "backend": record.backend or None, "batch_size": record.batch_size, "input_dir": record.input_dir,
        "manifest_sha256": record.manifest_sha256, "preset": record.preset,
        "outputs_written": record.files_written if counted else None,
        "outputs_reused": record.files_kept if counted else None,
    }


def _recorded_run(results_dir: Path, facts: ModelFacts, batch_size: int | None) -> dict:
    """The run fields of a folder scored with --results: its infer record, then its run summary.

    --batch-size may fill a batch nothing recorded, never replace a recorded one.
    """
    record = facts.record
    summary = run_summary(results_dir)
    recorded, source = None, None
    if record and record.batch_size:
        recorded, source = record.batch_size, infer_record_path(results_dir)
    elif summary and summary.batch_size:
        recorded, source = summary.batch_size, summary.path
    if batch_size and recorded and batch_size != recorded:
        raise UsageError(f"--batch-size {batch_size}: {results_dir} was made at batch {recorded} ({source}); "
                         "omit --batch-size, which with --results only fills in a batch nothing recorded")
    fields = _record_fields(record)
    fields.update(model=facts.model, model_file=facts.model_file, batch_size=recorded or batch_size)
    return fields
