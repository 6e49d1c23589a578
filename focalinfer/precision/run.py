"""``focalinfer precision``: is ATC's fp16 safe for this ONNX on these images, and if not, what to keep fp32."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from focalinfer.defaults import PRECISION_MAX_RUNS, PRECISION_MIN_COSINE, PRECISION_MIN_TOP1, PRECISION_SAMPLES
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.precision.data import Samples, load_samples
from focalinfer.precision.emulate import MODES, GraphInfo, WeightStore, analyse, check_node_names
from focalinfer.precision.evaluate import Evaluator, Thresholds
from focalinfer.precision.ranges import RangeLint, lint_nodes, probe
from focalinfer.precision.report import atc_flags, format_table, write_report
from focalinfer.precision.search import Search, SearchResult
from focalinfer import log
from focalinfer import runlock
from focalinfer.records import PrecisionRecord, keep_dtype_path, precision_report_path
from focalinfer.util import ensure_writable_dir, remove_atomic_temps, sha256_file

SCRATCH_PREFIX = ".precision-"  # the run's scratch folder in --out (the emulated graphs' weights)
# Focal-fast-S runs at its best onnxruntime rate from batch 4 to 16 (docs/benchmarks.md).
DEFAULT_BATCH = 8


@dataclass
class PrecisionResult:
    record: PrecisionRecord
    report_path: Path
    keep_path: Path | None
    lint: RangeLint
    search: SearchResult
    thresholds: Thresholds

    @property
    def safe(self) -> bool:
        """A configuration that passes was found (fp16 as is, or with the keep list)."""
        return self.record.verdict in ("fp16-safe", "keep-dtype")

    def table(self) -> str:
        return format_table(self.record, self.lint, self.thresholds)


def run_precision(onnx_path, input_dir, out, *, samples: int = PRECISION_SAMPLES, mode: str = "force_fp16",
                  min_cosine: float = PRECISION_MIN_COSINE, min_top1: float = PRECISION_MIN_TOP1, batch_size: int | None = None,
                  max_runs: int = PRECISION_MAX_RUNS, threads: int | None = None,
                  progress: bool = False) -> PrecisionResult:
    """Emulate ``mode`` on ``samples`` images of ``input_dir``, search a keep list, write ``out``."""
    out = ensure_writable_dir(out, "precision output folder")
    with runlock.hold(out, "precision", log=lambda note: log.info(f"precision: {note}")):
        for note in _remove_stale_work(out):
            log.info(f"precision: {note}")
        return _run(onnx_path, input_dir, out, samples, mode, min_cosine, min_top1, batch_size, max_runs, threads,
                    progress)


def _remove_stale_work(out: Path) -> list[str]:
    """What a killed check left (we hold the folder's lock): its scratch folder of fp16 weights, and
    temp files of its report."""
    ours = {precision_report_path(out).name, keep_dtype_path(out).name}
    removed = remove_atomic_temps(out, lambda target: target in ours)
    scratch = sorted(p for p in out.glob(f"{SCRATCH_PREFIX}*") if p.is_dir())
    for folder in scratch:
        shutil.rmtree(folder, ignore_errors=True)
    left = removed + [p.name for p in scratch]
    return [f"{out}: removed what a killed precision check left ({', '.join(left)})"] if left else []


def _run(onnx_path, input_dir, out: Path, samples, mode, min_cosine, min_top1, batch_size, max_runs, threads,
         progress) -> PrecisionResult:
    started = time.perf_counter()
    thresholds = _check_settings(mode, min_cosine, min_top1, max_runs)
    onnx_path = Path(onnx_path)
    model = _load_onnx(onnx_path)
    info = analyse(model)
    check_node_names(info, str(onnx_path))
    input_name, batch_dim, shape = _graph_input(info, onnx_path)
    data = load_samples(input_dir, samples, shape)
    batch = _batch_size(batch_size, batch_dim, len(data), onnx_path)
    timings = {"load": time.perf_counter() - started}
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=out) as work:
        weights = WeightStore(info, work)
        evaluator = Evaluator(data.array, input_name, batch, batch_dim is not None, Path(work), threads,
                              emulated_input=data.emulated_input)
        mark = time.perf_counter()
        reference, lint = probe(info, weights, evaluator)
        timings["probe"] = time.perf_counter() - mark
        mark = time.perf_counter()
        search = Search(info, weights, evaluator, reference, mode, thresholds, max_runs, progress)
        result = search.run(lint_nodes(info, lint))
        timings["emulated_runs"] = time.perf_counter() - mark
    record = _record(info, onnx_path, input_dir, data, mode, thresholds, lint, result, search, out)
    record.seconds = round(time.perf_counter() - started, 1)
    record.extra["timings"] = {k: round(v, 1) for k, v in timings.items()}
    record.extra["batch_size"] = batch
    record.extra["input_dtype"] = data.dtype
    report_path, keep_path = write_report(record, out)
    return PrecisionResult(record, report_path, keep_path, lint, result, thresholds)


def _check_settings(mode: str, min_cosine: float, min_top1: float, max_runs: int) -> Thresholds:
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if not -1.0 <= min_cosine <= 1.0:
        raise UsageError(f"--min-cosine {min_cosine}: a cosine similarity lies in [-1, 1]")
    if not 0.0 <= min_top1 <= 100.0:
        raise UsageError(f"--min-top1 {min_top1}: give a percentage in [0, 100]")
    if max_runs < 1:
        raise UsageError("--max-runs must be at least 1")
    return Thresholds(min_cosine, min_top1)


def _load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise FocalinferError(f"{path}: ONNX file not found; run `focalinfer export` first")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises its own types
        raise FocalinferError(f"{path}: not a readable ONNX file ({type(e).__name__}); re-export it") from None


def _graph_input(info: GraphInfo, path: Path) -> tuple[str, int | None, tuple[int, int, int]]:
    """(name, static batch or None, (C, H, W)) of the single image input."""
    inputs = [i for i in info.model.graph.input if i.name in info.graph_inputs]
    if len(inputs) != 1:
        raise FocalinferError(f"{path}: the graph has {len(inputs)} inputs; precision checks single-input classifiers")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:] or inputs[0].type.tensor_type.elem_type != 1:
        raise FocalinferError(f"{path}: input {inputs[0].name!r} must be float32 NCHW with fixed C, H, W (got {dims})")
    return inputs[0].name, dims[0], tuple(dims[1:])


def _batch_size(asked: int | None, static: int | None, count: int, path: Path) -> int:
    if static is not None:
        if asked is not None and asked != static:
            raise UsageError(f"--batch-size {asked}: {path} has a static batch of {static}; "
                             "omit --batch-size or export with --dynamic-batch")
        return static
    if asked is not None and asked < 1:
        raise UsageError("--batch-size must be at least 1")
    return asked or min(DEFAULT_BATCH, count)


def _record(info: GraphInfo, onnx_path: Path, input_dir, data: Samples, mode: str, thresholds: Thresholds,
            lint: RangeLint, result: SearchResult, search: Search, out: Path) -> PrecisionRecord:
    keep = info.names(result.keep) if result.verdict == "keep-dtype" else []
    emulated = {"fp16": result.base.as_dict(),
                "with_keep_dtype": result.with_keep.as_dict() if result.with_keep else None}
    if result.advice:
        emulated["advice"] = {m: f.as_dict() for m, f in result.advice.items()}
    keep_file = keep_dtype_path(out).resolve()
    return PrecisionRecord(
        verdict=result.verdict, mode=mode, onnx_sha256=sha256_file(onnx_path), keep_dtype=keep,
        atc_flags=atc_flags(result.verdict, mode, keep_file, result.advice, thresholds),
        onnx=str(onnx_path), overflow=lint.as_dict(), emulated=emulated, samples=len(data), runs=result.runs,
        thresholds={"min_cosine": thresholds.min_cosine, "min_top1": thresholds.min_top1},
        input_dir=str(input_dir), manifest_sha256=data.manifest_sha256,
        extra={"search": {"kept": len(result.keep), "short_limit": search.short_limit,
                          "out_of_runs": result.out_of_runs, "candidates": len(info.candidates),
                          "steps": result.steps}},
    )
