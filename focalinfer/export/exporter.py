"""Checkpoint → ONNX: rewrites, TorchScript export, onnxsim, onnxruntime parity, lint, report.

The graph is checked against two PyTorch references: the same rewritten model that was exported
(does the ONNX compute what we traced?) and the un-rewritten model that follows the official code
(do the rewrites keep the logits?). A dynamic-batch graph is checked at batch 1 and at a batch > 1,
because tracing can freeze a batch count into the graph and only another batch size shows it.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
import torch

from focalinfer.backend.onnxrt import OnnxRuntimeRunner, make_session
from focalinfer.backend.torch import EagerRunner
from focalinfer.metrics.logits import compare_logits
from focalinfer.layout import natural_key
from focalinfer.records import ExportRecord, classifier_classes, export_report_path
from focalinfer import runlock
from focalinfer.errors import FocalinferError, UsageError, first_line
from focalinfer.export.lint import lint_onnx, op_histogram
from focalinfer.export.rewrites import GENERIC_REWRITES
from focalinfer.util import ensure_writable_dir, remove_atomic_temps, sha256_file, write_bytes_atomic, write_json_atomic

MIN_OPSET, MAX_OPSET = 11, 17
PARITY_SEED = 0
MAX_TRACE_WARNINGS = 10
# onnxsim fuses a 3-D MatMul + Add into Reshape → Gemm → Reshape (a win on onnxruntime CPU); ATC
# fuses MatMul + bias itself, so the fusion only adds two Reshapes per Linear.
SKIPPED_ONNXSIM_PASSES = ("fuse_matmul_add_bias_into_gemm", "fuse_matmul_add_bias_into_gemm_batched")


class ParityError(FocalinferError):
    """The ONNX graph does not reproduce PyTorch; the model and its report are kept, marked failed."""

    def __init__(self, message: str, report: "ExportReport"):
        super().__init__(message)
        self.report = report


@dataclass
class ExportReport:
    model: str
    onnx: str
    checkpoint: str
    checkpoint_sha256: str
    onnx_sha256: str
    file_size: int
    opset: int
    batch_size: int
    dynamic_batch: bool
    inputs: list[dict]
    outputs: list[dict]
    rewrites: list[dict]
    naive: dict
    final: dict
    simplify: dict
    parity: dict
    lint: dict
    warnings: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    seconds: float = 0.0
    num_classes: int | None = None  # classes of output 0 (the head the model was built with)
    notes: list[str] = field(default_factory=list)  # what this run found and cleaned up (a killed export's temps)

    @property
    def passed(self) -> bool:
        return bool(self.parity.get("passed"))

    @property
    def report_path(self) -> Path:
        return report_path_for(self.onnx)

    def as_dict(self) -> dict:
        return asdict(self)


def report_path_for(onnx_path: str | Path) -> Path:
    return export_report_path(onnx_path)


def export_onnx(
    model_name,
    checkpoint: str | Path,
    out: str | Path,
    *,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    opset: int = 11,
    rewrites: bool | Iterable[str] = True,
    skip_rewrites: Iterable[str] = (),
    simplify: bool = True,
    parity_samples: int = 4,
    parity_data: str | Path | None = None,
    force: bool = False,
    num_classes: int | None = None,
) -> ExportReport:
    """Export ``model_name`` (a registry name or ModelSpec) with weights from ``checkpoint``.

    ``rewrites``: True = every generic and model-specific rewrite, False = none, or the names to
    apply; ``skip_rewrites`` then switches named ones off. ``num_classes`` builds the model with a
    head of that many classes (a fine-tuned checkpoint). Writes ``out`` and ``<out>.report.json``;
    raises ParityError (after writing both) when the ONNX logits leave the parity bound.

    One export per ``out`` at a time (a lock beside it); temp files a killed export left there
    are removed before the work.
    """
    from focalinfer.registry import ModelSpec, get_model_spec

    spec = model_name if isinstance(model_name, ModelSpec) else get_model_spec(model_name)
    out = Path(out)
    _check_arguments(out, batch_size, opset, parity_samples, parity_data, force, num_classes)
    data_files = _parity_files(parity_data, spec.input_size) if parity_data is not None else []
    notes: list[str] = []
    with runlock.hold(out, "export", log=notes.append):
        notes += _remove_stale_temps(out)
        return _export(spec, checkpoint, out, batch_size, dynamic_batch, opset, rewrites, skip_rewrites,
                       simplify, parity_samples, data_files, num_classes, notes)


def _export(spec, checkpoint, out: Path, batch_size, dynamic_batch, opset, rewrites, skip_rewrites, simplify,
            parity_samples, data_files, num_classes, notes) -> ExportReport:
    started = time.perf_counter()
    from focalinfer.models.checkpoint import load_model

    official = load_model(spec, checkpoint, **({"num_classes": num_classes} if num_classes else {}))
    _check_space(out, official)
    rewritten = copy.deepcopy(official)
    shape = (3, spec.input_size, spec.input_size)
    applied = _apply_rewrites(rewritten, rewrites, skip_rewrites, torch.zeros((1, *shape)).normal_(
        generator=torch.Generator().manual_seed(PARITY_SEED)))
    final_model, trace_notes = _trace_to_onnx(rewritten, spec, batch_size, dynamic_batch, opset)
    # Without rewrites the traced graph is the naive one; with them, trace the official path too.
    naive_model = _trace_to_onnx(official, spec, batch_size, dynamic_batch, opset)[0] if applied else final_model
    simplify_record = {"requested": simplify, "applied": False, "error": None}
    if simplify:
        final_model, simplify_record = _simplify_step(final_model, out)
        if simplify_record["error"]:
            trace_notes.append(f"onnxsim failed, the unsimplified graph was kept: {simplify_record['error']}")

    serialized = final_model.SerializeToString()
    lint = lint_onnx(final_model, expect_static=not dynamic_batch)
    parity = _check_parity(out, serialized, spec, official, rewritten if applied else None, batch_size,
                           dynamic_batch, parity_samples, data_files)
    outputs = _io_description(final_model.graph.output, ())
    report = ExportReport(
        model=spec.name,
        onnx=str(out),
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_file(checkpoint),
        onnx_sha256=hashlib.sha256(serialized).hexdigest(),
        file_size=len(serialized),
        opset=opset,
        batch_size=batch_size,
        dynamic_batch=dynamic_batch,
        inputs=_io_description(final_model.graph.input, final_model.graph.initializer),
        outputs=outputs,
        rewrites=applied,
        naive=_graph_summary(naive_model),
        final=_graph_summary(final_model),
        simplify=simplify_record,
        parity=parity,
        lint=lint.as_dict(),
        warnings=trace_notes,
        versions={"torch": torch.__version__, "onnx": onnx.__version__, **_runtime_versions()},
        seconds=round(time.perf_counter() - started, 1),
        num_classes=classifier_classes(outputs) or num_classes or spec.num_classes,
        notes=notes,
    )
    # Written only now, back to back: an export that crashed or was interrupted above leaves nothing.
    report_json = report.as_dict()
    _write_both(out, serialized, report.report_path, report_json)
    if not report.passed:
        worst = parity["worst"]
        what = worst["error"] or (f"max abs diff {worst['max_abs_diff']:.3g} > bound {worst['bound']:.3g}")
        raise ParityError(
            f"{out}: ONNX logits differ from the {worst['reference']} PyTorch model at batch "
            f"{worst['batch_size']} ({what}); the model is kept but marked failed in {report.report_path} "
            "— try --no-rewrites or a static --batch-size",
            report,
        )
    return report


# --- the output: one writer, stale temps, disk space ----------------------------------------

def _remove_stale_temps(out: Path) -> list[str]:
    """The temp files of a killed export of this ``out`` (we hold its lock: no live run writes them)."""
    ours = {out.name, report_path_for(out).name}
    removed = remove_atomic_temps(out.parent, lambda target: target in ours)
    return [f"{out.parent}: removed {len(removed)} temp files a killed export left ({', '.join(removed)})"] \
        if removed else []


def _check_space(out: Path, model) -> None:
    """The ONNX holds every weight once more: refuse before tracing when the disk cannot take it."""
    from focalinfer.models.checkpoint import distinct_tensors

    needed = sum(t.numel() * t.element_size() for t in distinct_tensors(model.state_dict()).values())
    free = shutil.disk_usage(out.parent).free
    if needed > free:
        raise FocalinferError(
            f"{out.parent}: not enough free space for {out.name}: about {_size(needed)} (the model's "
            f"weights), {_size(free)} free; free space or choose another --out"
        )


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n:,} bytes"


def _write_both(out: Path, serialized: bytes, report_path: Path, report_json: dict) -> None:
    """The ONNX, then its report; a full disk is one line saying which of the two were written."""
    written = []
    try:
        write_bytes_atomic(out, serialized)
        written.append(out.name)
        write_json_atomic(report_path, report_json)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        state = (f"{out.name} was written but not its report: export again" if written else
                 f"nothing was written{', the existing ' + out.name + ' is as it was' if out.exists() else ''}")
        raise FocalinferError(
            f"{out.parent}: the disk filled up ({e.strerror}) writing {out.name} ({_size(len(serialized))}) "
            f"and its report; {state} after freeing that much"
        ) from None


# --- arguments -----------------------------------------------------------------------------

def _check_arguments(out: Path, batch_size, opset, parity_samples, parity_data, force, num_classes=None) -> None:
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes <= 0):
        raise UsageError(f"--num-classes must be a positive integer, got {num_classes!r}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}; pass --batch-size 1 or more")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"opset {opset!r} is not supported; pass --opset between {MIN_OPSET} and {MAX_OPSET} "
                         "(11 is what ATC accepts across CANN 5.x–7.x)")
    if parity_samples < 0:
        raise UsageError(f"--parity-samples must be 0 or more, got {parity_samples}")
    if parity_samples == 0 and parity_data is None:
        raise UsageError("nothing to check parity on: pass --parity-samples 1 or more, or --parity-data DIR")
    if out.is_dir():
        raise UsageError(f"{out}: is a directory; pass the path of the .onnx file to write")
    if out.exists() and not force:
        raise FocalinferError(f"{out}: already exists{_unreported(out)}; pass --force to overwrite it")
    ensure_writable_dir(out.parent)


def _unreported(out: Path) -> str:
    """Why an existing ONNX has no report describing it, or "" when it has one."""
    try:
        if ExportRecord.read(out) is not None:
            return ""
    except FocalinferError:
        pass
    return " without a report that describes it (an export killed while writing?)"


def _parity_files(directory: str | Path, input_size: int) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: --parity-data is not a directory; pass a directory of preprocessed .bin files")
    files = sorted((p for p in directory.iterdir() if p.suffix.lower() == ".bin" and p.is_file()),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise UsageError(f"{directory}: holds no .bin files; run `focalinfer preprocess` for this model first")
    expected = 3 * input_size * input_size * 4
    for path in files:
        if path.stat().st_size != expected:
            raise FocalinferError(
                f"{path}: is {path.stat().st_size} bytes, this model needs float32 (1, 3, {input_size}, "
                f"{input_size}) = {expected} bytes; preprocess with this model's transform")
    return files


# --- rewrites and tracing ------------------------------------------------------------------

def available_rewrites(model) -> dict[str, str]:
    """Every rewrite that can apply to ``model``: generic ones first, then the model's own."""
    own = dict(getattr(model, "export_rewrites", {}) or {})
    return {**{name: r.description for name, r in GENERIC_REWRITES.items()}, **own}


def _apply_rewrites(model, selection, skipped, example: torch.Tensor) -> list[dict]:
    known = available_rewrites(model)
    if selection is True:
        names = list(known)
    elif selection is False or selection is None:
        names = []
    else:
        names = list(selection)
    skipped = list(skipped)
    unknown = [n for n in names + skipped if n not in known]
    if unknown:
        raise UsageError(f"unknown rewrite(s) {', '.join(unknown)}; this model has: {', '.join(known)}")
    names = [n for n in names if n not in skipped]
    applied = []
    model_names = [n for n in names if n not in GENERIC_REWRITES]
    if model_names:
        model.set_export_rewrites(model_names)
        applied += [{"name": n, "scope": "model", "description": known[n]} for n in model_names]
    for name in (n for n in names if n in GENERIC_REWRITES):
        with torch.no_grad():
            changes = GENERIC_REWRITES[name].apply(model, example)
        applied.append({"name": name, "scope": "generic", "description": known[name], "changes": changes})
    return applied


def _trace_to_onnx(model, spec, batch_size: int, dynamic_batch: bool, opset: int) -> tuple[onnx.ModelProto, list[str]]:
    example = torch.zeros((batch_size, 3, spec.input_size, spec.input_size))
    dynamic_axes = {spec.input_name: {0: "batch"}, spec.output_name: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            torch.onnx.export(
                model, (example,), buffer, dynamo=False, opset_version=opset,
                input_names=[spec.input_name], output_names=[spec.output_name],
                do_constant_folding=True, dynamic_axes=dynamic_axes,
            )
        except Exception as e:
            raise FocalinferError(f"{spec.name}: torch.onnx.export failed at opset {opset} ({first_line(e, with_type=True)}); "
                                  "try another --opset or --no-rewrites") from e
    trace_notes = sorted({f"tracer: {str(w.message).splitlines()[0]}" for w in caught
                          if issubclass(w.category, torch.jit.TracerWarning)})
    return onnx.load_from_string(buffer.getvalue()), trace_notes[:MAX_TRACE_WARNINGS]


def _simplify_step(model: onnx.ModelProto, out: Path) -> tuple[onnx.ModelProto, dict]:
    model, applied, error = _simplify(model)
    record = {"requested": True, "applied": applied, "error": error,
              "constants_to_initializers": _constants_to_initializers(model)}
    if error:
        warnings.warn(f"{out}: onnxsim failed ({error}); kept the unsimplified graph")
    return model, record


def _constants_to_initializers(model: onnx.ModelProto) -> int:
    """Move top-level Constant nodes (onnxsim leaves folded weights as such) into initializers,
    where ATC and every viewer expect weights; returns how many moved."""
    graph = model.graph
    moved = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved.append(node)
    for node in moved:
        graph.node.remove(node)
    return len(moved)


def _simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool, str | None]:
    """onnxsim, or the input graph and the reason when onnxsim fails or its check does not pass."""
    try:
        import onnxsim

        simplified, check_ok = onnxsim.simplify(model, certify=False, skipped_optimizers=list(SKIPPED_ONNXSIM_PASSES))
    except Exception as e:  # onnxsim raises plain RuntimeErrors from its C++ core
        return model, False, first_line(e, with_type=True)
    if not check_ok:
        return model, False, "onnxsim's own check failed"
    return simplified, True, None


# --- parity --------------------------------------------------------------------------------

def _parity_batch_sizes(batch_size: int, dynamic_batch: bool) -> list[int]:
    if not dynamic_batch:
        return [batch_size]
    # Any batch other than the traced one exposes a batch count frozen into the graph.
    return [1, batch_size if batch_size > 1 else 2]


def _random_samples(count: int, shape: tuple[int, ...]) -> np.ndarray:
    generator = torch.Generator().manual_seed(PARITY_SEED)
    return torch.randn((count, *shape), generator=generator).numpy()


def _load_samples(files: list[Path], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack([np.fromfile(path, dtype=np.float32).reshape(shape) for path in files])


def _batches(samples: np.ndarray, batch: int) -> list[tuple[np.ndarray, int]]:
    """Consecutive batches; the last is padded with its own first sample (as ais_bench does)."""
    out = []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - real, axis=0)])
        out.append((np.ascontiguousarray(chunk), real))
    return out


def _logits(runner, batches: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Output 0 of ``runner`` over the batches, padding rows dropped."""
    return np.concatenate([runner.infer(chunk)[0][:real] for chunk, real in batches])


def _check_parity(path: Path, serialized: bytes, spec, official, rewritten, batch_size: int,
                  dynamic_batch: bool, samples: int, data_files: list[Path]) -> dict:
    try:
        onnx_runner = OnnxRuntimeRunner(path, session=make_session(serialized))
    except FocalinferError as e:
        raise FocalinferError(f"{path}: {e}; nothing was written — try --no-simplify or --no-rewrites") from None
    shape = (3, spec.input_size, spec.input_size)
    sizes = _parity_batch_sizes(batch_size, dynamic_batch)
    # Whole batches only: a static graph cannot take fewer rows than its batch.
    random_count = max((math.ceil(samples / b) * b for b in sizes), default=0) if samples else 0
    sources = {"random": _random_samples(random_count, shape)}
    if data_files:
        sources["data"] = _load_samples(data_files, shape)
    references = {"official": official}
    if rewritten is not None:
        references["rewritten"] = rewritten

    checks = []
    eager_batch = max(sizes)
    for source, pool in sources.items():
        if not len(pool):
            continue
        # The eager models are batch-independent, so one pass over the pool serves every batch size.
        eager = {name: _logits(EagerRunner(model), _batches(pool, eager_batch)) for name, model in references.items()}
        for size in sizes:
            count = math.ceil(samples / size) * size if source == "random" else len(pool)
            for name, logits in eager.items():
                checks.append({"batch_size": size, "inputs": source, "reference": name,
                               **_compare_run(onnx_runner, pool[:count], size, logits[:count])})
    failed = [c for c in checks if not c["within_bound"]]
    worst = max(failed or checks, key=_badness)
    return {
        "passed": not failed,
        "rule": "max |torch - onnxruntime| <= 1e-4 * max(1, max |torch logit|)",
        "batch_sizes": sizes,
        "random_samples": random_count,
        "data_files": len(data_files),
        "max_abs_diff": max((c["max_abs_diff"] for c in checks if c["max_abs_diff"] is not None), default=None),
        "worst": {k: worst.get(k) for k in ("batch_size", "inputs", "reference", "max_abs_diff", "bound", "error")},
        "checks": checks,
    }


def _compare_run(onnx_runner, samples: np.ndarray, size: int, reference: np.ndarray) -> dict:
    """Comparison figures for one batch size, or the reason onnxruntime could not produce them."""
    try:
        candidate = _logits(onnx_runner, _batches(samples, size))
    except Exception as e:  # a graph with a frozen batch count can fail to run at another batch
        return {"within_bound": False, "max_abs_diff": None, "bound": None,
                "error": f"onnxruntime failed at batch {size}: {first_line(e, with_type=True)}"}
    if candidate.shape != reference.shape:
        return {"within_bound": False, "max_abs_diff": None, "bound": None,
                "error": f"onnxruntime returned logits of shape {candidate.shape}, PyTorch {reference.shape}"}
    return compare_logits(reference, candidate).as_dict()


def _badness(check: dict) -> float:
    if check["max_abs_diff"] is None:
        return math.inf
    return check["max_abs_diff"] / check["bound"]


# --- report helpers ---------------------------------------------------------------------

def format_summary(report: ExportReport) -> str:
    """A few lines for the terminal; the report file has everything."""
    parity = report.parity
    lint = report.lint
    batch = "dynamic batch" if report.dynamic_batch else f"batch {report.batch_size}"
    rewrites = ", ".join(r["name"] for r in report.rewrites) or "none"
    simplify = "onnxsim" if report.simplify["applied"] else (
        f"onnxsim FAILED ({report.simplify['error']})" if report.simplify["requested"] else "no onnxsim")
    classes = f", {report.num_classes}-class head" if report.num_classes != _registered_classes(report.model) else ""
    lines = [
        f"{report.onnx}: {report.model}{classes}, opset {report.opset}, {batch}, {report.file_size / 1e6:.1f} MB",
        f"  nodes: {report.naive['nodes']} naive -> {report.final['nodes']} final, without Constant nodes "
        f"{report.naive['compute_nodes']} -> {report.final['compute_nodes']} (rewrites: {rewrites}; {simplify})",
        f"  parity: max abs diff {parity['worst']['max_abs_diff']:.3g} vs bound {parity['worst']['bound']:.3g} "
        f"over batch sizes {parity['batch_sizes']} ({'passed' if parity['passed'] else 'FAILED'})",
        f"  lint: {lint['errors']} error(s), {lint['warnings']} warning(s)",
        f"  report: {report.report_path}",
    ]
    data_checks = [c for c in parity.get("checks", []) if c.get("inputs") == "data" and c.get("count")]
    if data_checks:  # the images the user will score: does onnxruntime predict what PyTorch predicts?
        worst = min(data_checks, key=lambda c: c["top1_agreement"])
        lines.insert(-2, f"  PyTorch vs onnxruntime on {parity['data_files']} preprocessed images: top-1 agreement "
                         f"{100 * worst['top1_agreement']:.1f} %, top-5 {100 * worst['top5_agreement']:.1f} %")
    return "\n".join(lines)

def _registered_classes(model: str) -> int | None:
    from focalinfer.registry import get_model_spec

    try:
        return get_model_spec(model).num_classes
    except UsageError:
        return None


def _graph_summary(model: onnx.ModelProto) -> dict:
    histogram = op_histogram(model)
    nodes = sum(histogram.values())
    return {"nodes": nodes, "compute_nodes": nodes - histogram.get("Constant", 0), "ops": histogram}


def _io_description(values, initializers) -> list[dict]:
    skip = {t.name for t in initializers}
    described = []
    for value in values:
        if value.name in skip:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        described.append({"name": value.name, "shape": dims,
                          "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name})
    return described


def _runtime_versions() -> dict:
    import onnxruntime
    import onnxsim

    return {"onnxruntime": onnxruntime.__version__, "onnxsim": getattr(onnxsim, "__version__", "?")}
