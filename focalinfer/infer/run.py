"""``run_inference``: resolve the backend, claim the result folder, run the batches (in-process, per device, or
ais_bench's command line) and report what was written."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer import __version__, layout
from focalinfer.backend import plan_backend
from focalinfer.backend.table import check_backend
from focalinfer.backend.ais_bench import AisBenchSetup, cli_argv, run_cli
from focalinfer.backend.ais_bench import resolve as resolve_ais_bench
from focalinfer.defaults import WORK_DIR
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.infer import outdir, report
from focalinfer.infer.checks import InputFiles, check_om_inputs, dynamic_batch_gear, input_files_of
from focalinfer.infer.engine import InferJob, run_devices, run_job
from focalinfer.infer.provenance import InputSet, check_transform, model_name_of, read_input_set
from focalinfer.inputs import FLOAT32
from focalinfer.machine import cpu_count
from focalinfer.records import AtcRecord, InferRecord
from focalinfer.util import ensure_writable_dir, sha256_file




@dataclass
class InferResult:
    output_dir: Path  # <output>/<dirname>; with several devices the device<N> folders are inside
    summary_path: Path | None  # layout.summary_path(output, dirname) (None with several devices)
    backend: str
    batch_size: int
    outfmt: str
    throughput: float | None  # samples/s: 1000 × batch / mean compute ms (summed over devices)
    files_written: int  # output files written by this run
    files_kept: int = 0  # output files a previous, interrupted run had finished
    device_dirs: list[Path] = field(default_factory=list)
    pure_inference: bool = False  # no inputs: generated data, no images (issue 20)
    ais_bench_generation: str | None = None  # 2023 | 2024 when ais_bench ran (issue 20)

    @property
    def images_per_s(self) -> float | None:
        """Real images over the timed runs (padding slots excluded, devices added; None for pure inference
        or a resumed run)."""
        return report.images_per_s(self)


def parse_devices(device: str | int) -> list[int]:
    try:
        ids = [int(part) for part in str(device).split(",")]
    except ValueError:
        raise UsageError(f"--device {device!r}: give a device id or a comma list such as 0,1") from None
    if any(not 0 <= i <= 255 for i in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--device {device!r}: ids must be distinct and within 0–255")
    return ids


def run_inference(
    model_file,
    input_dir=None,
    output=WORK_DIR + "/",
    output_dirname=None,
    outfmt="TXT",
    batch_size=None,
    backend="auto",
    device="0",
    loop=1,
    warmup=1,
    threads=None,
    force=False,
    progress=True,
    pure_data_type="zero",
    ais_bench_mode="auto",
    allow_transform_mismatch=False,
    precision="fp32",
) -> InferResult:
    """Run ``model_file`` over ``input_dir`` (or ``loop`` times on generated data when it is None).

    Outputs go to ``<output>/<output_dirname>`` (a timestamp when no dirname), exactly as
    ais_bench writes them; a rerun into the same directory continues where an interrupted run
    stopped — only when the model, the inputs and the batch size are the same (otherwise it starts
    over, saying so). ``ais_bench_mode`` picks the ais_bench API ('api') or command line ('cli').
    ``backend`` 'auto' runs an .onnx on the CPU backend measured fastest here (one line on stderr).
    ``precision`` 'bf16' (OpenVINO, CPUs with native bf16 only) prints its top-1 agreement with fp32.
    """

    model_file = os.fspath(model_file)
    backend = check_backend(model_file, backend)
    if precision != "fp32":
        backend = _reduced_precision_backend(model_file, backend, precision)
    outfmt = str(outfmt).upper()
    if outfmt not in layout.OUTFMTS:
        raise UsageError(f"--outfmt {outfmt}: choose one of {', '.join(layout.OUTFMTS)}")
    if loop < 1 or warmup < 0:
        raise UsageError("--loop must be at least 1 and --warmup at least 0")
    if pure_data_type not in ("zero", "random"):
        raise UsageError(f"pure data type {pure_data_type!r}: choose zero or random")
    if not os.path.isfile(model_file):
        raise FocalinferError(f"{model_file}: model file not found; check the path (or run export / om first)")
    devices = parse_devices(device)
    model_name = model_name_of(model_file)
    inputs, input_files = None, InputFiles(FLOAT32, None, None)
    if input_dir is not None:
        inputs = read_input_set(input_dir)
        check_transform(inputs, model_name, model_file, allow_transform_mismatch)
        if inputs.extra:
            print(f"[INFO] {len(inputs.extra)} input files in {input_dir} are not in its manifest and were left out "
                  f"(first: {os.path.basename(inputs.extra[0])})", file=sys.stderr, flush=True)
        input_files = input_files_of(inputs.manifest, input_dir)
    output = os.fspath(output)
    dirname = output_dirname or layout.timestamp_dirname()
    output_dir = os.path.join(output, dirname)
    # issue 20: ais_bench's mode and generation, found once; a path it would refuse stops the run here
    ais = None
    if Path(model_file).suffix.lower() == ".om":
        ais = resolve_ais_bench(model_file, ais_bench_mode)
        ais.check_paths(model_file, input_dir, output, dirname)
    ensure_writable_dir(output, "--output folder")

    choice = plan_backend(model_file, backend, batch_size=batch_size, threads=threads)
    backend = choice.backend
    gear = None
    if backend == "ais_bench":
        atc_record = AtcRecord.for_om(model_file)
        if inputs is not None:
            check_om_inputs(model_file, input_files, input_dir, atc_record)
        gear = dynamic_batch_gear(model_file, atc_record, batch_size)
    record = _record(model_file, model_name, backend, batch_size, outfmt, inputs)
    record.ais_bench_generation = ais.generation if ais else None  # issue 20
    claimed = outdir.claim(output_dir, record, force)
    try:
        settings = dict(model_file=model_file, backend=backend, files=inputs.files if inputs else None,
                        output=output, dirname=dirname, outfmt=outfmt, batch_size=batch_size, loop=loop,
                        warmup=warmup, threads=threads, pure_data_type=pure_data_type, progress=progress,
                        args=list(sys.argv), input_files=input_files,
                        input_dir=None if input_dir is None else os.fspath(input_dir), precision=precision,
                        micro_batch=choice.micro_batch)
        result = _dispatch(ais, input_dir, devices, settings, gear)
    except FocalinferError:
        outdir.release(output_dir, claimed)  # a run that failed before writing leaves no claim behind
        raise
    result.pure_inference, result.ais_bench_generation = input_dir is None, record.ais_bench_generation  # issue 20
    outdir.finish(output_dir, record, result.batch_size, result.files_written, result.files_kept)
    return result


def _record(model_file: str, model_name: str | None, backend: str, batch_size: int | None, outfmt: str,
            inputs: InputSet | None) -> InferRecord:
    manifest = inputs.manifest if inputs else None
    return InferRecord(
        model_file=model_file, model_sha256=sha256_file(model_file), backend=backend, model=model_name,
        batch_size=batch_size, outfmt=outfmt, input_dir=inputs.directory if inputs else None,
        manifest_sha256=inputs.manifest_sha256 if inputs else None,
        inputs_sha256=inputs.fingerprint if inputs else None,
        preset=manifest.preset if manifest else None, dtype=manifest.dtype if manifest else None,
        tool_version=__version__,
    )


def _reduced_precision_backend(model_file: str, backend: str, precision: str) -> str:
    """bf16 is OpenVINO's, on CPUs with native bf16 only: an explicit opt-in, never a default."""
    from focalinfer.backend.openvino import check_precision, require

    if not model_file.lower().endswith(".onnx") or backend not in ("auto", "openvino"):
        raise UsageError(f"--precision {precision} runs on OpenVINO only; pass --backend openvino (or auto)")
    require(f"--precision {precision}")
    check_precision(precision)
    return "openvino"


def _dispatch(ais: AisBenchSetup | None, input_dir, devices, settings, gear) -> InferResult:
    if ais is not None and ais.mode == "cli":
        return _run_ais_bench_cli(ais, input_dir, devices, settings, gear)
    if len(devices) == 1:
        return _run_in_process(devices[0], settings)
    return _run_devices(devices, settings)


def _result(outcome, backend, outfmt) -> InferResult:
    return InferResult(
        output_dir=Path(outcome.output_dir),
        summary_path=Path(outcome.summary_path) if outcome.summary_path else None,
        backend=backend, batch_size=outcome.batch_size, outfmt=outfmt, throughput=outcome.throughput,
        files_written=outcome.files_written, files_kept=outcome.files_kept,
    )


def _run_in_process(device: int, settings: dict) -> InferResult:

    outcome = run_job(InferJob(device=device, **settings))
    return _result(outcome, settings["backend"], settings["outfmt"])


def _run_devices(devices: list[int], settings: dict) -> InferResult:
    """One process per device, each with a contiguous share of the files, in <dirname>/device<N>."""

    files = settings.pop("files")
    shares = [None] * len(devices) if files is None else layout.split_for_devices(files, len(devices))
    threads = max(1, (settings.pop("threads") or cpu_count()) // len(devices))
    dirname = settings.pop("dirname")
    progress = settings.pop("progress")
    jobs = [
        InferJob(device=dev, files=share, dirname=os.path.join(dirname, layout.device_dir_name(dev)), threads=threads,
                 progress=False, **settings)
        for dev, share in zip(devices, shares)
    ]
    if len(jobs) < len(devices):
        print(f"[INFO] {len(files)} input files fill only {len(jobs)} of {len(devices)} devices", flush=True)
    outcomes = run_devices(jobs, progress)
    total = sum(o.throughput or 0.0 for o in outcomes)
    print(f"[INFO] summary throughput:{total}", flush=True)
    return InferResult(
        output_dir=Path(settings["output"]) / dirname, summary_path=None, backend=settings["backend"],
        batch_size=outcomes[0].batch_size, outfmt=settings["outfmt"], throughput=total,
        files_written=sum(o.files_written for o in outcomes), files_kept=sum(o.files_kept for o in outcomes),
        device_dirs=[Path(o.output_dir) for o in outcomes],
    )


def _run_ais_bench_cli(ais: AisBenchSetup, input_dir, devices: list[int], settings: dict, gear: int | None) -> InferResult:

    if settings["threads"]:
        print("[INFO] --threads applies to onnxruntime only; ais_bench ignores it", flush=True)
    device = ",".join(str(d) for d in devices)
    argv = cli_argv(ais.python, settings["model_file"], None if input_dir is None else os.fspath(input_dir),
                    settings["output"], settings["dirname"], settings["outfmt"], settings["batch_size"],
                    device, settings["loop"], settings["warmup"], settings["pure_data_type"], dym_batch=gear,
                    generation=ais.generation)
    logged_throughput, logged_batch = run_cli(argv)  # with several devices: their total
    output_dir = Path(settings["output"]) / settings["dirname"]
    device_dirs = [output_dir / name for name in ais.device_dir_names(devices)]  # issue 20: either layout
    result_dirs = device_dirs or [output_dir]
    written = sum(
        1 for d in result_dirs if d.is_dir() for f in d.iterdir() if layout.OUTPUT_NAME.match(f.name)
    )
    summary = None if device_dirs else layout.find_summary(output_dir)
    throughput = layout.summary_throughput(summary) if summary else logged_throughput
    return InferResult(
        output_dir=output_dir, summary_path=summary, backend="ais_bench",
        batch_size=settings["batch_size"] or logged_batch or 0, outfmt=settings["outfmt"],
        throughput=throughput, files_written=written, device_dirs=device_dirs,
    )
