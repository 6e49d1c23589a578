"""``run_inference``: plan once (``plan.plan_inference``), claim the result folder, run the batches
(in-process, per device, ais_bench's command line, or on a Ray cluster: ``ray_exec``) and report what
was written."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from focalinfer import layout, runlock
from focalinfer.backend.ais_bench import cli_argv, device_dir_names, run_cli
from focalinfer.defaults import WORK_DIR
from focalinfer.errors import Interrupted
from focalinfer.infer import outdir, report
from focalinfer.infer.engine import run_devices, run_job
from focalinfer.infer.plan import InferPlan, plan_inference
from focalinfer.log import info
from focalinfer.machine import cpu_count
from focalinfer.records import InferRecord
from focalinfer.util import ensure_writable_dir, missing_dirs, remove_empty_dirs


@dataclass
class InferResult:
    output_dir: Path  # <output>/<dirname>; with several devices the device<N> folders are inside
    summary_path: Path | None  # <output>/<dirname>_summary.json (None with several devices)
    backend: str
    batch_size: int
    outfmt: str
    throughput: float | None  # samples/s: 1000 × batch / mean compute ms (summed over devices)
    files_written: int  # output files written by this run
    files_kept: int = 0  # output files a previous, interrupted run had finished
    device_dirs: list[Path] = field(default_factory=list)
    plan: InferPlan | None = None
    record: InferRecord | None = None  # the infer record written beside the folder
    ray: dict | None = None  # a Ray run's actors and rates (infer.ray_exec), kept in the record

    @property
    def pure_inference(self) -> bool:
        """No inputs: generated data, no images."""
        return self.plan is not None and self.plan.files is None

    @property
    def ais_bench_generation(self) -> str | None:
        return self.plan.ais_bench_generation if self.plan else None

    @property
    def images_per_s(self) -> float | None:
        """Real images over the timed runs (padding slots excluded, devices added; None for pure inference
        or a resumed run)."""
        return report.images_per_s(self)


def run_inference(model_file, input_dir=None, output=WORK_DIR + "/", output_dirname=None, outfmt="TXT",
                  batch_size=None, backend="auto", device="0", loop=1, warmup=1, threads=None, force=False,
                  progress=True, pure_data_type="zero", ais_bench_mode="auto", allow_transform_mismatch=False,
                  precision="fp32", ray=None, ray_actors=None, ray_ship_inputs=False) -> InferResult:
    """Run ``model_file`` over ``input_dir`` (or ``loop`` times on generated data when it is None).

    Outputs go to ``<output>/<output_dirname>`` (a timestamp when no dirname), exactly as
    ais_bench writes them; a rerun into the same directory continues where an interrupted run
    stopped — only when the model, the inputs and the batch size are the same (otherwise it starts
    over, saying so). ``ais_bench_mode`` picks the ais_bench API ('api') or command line ('cli').
    ``backend`` 'auto' runs an .onnx on the CPU backend measured fastest here (one line on stderr).
    ``precision`` 'bf16' (OpenVINO, CPUs with native bf16 only) prints its top-1 agreement with fp32.
    ``ray``: a Ray cluster's address ('local', 'auto', 'ray://host:10001', 'host:port') to split the
    batches over ``ray_actors`` actors (infer.ray_exec; ``ray_ship_inputs``: the driver reads the
    inputs and sends them through Ray's object store instead of each node reading a shared folder).
    The result folder's lock (``focalinfer.runlock``) is taken first: a second run into the same
    folder is refused before it plans (auto's measurement included).
    """
    output = os.fspath(output)
    made = missing_dirs(output)
    ensure_writable_dir(output, "--output folder")
    dirname = output_dirname or layout.timestamp_dirname()
    try:
        with runlock.hold(Path(output) / dirname, "infer", log=info):
            plan = plan_inference(
                model_file, input_dir, output=output, output_dirname=dirname, outfmt=outfmt,
                batch_size=batch_size, backend=backend, device=device, loop=loop, warmup=warmup, threads=threads,
                pure_data_type=pure_data_type, ais_bench_mode=ais_bench_mode,
                allow_transform_mismatch=allow_transform_mismatch, precision=precision,
                ray=ray, ray_actors=ray_actors, ray_ship_inputs=ray_ship_inputs,
            )
            return execute(plan, force=force, progress=progress)
    except BaseException as e:
        remove_empty_dirs(made)  # a run that wrote nothing leaves no folder it created
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, Interrupted):
            raise Interrupted(NOTHING_WRITTEN) from None  # stopped while planning
        raise


NOTHING_WRITTEN = "nothing was written (no output was finished)"


def kept_outputs(outputs: int, folder) -> str:
    """What an interrupted infer keeps, for the CLI's one line."""
    if not outputs:
        return NOTHING_WRITTEN
    return f"the {outputs} finished outputs in {folder} are kept; rerun the same command to resume"


def execute(plan: InferPlan, force: bool = False, progress: bool = True,
            on_event: Callable[..., None] | None = None) -> InferResult:
    """Run a plan: hold its folder's lock, claim the folder (resume / start over / refuse), run,
    record what ran — or why it stopped (status ``interrupted`` / ``failed``; a run that wrote no
    output leaves no claim behind).

    ``on_event('total', batches, done)`` / ``on_event('batch')`` report progress (one device or Ray).
    """
    with runlock.hold(plan.output_dir, "infer", log=info):
        outdir.remove_stale_temps_beside(plan.output_dir)
        record = plan.record()
        claimed = outdir.claim(plan.output_dir, record, force)
        try:
            result = _dispatch(plan, progress, on_event)
            result.plan = plan
            record.backend, record.ray = result.backend, result.ray  # under Ray: what the actors decided
            result.record = outdir.finish(plan.output_dir, record, result.batch_size, result.files_written,
                                          result.files_kept)
        except BaseException as e:
            kept = _stop(plan, record, claimed, e)
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted(kept_outputs(kept, plan.output_dir), kept, plan.output_dir) from None
            raise
    return result


def _stop(plan: InferPlan, record: InferRecord, claimed, error: BaseException) -> int:
    """Record why the run stopped; the outputs kept. A disk too full even for the record leaves it
    saying running, with nobody holding the lock: readers report that as a run that died."""
    try:
        return outdir.stop(plan.output_dir, record, claimed, error)
    except OSError:
        return len(outdir.output_files(Path(plan.output_dir)))


def _dispatch(plan: InferPlan, progress: bool, on_event) -> InferResult:
    if plan.ray is not None:
        from focalinfer.infer.ray_exec import run_on_ray

        outcome = run_on_ray(plan, progress, on_event)
        return _result(outcome, plan, backend=outcome.backend, ray=outcome.ray)
    if plan.ais_bench_mode == "cli":
        return _run_ais_bench_cli(plan)
    if len(plan.devices) == 1:
        return _result(run_job(plan, progress, on_event), plan)
    return _run_devices(plan, progress)


def _result(outcome, plan: InferPlan, backend: str | None = None, ray: dict | None = None) -> InferResult:
    return InferResult(
        output_dir=Path(outcome.output_dir),
        summary_path=Path(outcome.summary_path) if outcome.summary_path else None,
        backend=backend or plan.backend, batch_size=outcome.batch_size, outfmt=plan.outfmt,
        throughput=outcome.throughput, files_written=outcome.files_written, files_kept=outcome.files_kept, ray=ray,
    )


def _run_devices(plan: InferPlan, progress: bool) -> InferResult:
    """One process per device, each with a contiguous share of the files, in <dirname>/device<N>."""
    devices = plan.devices
    shares = [None] * len(devices) if plan.files is None else layout.split_for_devices(plan.files, len(devices))
    threads = max(1, (plan.runner.threads or cpu_count()) // len(devices))
    jobs = [plan.for_device(dev, share, os.path.join(plan.dirname, layout.device_dir_name(dev)), threads)
            for dev, share in zip(devices, shares)]
    if len(jobs) < len(devices):
        info(f"{len(plan.files)} input files fill only {len(jobs)} of {len(devices)} devices")
    outcomes = run_devices(jobs, progress)
    total = sum(o.throughput or 0.0 for o in outcomes)
    print(f"[INFO] summary throughput:{total}", flush=True)  # ais_bench's own multi-device log line
    return InferResult(
        output_dir=Path(plan.output_dir), summary_path=None, backend=plan.backend,
        batch_size=outcomes[0].batch_size, outfmt=plan.outfmt, throughput=total,
        files_written=sum(o.files_written for o in outcomes), files_kept=sum(o.files_kept for o in outcomes),
        device_dirs=[Path(o.output_dir) for o in outcomes],
    )


def _run_ais_bench_cli(plan: InferPlan) -> InferResult:
    if plan.runner.threads:
        info("--threads applies to onnxruntime only; ais_bench ignores it")
    device = ",".join(str(d) for d in plan.devices)
    argv = cli_argv(plan.ais_bench_python, plan.model.path, plan.input_dir, plan.output, plan.dirname,
                    plan.outfmt, plan.batch_size, device, plan.loop, plan.warmup, plan.pure_data_type,
                    dym_batch=plan.gear, generation=plan.ais_bench_generation)
    logged_throughput, logged_batch = run_cli(argv)  # with several devices: their total
    output_dir = Path(plan.output_dir)
    device_dirs = [output_dir / name for name in device_dir_names(plan.ais_bench_generation, list(plan.devices))]
    result_dirs = device_dirs or [output_dir]
    written = sum(
        1 for d in result_dirs if d.is_dir() for f in d.iterdir() if layout.OUTPUT_NAME.match(f.name)
    )
    summary = None if device_dirs else layout.find_summary(output_dir)
    throughput = layout.summary_throughput(summary) if summary else logged_throughput
    return InferResult(
        output_dir=output_dir, summary_path=summary, backend="ais_bench",
        batch_size=plan.batch_size or logged_batch or 0, outfmt=plan.outfmt,
        throughput=throughput, files_written=written, device_dirs=device_dirs,
    )
