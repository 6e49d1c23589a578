"""Typed read/write of every stage's record: the files through which the stages talk.

| record | written by | where | read by |
|---|---|---|---|
| :class:`Manifest` | preprocess | ``<out>/manifest.json`` | infer, eval, precision |
| :class:`ExportRecord` | export | ``<onnx>.report.json`` | om, infer, eval |
| :class:`AtcRecord` | om | ``<out-dir>/<stem>_bs<N>.atc.json`` | om (rebuilds), infer (which ONNX) |
| :class:`InferRecord` | infer | ``<output>/<dirname>.focalinfer.json`` (beside the folder) | infer (resume), eval |
| :class:`PrecisionRecord` | precision | ``<out>/precision.json`` (+ ``keep_dtype.cfg``) | om (``--precision``) |
| :class:`EvalRecord` | eval | ``result.json`` (``--output``) | eval (``--reference``), report |

A stage finds another stage's record only through the path functions here and reads it only
through these classes, so no stage spells another's file names or keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from focalinfer.errors import FocalinferError, RecordError
from focalinfer.util import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


def _read_json(path: Path, what: str) -> dict | None:
    """The JSON object at ``path``, None when absent, a one-line :class:`RecordError` when unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RecordError(f"{path}: {what} is not readable JSON ({e}); delete it and rerun the stage that wrote it") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: {what} is not a JSON object; delete it and rerun the stage that wrote it")
    return data


def _typed(cls, data: dict, path: Path, what: str, **defaults):
    """``cls`` from ``data`` (unknown keys kept in ``extra`` where the class has it), or a RecordError."""
    try:
        if any(f.name == "extra" for f in fields(cls)):
            return _with_extra(cls, data, **defaults)
        return cls(**{**defaults, **_known(cls, data)})
    except TypeError:
        raise RecordError(f"{path}: not a focalinfer {what}; delete it and rerun the stage that wrote it") from None


def _known(cls, data: dict) -> dict:
    """The keys of ``data`` that ``cls`` has fields for (records may carry more)."""
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in names}


def _with_extra(cls, data: dict, **defaults):
    """``cls`` from ``data``: its own fields, the rest kept in ``extra`` so a rewrite loses nothing."""
    known = _known(cls, data)
    return cls(**{**defaults, **known}, extra={k: v for k, v in data.items() if k not in known})


def _flat(record) -> dict:
    data = asdict(record)
    return {**data.pop("extra"), **data}


# --- preprocess ---------------------------------------------------------------------------


def manifest_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / MANIFEST_NAME


@dataclass
class Manifest:
    """What a folder of .bin files is: model, transform, dtype, layout and the files it holds."""

    model: str
    preset: str
    transform: dict
    dtype: str = "float32"              # float32 (normalised) | uint8 (raw RGB, normalised later)
    tensor_layout: str = "NCHW"         # NCHW for float32, NHWC for uint8
    shape: list = field(default_factory=list)
    bytes_per_file: int = 0
    normalization: dict | None = None   # uint8: the {mean, std} left to the model; float32: None (applied)
    status: str = "complete"
    files: list = field(default_factory=list)  # {"source", "bin", ["label"]}
    extra: dict = field(default_factory=dict)

    @classmethod
    def read(cls, out_dir: str | os.PathLike) -> "Manifest | None":
        path = manifest_path(out_dir)
        data = _read_json(path, "the preprocess manifest")
        return None if data is None else _typed(cls, data, path, "preprocess manifest")

    def as_dict(self) -> dict:
        return _flat(self)

    @staticmethod
    def sha256(out_dir: str | os.PathLike) -> str | None:
        """Hash of the manifest file (what infer and eval record as "made from these inputs")."""
        from focalinfer.util import sha256_file

        path = manifest_path(out_dir)
        return sha256_file(path) if path.is_file() else None

    def write(self, out_dir: str | os.PathLike) -> Path:
        path = manifest_path(out_dir)
        write_json_atomic(path, {"format": MANIFEST_FORMAT, **self.as_dict()})
        return path


# --- export -------------------------------------------------------------------------------


def export_report_path(onnx_path: str | os.PathLike) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".report.json")


def classifier_classes(outputs: list) -> int | None:
    """C of output 0 shaped (batch, C), from ``[{"name", "shape"}, ...]``; None for any other shape."""
    shape = outputs[0].get("shape") if outputs and isinstance(outputs[0], dict) else None
    if shape and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        return shape[1]
    return None


@dataclass
class ExportRecord:
    """The facts of an export report that later stages check."""

    model: str
    onnx_sha256: str = ""
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    batch_size: int | None = None
    dynamic_batch: bool = False
    outputs: list = field(default_factory=list)
    parity: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        """Classes of output 0 when the report gives it as (batch, classes) logits, else None."""
        return classifier_classes(self.outputs)

    @classmethod
    def read(cls, onnx_path: str | os.PathLike, verify: bool = True,
             onnx_sha256: str | None = None) -> "ExportRecord | None":
        """The report beside ``onnx_path``; with ``verify``, refused when it describes another file
        (``onnx_sha256``: the ONNX's hash when the caller has it already)."""
        path = export_report_path(onnx_path)
        data = _read_json(path, "the export report")
        if data is None:
            return None
        if not data.get("model"):
            raise RecordError(f"{path}: not a focalinfer export report; re-export the model")
        record = _typed(cls, data, path, "export report")
        if verify and record.onnx_sha256:
            from focalinfer.util import sha256_file

            if (onnx_sha256 or sha256_file(onnx_path)) != record.onnx_sha256:
                raise FocalinferError(
                    f"{path}: describes another {Path(onnx_path).name} (its sha256 differs: the ONNX was replaced "
                    "after export); re-export, or name the model with --model"
                )
        return record


# --- om (ATC) -----------------------------------------------------------------------------


# What ATC compiles with when its argv names no --precision_mode (docs/precision.md).
ATC_DEFAULT_PRECISION_MODE = "force_fp16"


def _precision_mode_flag(argv: list) -> str | None:
    """The value of ``--precision_mode=`` in an atc argv, None when it names none."""
    for flag in argv:
        if isinstance(flag, str) and flag.startswith("--precision_mode="):
            return flag.partition("=")[2]
    return None


def atc_record_path(prefix: str | os.PathLike) -> Path:
    """The sidecar of ATC output prefix ``<out-dir>/<stem>_bs<N>``."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + ".atc.json")


@dataclass
class AtcRecord:
    """One .om build: what went in (ONNX hash, argv, option-file hashes) and the .om it wrote."""

    onnx: str
    om: str
    onnx_sha256: str = ""
    batch_size: int = 0
    soc: str = ""
    argv: list = field(default_factory=list)
    built: str = ""
    seconds: float = 0.0
    inputs: dict = field(default_factory=dict)  # option file → sha256 (op precision ini, AIPP cfg, …)
    aipp: dict = field(default_factory=dict)    # --aipp: the {mean, std, crop} the chip normalises with
    dynamic_batch: list = field(default_factory=list)  # --dynamic-batch gears (batch_size is then 0)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "AtcRecord | None":
        data = _read_json(Path(path), "the ATC build record")
        return None if data is None else _typed(cls, data, Path(path), "ATC build record")

    def write(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, asdict(self))

    @property
    def precision_mode(self) -> str:
        """The --precision_mode the .om was built with (ATC's default when the argv names none)."""
        return _precision_mode_flag(self.argv) or ATC_DEFAULT_PRECISION_MODE

    @classmethod
    def for_om(cls, om_path: str | os.PathLike) -> "AtcRecord | None":
        """The record of the build that wrote ``om_path`` (ATC may add an arch suffix to its name)."""
        om_path = Path(om_path)
        for sidecar in sorted(om_path.parent.glob("*.atc.json")):
            try:
                record = cls.read(sidecar)
            except RecordError:
                continue  # another build's broken sidecar says nothing about this .om
            if record is not None and record.om == om_path.name:
                return record
        return None


def _source_onnx_of(path: Path, record: AtcRecord) -> Path:
    """The ONNX an .om's ATC record names: as recorded (relative to where om ran), else beside the .om."""
    named = Path(record.onnx)
    if named.is_file() or named.is_absolute():
        return named
    beside = path.parent / named.name
    return beside if beside.is_file() else named


# --- which model a model file is -----------------------------------------------------------


@dataclass
class ModelIdentity:
    """What a model file (.onnx or .om) is, derived once from its records: infer, eval, compare
    and om all ask :func:`identify_model`, so "which model is this" has one answer.

    ``name`` is the registry name (export report, else the graph's ``focalinfer.model`` metadata);
    ``num_classes`` the class count of output 0 (export report, graph, registry — in that order,
    ``classes_source`` says which); what cannot be found stays None and ``notes`` says why.
    """

    path: str
    sha256: str | None = None
    name: str | None = None
    num_classes: int | None = None
    classes_source: str | None = None
    source_onnx: str | None = None      # itself for an .onnx; for an .om, the ONNX its ATC record names
    atc: AtcRecord | None = None        # an .om's build record
    export: ExportRecord | None = None  # the source ONNX's export report, when it describes that ONNX
    export_error: str | None = None     # why a report beside the ONNX was not used
    not_a_classifier: str | None = None  # output 0 is not (batch, classes) logits: why eval refuses it
    notes: list = field(default_factory=list)

    @property
    def is_om(self) -> bool:
        return Path(self.path).suffix.lower() == ".om"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelIdentity":
        data = dict(data)
        atc, export = data.pop("atc", None), data.pop("export", None)
        return cls(**data, atc=AtcRecord(**atc) if atc else None, export=ExportRecord(**export) if export else None)


def registry_classes(model: str | None) -> int | None:
    """The registry's class count of ``model`` (None for a name the registry does not know)."""
    from focalinfer.errors import UsageError
    from focalinfer.registry import get_model_spec

    if not model:
        return None
    try:
        return get_model_spec(model).num_classes
    except UsageError:
        return None


def _classes_of(outputs: list[dict], where: str, ident: "ModelIdentity") -> int | None:
    """Class count of output 0 given as [{name, shape}]; None when the shape is unknown or (batch,
    dynamic). Output 0 of another rank makes ``ident.not_a_classifier`` say so (eval refuses it)."""
    classes = classifier_classes(outputs)
    shape = outputs[0].get("shape") if outputs else None
    if classes is None and shape and len(shape) != 2:
        ident.not_a_classifier = (f"{where}: output 0 {outputs[0].get('name', '?')!r} has shape {list(shape)}; eval "
                                  "scores classifiers, whose output 0 is (batch, classes) logits")
    return classes


def _graph_identity(onnx_path: Path, ident: ModelIdentity) -> None:
    """Name and class count from the ONNX graph itself (no export report to say them)."""
    import onnx

    try:
        graph_model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # protobuf raises its own types for a file that is not an ONNX model
        ident.notes.append(f"{onnx_path}: not readable as ONNX ({type(e).__name__}); class count unknown")
        return
    outputs = []
    for value in graph_model.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        outputs.append({"name": value.name, "shape": dims})
    ident.num_classes = _classes_of(outputs, str(onnx_path), ident)
    if ident.num_classes:
        ident.classes_source = f"{onnx_path} output 0 {outputs[0]['name']!r} {outputs[0]['shape']}"
    metadata = {p.key: p.value for p in graph_model.metadata_props}
    ident.name = metadata.get("focalinfer.model") or metadata.get("model")


def _onnx_identity(onnx_path: Path, ident: ModelIdentity, onnx_sha256: str | None, ran: bool) -> None:
    """Fill ``ident`` from the ONNX at ``onnx_path`` whose hash is ``onnx_sha256``. ``ran``: that hash
    is the one an ATC or infer record gives (the file on disk may have changed since)."""
    from focalinfer.errors import first_line
    from focalinfer.util import sha256_file

    try:
        report = ExportRecord.read(onnx_path, verify=not ran, onnx_sha256=None if ran else onnx_sha256)
    except FocalinferError as e:
        ident.export_error = str(e)
        ident.notes.append(f"{first_line(e)} — its model name and class count are not used")
        report = None
    if report is not None and ran and report.onnx_sha256 and report.onnx_sha256 != onnx_sha256:
        ident.export_error = f"{export_report_path(onnx_path)} describes another ONNX than the one that ran"
        ident.notes.append(f"{ident.export_error} (re-exported since?); its model name and class count are not used")
        report = None
    if report is None:
        if not onnx_path.is_file():
            ident.notes.append(f"{onnx_path}: not found, so the class count of the model is unknown")
        elif ran and onnx_sha256 and sha256_file(onnx_path) != onnx_sha256:
            ident.notes.append(f"{onnx_path} changed since it ran; its class count is unknown")
        else:
            _graph_identity(onnx_path, ident)
    else:
        ident.export, ident.name = report, report.model
        where = str(export_report_path(onnx_path))
        ident.num_classes = _classes_of(report.outputs, where, ident)
        if ident.num_classes:
            ident.classes_source = f"{where}: output 0 {report.outputs[0].get('shape')}"
    if ident.num_classes is None and not ident.not_a_classifier and (registry := registry_classes(ident.name)):
        ident.num_classes, ident.classes_source = registry, f"the registry entry of {ident.name}"


def identify_model(model_file: str | os.PathLike, ran_sha256: str | None = None) -> ModelIdentity:
    """The identity of an .onnx or .om (see :class:`ModelIdentity`), hashing the file once.

    ``ran_sha256``: the hash an infer record gives for the file that ran (a result folder's model
    file may have changed since; then the file on disk is not hashed again for the identity).
    """
    from focalinfer.util import sha256_file

    path = Path(model_file)
    ident = ModelIdentity(path=str(path))
    if ran_sha256 is None and path.is_file():
        ident.sha256 = sha256_file(path)
    else:
        ident.sha256 = ran_sha256
    if not ident.is_om:
        ident.source_onnx = str(path)
        _onnx_identity(path, ident, ident.sha256, ran=ran_sha256 is not None)
        return ident
    ident.atc = AtcRecord.for_om(path)
    if ident.atc is None:
        ident.notes.append(f"{path}: no ATC build record (*.atc.json) beside it, so the ONNX it was built from, "
                           "and its class count, are unknown")
        return ident
    onnx = _source_onnx_of(path, ident.atc)
    ident.source_onnx = str(onnx)
    _onnx_identity(onnx, ident, ident.atc.onnx_sha256 or None, ran=bool(ident.atc.onnx_sha256))
    return ident


# --- infer --------------------------------------------------------------------------------


def infer_record_path(output_dir: str | os.PathLike) -> Path:
    """Beside ``<output>/<dirname>``, never inside: ais_bench's folder holds only its outputs."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".focalinfer.json")


@dataclass
class InferRecord:
    """Which model (and, from the trust checks on, which inputs and settings) a result folder holds."""

    model_file: str
    model_sha256: str
    backend: str
    updated: str = ""
    model: str | None = None           # registry name (from the export report / ONNX metadata)
    batch_size: int | None = None      # the batch that really ran
    outfmt: str | None = None
    input_dir: str | None = None
    manifest_sha256: str | None = None  # the preprocess manifest the inputs came with
    inputs_sha256: str | None = None    # hash of the input file list with sizes and mtimes
    preset: str | None = None
    dtype: str | None = None            # of the input files (float32 | uint8)
    files_written: int = 0
    files_kept: int = 0
    tool_version: str | None = None
    precision: str | None = None        # fp32 | bf16 (CPU backends)
    micro_batch: int | None = None      # images per call when a batch ran as several calls
    plan: dict | None = None            # the run's InferPlan (focalinfer.infer.plan), as plain data
    ais_bench_generation: str | None = None  # 2023 | 2024 (docs/contract.md, "Generations"); None off ais_bench
    # running (its writer holds the folder's lock) | complete | interrupted | failed; None: a record
    # written before runs recorded their state (they were complete when written)
    status: str | None = None
    error: str | None = None            # why an interrupted or failed run stopped
    ray: dict | None = None             # a Ray run: its actors (node, backend, images/s) and total images/s
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in (None, "complete")

    @classmethod
    def read(cls, output_dir: str | os.PathLike) -> "InferRecord | None":
        path = infer_record_path(output_dir)
        data = _read_json(path, "the infer record")
        return None if data is None else _typed(cls, data, path, "infer record", model_file="", model_sha256="",
                                                backend="")

    def write(self, output_dir: str | os.PathLike) -> Path:
        path = infer_record_path(output_dir)
        write_json_atomic(path, _flat(self))
        return path


# --- precision ----------------------------------------------------------------------------

PRECISION_REPORT_NAME = "precision.json"
KEEP_DTYPE_NAME = "keep_dtype.cfg"
PRECISION_VERDICTS = ("fp16-safe", "keep-dtype", "fp32")


def precision_report_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / PRECISION_REPORT_NAME


def keep_dtype_path(out_dir: str | os.PathLike) -> Path:
    """The ATC --keep_dtype file beside the report (one ONNX node name per line)."""
    return Path(out_dir) / KEEP_DTYPE_NAME


@dataclass
class PrecisionRecord:
    """The precision check's verdict for one ONNX: the mode, the nodes to keep fp32, the ATC flags."""

    verdict: str                        # fp16-safe | keep-dtype | fp32
    mode: str                           # the --precision_mode that was emulated
    onnx_sha256: str
    keep_dtype: list = field(default_factory=list)  # ONNX node names (keep-dtype only)
    atc_flags: list = field(default_factory=list)   # the flags to add to atc
    onnx: str = ""
    overflow: dict = field(default_factory=dict)    # the range lint
    emulated: dict = field(default_factory=dict)    # fp16 / with_keep_dtype / advice figures
    samples: int = 0
    runs: int = 0
    seconds: float = 0.0
    thresholds: dict = field(default_factory=dict)
    input_dir: str | None = None
    manifest_sha256: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "PrecisionRecord":
        """The report at ``path`` (the file, or the folder holding it); a one-line error otherwise."""
        path = Path(path)
        if path.is_dir():
            path = precision_report_path(path)
        data = _read_json(path, "the precision report")
        if data is None:
            raise FocalinferError(f"{path}: no precision report there; run `focalinfer precision` first")
        record = _typed(cls, data, path, "precision report")
        if record.verdict not in PRECISION_VERDICTS or not record.onnx_sha256:
            raise RecordError(f"{path}: not a focalinfer precision report; rerun `focalinfer precision`")
        return record

    @property
    def precision_mode(self) -> str:
        """The --precision_mode its ATC flags name (the emulated mode when they name none)."""
        return _precision_mode_flag(self.atc_flags) or self.mode

    def check_onnx(self, onnx_path: str | os.PathLike, onnx_sha256: str, report: str | os.PathLike = "") -> None:
        """Refuse a report made for another ONNX than ``onnx_path`` (hash ``onnx_sha256``)."""
        if self.onnx_sha256 != onnx_sha256:
            raise FocalinferError(
                f"{report or 'the precision report'}: made for another ONNX (sha256 {self.onnx_sha256[:12]}…, "
                f"{onnx_path} is {onnx_sha256[:12]}…); rerun `focalinfer precision --onnx {onnx_path}`"
            )

    def write(self, out_dir: str | os.PathLike) -> Path:
        path = precision_report_path(out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        extra = data.pop("extra")
        write_json_atomic(path, {"format": 1, **data, **extra})
        return path


# --- eval ---------------------------------------------------------------------------------


@dataclass
class EvalRecord:
    """A result.json: eval's summary, its per-image rows ({label, top5, hit@1, hit@5}), issues,
    per-class table, and whatever else eval added (e.g. ``reference``)."""

    path: Path
    summary: dict
    images: dict
    issues: dict = field(default_factory=dict)
    per_class: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "EvalRecord":
        """The result.json at ``path``; a one-line error when it is absent or not eval's."""
        path = Path(path)
        data = _read_json(path, "the result file")
        if data is None:
            raise FocalinferError(f"{path}: no result.json there; run `focalinfer eval --output {path}` first")
        summary, images = data.get("summary"), data.get("images")
        if not isinstance(summary, dict) or not isinstance(images, dict) or "Acc@1" not in summary:
            raise FocalinferError(f"{path}: not a focalinfer result.json (no summary with Acc@1, or no images); "
                                  "pass the file `focalinfer eval --output` wrote")
        known = ("summary", "images", "issues", "per_class")
        return cls(path, summary, images, data.get("issues") or {}, data.get("per_class") or {},
                   {k: v for k, v in data.items() if k not in known})

    @property
    def label(self) -> str:
        """A short name of the run for tables: backend, batch size and the file."""
        s = self.summary
        parts = [s.get("backend"), f"bs {s['batch_size']}" if s.get("batch_size") else None]
        return f"{self.path.name} ({', '.join(p for p in parts if p)})" if any(parts) else self.path.name
