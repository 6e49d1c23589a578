"""The batch loop every in-process backend shares: read, run, write the contract, resume.

A plan (``focalinfer.infer.plan.InferPlan``: one model, one file list, one output directory) runs
in this process; several devices run one per-device plan each in spawned processes, reporting
progress through a queue.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from focalinfer.errors import FocalinferError, UsageError
from focalinfer import layout
from focalinfer.backend import Runner, TensorSpec, open_spec
from focalinfer.infer.checks import feed_normalization
from focalinfer.infer.plan import InferPlan
from focalinfer.inputs import Normalization, normalize_nhwc
from focalinfer.log import info


@dataclass
class JobOutcome:
    output_dir: str
    summary_path: str | None
    batch_size: int
    throughput: float | None
    files_written: int
    files_kept: int


def resolve_batch_size(spec: TensorSpec, requested: int | None, model_file: str) -> int:
    static = spec.static_batch
    if static is not None:
        if requested is not None and requested != static:
            raise UsageError(
                f"{model_file}: the model has a static batch of {static} and --batch-size {requested} does not "
                f"match it; omit --batch-size or use the model built for batch {requested}"
            )
        return static
    if requested is None:
        raise UsageError(f"{model_file}: the model's batch axis is dynamic; pass --batch-size N")
    if requested < 1:
        raise UsageError(f"--batch-size must be at least 1, not {requested}")
    return requested


def pure_data(spec: TensorSpec, batch_size: int, kind: str) -> np.ndarray:
    shape = (batch_size,) + tuple(spec.shape[1:])
    if kind == "random":
        return np.random.default_rng(0).standard_normal(shape).astype(spec.dtype)
    return np.zeros(shape, dtype=spec.dtype)


def _report(summary: dict, batch_size: int) -> None:
    for line in layout.summary_log_lines(summary, batch_size):
        print(line, flush=True)


def run_job(job: InferPlan, progress: bool = True, on_event: Callable[..., None] | None = None) -> JobOutcome:
    """Run one plan in this process; ``on_event('total', n, done)`` / ``on_event('batch')`` report progress."""
    os.makedirs(job.output_dir, exist_ok=True)
    with open_spec(job.runner) as runner:
        spec = runner.input_spec()
        batch_size = resolve_batch_size(spec, job.batch_size, job.model.path)
        if job.files is None:
            return _pure_inference(job, runner, spec, batch_size)
        return _files_inference(job, runner, spec, batch_size, progress, on_event)


def _pure_inference(job: InferPlan, runner: Runner, spec: TensorSpec, batch_size: int) -> JobOutcome:
    data = pure_data(spec, batch_size, job.pure_data_type)
    for _ in range(job.warmup):
        runner.infer(data)
    runner.reset_times()
    for _ in range(job.loop):
        outputs = runner.infer(data)
    written = layout.write_pure_outputs(outputs, job.output_dir, job.outfmt)  # what ais_bench writes
    summary = layout.build_summary({}, runner.compute_times_ms, batch_size, list(job.args))
    path = layout.summary_path(job.output, job.dirname)
    layout.write_summary(path, summary)
    _report(summary, batch_size)
    return JobOutcome(job.output_dir, path, batch_size, summary["throughput"], len(written), 0)


class BatchReader:
    """Fills the model's batch from the files: their bytes as they are, or (the CPU path over uint8
    files) one uint8 NHWC image per file read into a uint8 buffer and normalised into the batch."""

    def __init__(self, spec: TensorSpec, batch_size: int, norm: Normalization | None):
        self.feed = np.empty((batch_size,) + tuple(spec.shape[1:]), dtype=spec.dtype)
        self.norm, self.table = norm, None if norm is None else norm.table()
        if norm is None:
            self.read = self.feed
        else:
            channels, height, width = spec.shape[1:]
            if channels != 3:
                raise FocalinferError(f"model input {spec.name!r} has {channels} channels; uint8 files hold RGB images")
            self.read = np.empty((batch_size, height, width, 3), dtype=np.uint8)

    def files_per_batch(self, file_bytes: int, first_file: str) -> int:
        batch_size = len(self.read)
        per_batch = layout.files_per_batch(self.read.nbytes, file_bytes, first_file, batch_size)
        if self.norm is not None and per_batch != batch_size:
            raise FocalinferError(
                f"{first_file}: {file_bytes} bytes, but a uint8 {self.read.shape[1:]} image for this model is "
                f"{self.read[0].nbytes}; the files were made for another input size (re-run preprocess for this model)"
            )
        return per_batch

    def fill(self, batch: layout.Batch, file_bytes: int, data: bytes | None = None) -> np.ndarray:
        """The batch's feed, from its files (or ``data``, their bytes read elsewhere: layout.read_batch)."""
        layout.fill_batch(self.read, batch, file_bytes, data)
        if self.norm is not None:
            normalize_nhwc(self.read, self.norm, out=self.feed, table=self.table)
        return self.feed


def make_reader(job: InferPlan, spec: TensorSpec, backend: str, batch_size: int) -> BatchReader:
    """The reader of ``job``'s files for a model with input ``spec`` run by ``backend``."""
    norm = feed_normalization(job.input_files, spec.dtype, backend, job.model.path, job.input_dir)
    return BatchReader(spec, batch_size, norm)


@dataclass
class FileWork:
    """A file run's batches as the model divides them, and what is left after an earlier run."""

    batches: list[layout.Batch]
    per_batch: int           # files per batch
    num_outputs: int         # model outputs: output files per input file
    pending: list[layout.Batch]
    kept: int                # output files an earlier, interrupted run finished


def plan_file_work(job: InferPlan, file_bytes: int, per_batch: int, num_outputs: int) -> FileWork:
    """Every file the size of the first, the batches, and the batches whose outputs are not all there
    (a batch's outputs are written only once they all exist: a resumed run redoes a batch or skips it)."""
    files = list(job.files)
    layout.check_file_sizes(files, file_bytes)
    batches = layout.plan_batches(files, per_batch)
    layout.remove_stale_temps(job.output_dir)

    def done(batch):
        return all(os.path.exists(p) for p in layout.batch_output_paths(batch, job.output_dir, num_outputs, job.outfmt))

    pending = [b for b in batches if not done(b)]
    pending_ids = {b.index for b in pending}
    kept = sum(len(b.files) for b in batches if b.index not in pending_ids) * num_outputs
    return FileWork(batches, per_batch, num_outputs, pending, kept)


def write_file_summary(job: InferPlan, work: FileWork, compute_ms: list[float], batch_size: int,
                       extra: dict | None = None) -> tuple[str, dict]:
    """ais_bench's summary beside the folder (``extra`` keys added), logged; a run that found every
    batch done keeps the summary already there."""
    out_dir = job.output_dir
    filesinfo = {
        b.index * work.per_batch + slot: {
            "infiles": [path],
            "outfiles": [os.path.join(out_dir, layout.output_name(path, i, job.outfmt)) for i in range(work.num_outputs)],
        }
        for b in work.batches for slot, path in enumerate(b.files)
    }
    path = layout.summary_path(job.output, job.dirname)
    if not work.pending and os.path.exists(path):
        info(f"all {len(work.batches)} batches already done in {out_dir}; kept its summary")
        with open(path) as f:
            return path, json.load(f)
    summary = layout.build_summary(filesinfo, compute_ms, batch_size, list(job.args))
    summary.update(extra or {})
    layout.write_summary(path, summary)
    _report(summary, batch_size)
    return path, summary


def warm_up(runner: Runner, reader: BatchReader, batch: layout.Batch, file_bytes: int, warmup: int,
            data: bytes | None = None) -> None:
    """``warmup`` untimed runs of ``batch``, then the runner's times start afresh."""
    buffer = reader.fill(batch, file_bytes, data)
    for _ in range(warmup):
        runner.infer(buffer)
    runner.reset_times()


def infer_batch(runner: Runner, reader: BatchReader, batch: layout.Batch, file_bytes: int, loop: int,
                data: bytes | None = None) -> list[np.ndarray]:
    """One batch's outputs (run ``loop`` times, as ais_bench's --loop; each run timed)."""
    buffer = reader.fill(batch, file_bytes, data)
    for _ in range(loop):
        outputs = runner.infer(buffer)
    return outputs


def _files_inference(job: InferPlan, runner, spec, batch_size, progress, on_event) -> JobOutcome:
    files = list(job.files)
    reader = make_reader(job, spec, runner.backend, batch_size)
    file_bytes = layout.file_data_bytes(files[0])
    work = plan_file_work(job, file_bytes, reader.files_per_batch(file_bytes, files[0]), len(runner.output_specs()))
    if on_event:
        on_event("total", len(work.batches), len(work.batches) - len(work.pending))
    if job.runner.precision != "fp32" and work.pending:
        report_precision_agreement(job, runner, reader, work.batches, file_bytes, batch_size // work.per_batch)
    written = _run_batches(job, runner, reader, work.pending, file_bytes, progress, on_event)
    path, summary = write_file_summary(job, work, runner.compute_times_ms, batch_size)
    return JobOutcome(job.output_dir, path, batch_size, summary.get("throughput"), written, work.kept)


# Images a reduced-precision run is compared with fp32 on before it starts (a few batches' time).
AGREEMENT_IMAGES = 64  # a few batches' time; not a parity run


def report_precision_agreement(job, runner, reader: BatchReader, batches, file_bytes, images_per_file) -> dict:
    """Top-1/top-5 agreement of ``runner`` (reduced precision) with an fp32 runner of the same
    backend on the first inputs, printed on one line: bf16 is an opt-in whose cost is shown."""
    from focalinfer.metrics import compare_logits

    reference_rows, candidate_rows = [], []
    with open_spec(replace(job.runner, precision="fp32", micro_batch=None)) as reference:
        for batch in batches:
            if sum(len(r) for r in reference_rows) >= AGREEMENT_IMAGES:
                break
            feed = reader.fill(batch, file_bytes)
            real = len(batch.files) * images_per_file
            reference_rows.append(reference.infer(feed)[0][:real])
            candidate_rows.append(runner.infer(feed)[0][:real])
    comparison = compare_logits(np.concatenate(reference_rows), np.concatenate(candidate_rows))
    info(f"{job.runner.precision} vs fp32 ({job.backend}) on the first {comparison.count} images: top-1 agreement "
         f"{100 * comparison.top1_agreement:.1f} %, top-5 {100 * comparison.top5_agreement:.1f} %, max |logit diff| "
         f"{comparison.max_abs_diff:.3g} (fp32 parity bound {comparison.bound:.3g}; not a parity run)")
    return comparison.as_dict()


def _run_batches(job, runner, reader: BatchReader, pending, file_bytes, progress: bool, on_event) -> int:
    if not pending:
        return 0
    from focalinfer.progress import progress_bar

    warm_up(runner, reader, pending[0], file_bytes, job.warmup)
    written = 0
    bar = progress_bar(pending, desc="infer", unit="batch", enabled=progress, file=sys.stderr, leave=False)
    for done, batch in enumerate(bar):
        outputs = infer_batch(runner, reader, batch, file_bytes, job.loop)
        try:
            paths = layout.write_batch_outputs(batch, outputs, job.output_dir, job.outfmt)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise disk_full(job, outputs, batch, pending[done:], written) from None
        written += sum(len(p) for p in paths)
        if on_event:
            on_event("batch")
    return written


def disk_full(job: InferPlan, outputs, batch: layout.Batch, left: list[layout.Batch], written: int) -> FocalinferError:
    """A full disk, said with the folder and roughly the space the rest of the run needs."""
    per_image = sum(len(layout.sample_bytes(np.array_split(np.asarray(t), batch.slots)[0], job.outfmt))
                    for t in outputs)
    images = sum(len(b.files) for b in left)
    files = images * len(outputs)
    return FocalinferError(
        f"{job.output_dir}: no space left on device after {written} output files of this run; the {files} still to "
        f"write need about {_size(images * per_image)} ({files} files × ~{per_image // len(outputs):,} bytes); free "
        "that much there or choose another --output, then rerun the same command to resume"
    )


def _size(nbytes: int) -> str:
    size, unit = float(nbytes), "bytes"
    for bigger in ("kB", "MB", "GB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:,.0f} bytes" if unit == "bytes" else f"{size:,.1f} {unit}"


# --- several devices: one spawned process per device ----------------------------------------


def _device_worker(job: InferPlan, queue) -> None:
    device = job.runner.device
    try:
        outcome = run_job(job, progress=False, on_event=lambda *event: queue.put((device,) + event))
        queue.put((device, "done", outcome))
    except FocalinferError as e:
        queue.put((device, "error", str(e)))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # report any crash to the parent as one line
        queue.put((device, "error", f"{type(e).__name__}: {e}"))


def run_devices(jobs: list[InferPlan], progress: bool) -> list[JobOutcome]:
    """ais_bench's multi-device mode for in-process backends: one spawned process per job."""
    import multiprocessing as mp
    import queue as queue_module

    from focalinfer.progress import progress_bar

    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    procs = {job.runner.device: ctx.Process(target=_device_worker, args=(job, events), daemon=True) for job in jobs}
    for proc in procs.values():
        proc.start()
    outcomes: dict[int, JobOutcome] = {}
    seen_dead: set[int] = set()
    bar = progress_bar(total=0, desc="infer", unit="batch", enabled=progress, file=sys.stderr, leave=False)
    try:
        while len(outcomes) < len(jobs):
            try:
                device, kind, *rest = events.get(timeout=0.5)
            except queue_module.Empty:
                _check_alive(procs, outcomes, seen_dead)
                continue
            if kind == "total":
                bar.total += rest[0]
                bar.update(rest[1])
            elif kind == "batch":
                bar.update(1)
            elif kind == "error":
                raise FocalinferError(f"device {device}: {rest[0]}")
            else:
                outcomes[device] = rest[0]
    finally:
        bar.close()
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
            proc.join()
    return [outcomes[job.runner.device] for job in jobs]


def _check_alive(procs, outcomes, seen_dead: set[int]) -> None:
    """A process that ended without reporting failed; one more empty poll lets its last message land."""
    for device, proc in procs.items():
        if device in outcomes or proc.is_alive():
            continue
        if device in seen_dead:
            raise FocalinferError(f"device {device}: its process died (exit code {proc.exitcode}); rerun to resume")
        seen_dead.add(device)
