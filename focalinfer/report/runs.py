"""What the report knows about each run, read only from files through focalinfer.records:
the result.json, and the records of the stages before it (provenance, source images, the
precision check)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer.errors import FocalinferError, RecordError
from focalinfer.layout import name_stem
from focalinfer.records import (
    EvalRecord, InferRecord, Manifest, PrecisionRecord, identify_model, precision_report_path,
)
from focalinfer.util import sha256_file


@dataclass
class Link:
    """One link of the provenance chain: what, which file, its sha256, and a note."""

    what: str
    path: str | None
    sha256: str | None = None
    note: str = ""


@dataclass
class Run:
    record: EvalRecord
    name: str
    provenance: list[Link] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)   # image stem -> source image path
    onnx: Path | None = None

    @property
    def summary(self) -> dict:
        return self.record.summary


def _file_sha(path: str | os.PathLike | None) -> str | None:
    return sha256_file(path) if path and Path(path).is_file() else None


def _model_links(model_file: str | None, model_sha: str | None) -> tuple[list[Link], Path | None]:
    """checkpoint → ONNX → .om, as far as the export report and the ATC record say."""
    if not model_file:
        return [Link("model file", None, note="not recorded")], None
    identity = identify_model(model_file, ran_sha256=model_sha)
    links, onnx = [], Path(identity.source_onnx) if identity.source_onnx else None
    export = identity.export
    if export:
        links.append(Link("checkpoint", export.checkpoint, export.checkpoint_sha256, f"registry model {export.model}"))
    if onnx:
        note = "exported by focalinfer" if export else "no export report beside it"
        links.append(Link("ONNX", str(onnx), (export.onnx_sha256 if export else None) or _file_sha(onnx), note))
    if identity.is_om:
        atc = identity.atc
        note = (f"atc --precision_mode={atc.precision_mode}, soc {atc.soc}, built {atc.built}" if atc
                else "no ATC build record beside it")
        links.append(Link(".om", model_file, model_sha, note))
    return links, onnx


def _inputs(summary: dict) -> tuple[list[Link], dict[str, Path]]:
    """The preprocessed inputs and, when the manifest's source images are on this machine, their paths."""
    input_dir = summary.get("input_dir")
    manifest = Manifest.read(input_dir) if input_dir and Path(input_dir).is_dir() else None
    note = f"preset {summary.get('preset')}" if summary.get("preset") else ""
    links = [Link("inputs (.bin + manifest)", input_dir, summary.get("manifest_sha256"), note)]
    sources = {}
    if manifest:
        root = manifest.extra.get("images_dir")
        links[0].note = f"{len(manifest.files)} files, {manifest.dtype} {manifest.tensor_layout}, preset {manifest.preset}"
        if root:
            links.insert(0, Link("source images", root, None, f"model {manifest.model}"))
            sources = {name_stem(f["bin"]): Path(root) / f["source"] for f in manifest.files if "bin" in f}
    return links, sources


def load_run(path: str | os.PathLike) -> Run:
    record = EvalRecord.read(path)
    s = record.summary
    links, onnx = _model_links(s.get("model_file"), s.get("model_sha256"))
    input_links, sources = _inputs(s)
    links += input_links
    links.append(Link("labels", s.get("labels_file"), s.get("labels_sha256")))
    if s.get("ReaL_labels_file"):
        links.append(Link("ReaL labels", s["ReaL_labels_file"], s.get("ReaL_labels_sha256")))
    try:
        infer = InferRecord.read(s["results_dir"]) if s.get("results_dir") else None
    except RecordError:
        infer = None  # an unreadable infer record only loses the tool version of the outputs link
    links.append(Link("outputs", s.get("results_dir"), None,
                      f"{s.get('outfmt')}; infer record by focalinfer {infer.tool_version}" if infer and infer.tool_version
                      else f"{s.get('outfmt')}"))
    links.append(Link("result.json", str(record.path), _file_sha(record.path),
                      f"focalinfer {s.get('tool_version')}, {s.get('created')}"))
    return Run(record, Path(path).name, links, sources, onnx)


def find_precision(runs: list[Run], explicit: str | os.PathLike | None) -> PrecisionRecord | None:
    """The precision check named, else one in ``<ONNX folder>/precision/`` made for a run's ONNX."""
    if explicit:
        return PrecisionRecord.read(explicit)
    for run in runs:
        candidate = precision_report_path(run.onnx.parent / "precision") if run.onnx else None
        if candidate and candidate.is_file():
            record = PrecisionRecord.read(candidate)
            if run.onnx.is_file() and record.onnx_sha256 == sha256_file(run.onnx):
                return record
    return None


def bench_speeds(path: str | os.PathLike | None, model: str | None) -> list[tuple[str, int, float]]:
    """(series, batch size, images/s) of a `bench all` JSON for ``model``: focalinfer's CPU path and each
    backend's sweep."""
    if not path:
        return []
    try:
        data = json.loads(Path(path).read_text())
        batches = data["models"][model]["batches"] if model else []
    except FileNotFoundError:
        raise FocalinferError(f"{path}: bench JSON not found; pass the file `focalinfer bench all --json` wrote") from None
    except (ValueError, KeyError, TypeError):
        raise FocalinferError(f"{path}: not a `focalinfer bench all` JSON with model {model}; "
                              "pass the --json of a bench run of this model") from None
    points = []
    for b in batches:
        series = {"focalinfer": b.get("ours"), **b.get("results", {})}
        points += [(f"bench: {backend}", int(b["batch_size"]), float(r["img_per_s"]))
                   for backend, r in series.items() if isinstance(r, dict) and r.get("img_per_s")]
    return points
