"""Where stages meet: ``eval`` with a model file is infer then score (the only place that runs both).

Everything that can refuse is checked before inference starts: the result.json path, the locks of
result.json and the output folder (``focalinfer.runlock``), the label file, the model's class count
against the labels, labels without an input file (before auto measures a backend). Each fact is
derived once: the model file's identity (``records.identify_model``), then the infer plan (which
takes that identity), whose run comes back with the infer record it wrote.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable

from focalinfer import layout, runlock
from focalinfer.defaults import DATABIN_DIR, RESULT_JSON
from focalinfer.errors import FocalinferError, Interrupted, ToolMissingError, UsageError
from focalinfer.infer import InferResult, execute, plan_inference
from focalinfer.log import info
from focalinfer.postprocess import EvalResult, score_results, write_result
from focalinfer.postprocess.labels import LabelSet, read_labels
from focalinfer.postprocess.model_facts import ModelFacts, results_facts
from focalinfer.postprocess.outputs import run_summary
from focalinfer.postprocess.scoring import RUN_FIELDS, check_label_range
from focalinfer.records import InferRecord, identify_model, infer_record_path, registry_classes
from focalinfer.util import (
    ensure_writable_file, json_output_path, missing_dirs, remove_atomic_temps, remove_empty_dirs,
)


def evaluate(
    labels_file: str | os.PathLike, *, results_dir: str | os.PathLike | None = None,
    model_file: str | os.PathLike | None = None, input_dir: str | os.PathLike = DATABIN_DIR,
    output: str | os.PathLike = RESULT_JSON, output_dirname: str | None = None, outfmt: str | None = None,
    batch_size: int | None = None, model: str | None = None, num_classes: int | None = None,
    output_dtype: str = "float32", backend: str | None = None, allow_missing: bool = False,
    allow_bad_labels: bool = False, force: bool = False, progress: bool = True, workers: int | None = None,
    allow_transform_mismatch: bool = False, threads: int | None = None, precision: str = "fp32",
    device: str = "0", ais_bench_mode: str = "auto", amend: Callable[[EvalResult], None] | None = None,
    ray: str | None = None, ray_actors: int | None = None, ray_ship_inputs: bool = False,
) -> tuple[EvalResult, Path]:
    """Score ``results_dir``, or first run ``model_file`` (.om → ais_bench, .onnx → the CPU backend
    ``backend`` names; 'auto' or None: the one measured fastest here) on ``input_dir`` into
    ``<output dir>/<output_dirname or output stem>/``; write result.json to ``output`` (a folder,
    or a path ending in '/': result.json inside it).

    ``model`` / ``num_classes`` / ``batch_size`` that contradict what the records say are errors.
    ``amend`` adds figures to the scored result before result.json is written (eval's --reference, --real-labels).
    ``ray`` / ``ray_actors`` / ``ray_ship_inputs``: run the inference on a Ray cluster (see run_inference).
    The locks of result.json and of the output folder (``focalinfer.runlock``) are held throughout.
    """
    if (results_dir is None) == (model_file is None):
        raise UsageError("pass exactly one of a model file (--om / --onnx) or --results DIR")
    output = json_output_path(output, "result.json")
    outputs_dir = None if model_file is None else output.parent / (output_dirname or output.stem)
    if outputs_dir == output:
        raise UsageError(f"--output {output}: result.json and the inference outputs would both be {output}; give a "
                         f"file name ending in .json ({output}.json) or a folder ({output}/)")
    with _guarded(output, outputs_dir) as ran:
        labels = read_labels(labels_file)
        where = str(model_file if model_file is not None else results_dir)
        identity = identify_model(model_file) if model_file is not None else None
        facts = ModelFacts.of(identity) if identity else results_facts(results_dir)
        _apply_flags(facts, model, num_classes, where)
        if facts.num_classes:
            check_label_range(labels, facts.num_classes, facts.classes_source)
        labels.require_clean(allow_bad_labels)
        if model_file is not None:
            run = _infer(model_file, identity, labels, outputs_dir, outfmt, batch_size, backend, threads,
                         allow_transform_mismatch, precision, input_dir, allow_missing, force, progress,
                         dict(device=device, ais_bench_mode=ais_bench_mode, ray=ray, ray_actors=ray_actors,
                              ray_ship_inputs=ray_ship_inputs))
            ran.append(run)
            results_dir, outfmt = run.output_dir, run.outfmt
            fields = _run_fields(run.record, facts, precision)
        else:
            runlock.refuse_if_written(results_dir, "scoring it")
            fields = _recorded_run(Path(results_dir), facts, batch_size)
        result = score_results(
            results_dir, labels, outfmt=outfmt, num_classes=facts.num_classes, classes_source=facts.classes_source,
            output_dtype=output_dtype, allow_bad_labels=allow_bad_labels, run=fields, workers=workers,
        )
        result.warnings[:0] = facts.notes
        if amend is not None:
            amend(result)
        return result, write_result(result, output)


@contextlib.contextmanager
def _guarded(output: Path, outputs_dir: Path | None):
    """Hold the locks of result.json and the output folder (one lock when they share a name) before
    any work; on failure leave no folder this eval created empty; on Ctrl-C say what is kept."""
    made = missing_dirs(output.parent)
    ran: list[InferResult] = []
    try:
        ensure_writable_file(output, "result.json")
        with contextlib.ExitStack() as locks:
            for target in filter(None, (output, outputs_dir)):
                locks.enter_context(runlock.hold(target, "eval", log=info))
            remove_atomic_temps(output.parent, lambda target: target == output.name)  # a killed eval's
            yield ran
    except BaseException as e:
        remove_empty_dirs(made)
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(_kept(e, ran)) from None
        raise


def _kept(interrupt: KeyboardInterrupt, ran: list[InferResult]) -> str:
    """What an interrupted eval keeps: the truth for the CLI's one line."""
    if ran:
        run = ran[0]
        return (f"the {run.files_written + run.files_kept} inference outputs in {run.output_dir} are kept, no "
                "result.json was written; rerun the same command to score them (they are reused)")
    outputs = getattr(interrupt, "outputs", 0)
    if outputs:
        return (f"the {outputs} finished inference outputs in {interrupt.folder} are kept, no result.json was "
                "written; rerun the same command to resume")
    return "nothing was written (no inference output was finished, no result.json)"


def _infer(model_file, identity, labels: LabelSet, outputs_dir: Path, outfmt, batch_size, backend, threads,
           allow_transform_mismatch, precision, input_dir, allow_missing, force, progress,
           placement: dict) -> InferResult:
    """Plan (the inputs checked against the labels before the backend is decided), then run.
    ``placement``: where it runs (device, ais_bench mode, Ray), as plan_inference takes it."""
    with _in_eval_terms(Path(model_file)):
        plan = plan_inference(
            model_file, input_dir, output=outputs_dir.parent, output_dirname=outputs_dir.name,
            outfmt=(outfmt or "TXT").upper(), batch_size=batch_size, backend=backend or "auto",
            threads=threads, allow_transform_mismatch=allow_transform_mismatch, precision=precision,
            identity=identity, **placement,
            check_inputs=lambda files: _check_inputs(labels, files, input_dir, allow_missing),
        )
        return execute(plan, force=force, progress=progress)


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


def _check_inputs(labels: LabelSet, files: list[str], input_dir, allow_missing: bool) -> None:
    """Labels whose image has no input file would be missing after the whole run: say so first.
    No label matching any input is refused whatever the flags: there would be nothing to score.

    The inputs are the files the plan runs (those the manifest lists).
    """
    stems = {layout.output_stem(path) for path in files}
    missing = [lab.image for stem, lab in labels.labels.items() if stem not in stems]
    if len(missing) == len(labels):
        example = layout.output_stem(files[0]) if files else None
        raise FocalinferError(
            f"{labels.path}: none of its {len(labels)} labelled images has an input file in {input_dir} (labels name "
            f"e.g. {missing[0]!r}, the inputs e.g. {example!r}; they are joined by the name up to its first '.'); "
            "is this the label file of these inputs?"
        )
    if missing and not allow_missing:
        raise FocalinferError(
            f"{labels.path}: {len(missing)} of {len(labels)} labelled images have no input file in {input_dir} "
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
    # A record of a folder with outputs that wrote and kept none predates these counts; an unfinished
    # run's counts were never written.
    counted = bool(record.files_written or record.files_kept) and record.finished
    return {
        "model": record.model, "model_file": record.model_file or None, "model_sha256": record.model_sha256 or None,
        "backend": record.backend or None, "batch_size": record.batch_size,
        "images_per_call": record.micro_batch or record.batch_size, "input_dir": record.input_dir,
        "manifest_sha256": record.manifest_sha256, "preset": record.preset,
        "outputs_written": record.files_written if counted else None,
        "outputs_reused": record.files_kept if counted else None,
    }


def _recorded_run(results_dir: Path, facts: ModelFacts, batch_size: int | None) -> dict:
    """The run fields of a folder scored with --results: its infer record, then its run summary.

    --batch-size may fill a batch nothing recorded, never replace a recorded one.
    """
    record = facts.record
    if record is not None and not record.finished:
        why = ("its record still says running and nobody holds its lock: it was killed" if record.status == "running"
               else f"it was {record.status}: {record.error or 'no reason recorded'}")
        facts.notes.append(f"{results_dir}: the run that wrote it did not finish ({why}); the score covers the outputs "
                           "it wrote — rerun the same infer or eval command to complete them")
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
