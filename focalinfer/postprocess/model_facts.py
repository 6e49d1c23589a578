"""Which model made a result, and how many classes it has: from the stage records, never a default.

- an ``.onnx``: its export report (``records.ExportRecord``: output 0's shape, the registry name),
  else the graph's own output 0 (and ``focalinfer.model`` metadata);
- an ``.om``: the ONNX its ATC build record names (``records.AtcRecord.for_om``), as above;
- a result folder: the infer record beside it (``records.InferRecord``): its model file as
  above, else the registry entry it names.

What cannot be found stays None; the caller then takes ``--num-classes`` or sniffs (loudly).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer.errors import FocalinferError, first_line
from focalinfer.records import (
    AtcRecord, ExportRecord, InferRecord, classifier_classes, export_report_path, infer_record_path, source_onnx,
)
from focalinfer.util import sha256_file


@dataclass
class ModelFacts:
    model: str | None = None            # registry name
    model_file: str | None = None
    num_classes: int | None = None
    classes_source: str | None = None   # where num_classes comes from, for messages and result.json
    record: InferRecord | None = None   # the infer record of a result folder
    notes: list[str] = field(default_factory=list)


def registry_classes(model: str) -> int | None:
    """The registry's class count of ``model`` (None for a name the registry does not know)."""
    from focalinfer.errors import UsageError
    from focalinfer.registry import get_model_spec

    try:
        return get_model_spec(model).num_classes
    except UsageError:
        return None


def _not_a_classifier(where: str, name: str, shape) -> FocalinferError:
    return FocalinferError(
        f"{where}: output 0 {name!r} has shape {list(shape)}; eval scores classifiers, whose output 0 is "
        "(batch, classes) logits"
    )


def _classes_of(outputs: list[dict], where: str) -> int | None:
    """Class count of output 0 given as [{name, shape}], or an error when it is not (batch, classes).

    None when the shape is unknown or (batch, dynamic): the graph does not say.
    """
    classes = classifier_classes(outputs)
    shape = outputs[0].get("shape") if outputs else None
    if classes is None and shape and len(shape) != 2:
        raise _not_a_classifier(where, outputs[0].get("name", "?"), shape)
    return classes


def _graph_facts(onnx_path: Path, facts: ModelFacts) -> None:
    import onnx

    try:
        graph_model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # protobuf raises its own types for a file that is not an ONNX model
        facts.notes.append(f"{onnx_path}: not readable as ONNX ({type(e).__name__}); class count unknown")
        return
    outputs = []
    for value in graph_model.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        outputs.append({"name": value.name, "shape": dims})
    facts.num_classes = _classes_of(outputs, str(onnx_path))
    if facts.num_classes:
        facts.classes_source = f"{onnx_path} output 0 {outputs[0]['name']!r} {outputs[0]['shape']}"
    metadata = {p.key: p.value for p in graph_model.metadata_props}
    facts.model = facts.model or metadata.get("focalinfer.model")


def _onnx_facts(onnx_path: Path, facts: ModelFacts, ran_sha256: str | None = None) -> None:
    """Facts of the ONNX at ``onnx_path``. ``ran_sha256``: the hash of the ONNX that really ran or
    was built (ATC / infer record); the report must describe that one, and the graph on disk is
    used only when it still is that one."""
    try:
        report = ExportRecord.read(onnx_path, verify=ran_sha256 is None)
    except FocalinferError as e:
        facts.notes.append(f"{first_line(e)} — its model name and class count are not used")
        report = None
    if report is not None and ran_sha256 and report.onnx_sha256 and report.onnx_sha256 != ran_sha256:
        facts.notes.append(f"{export_report_path(onnx_path)} describes another ONNX than the one that ran "
                           "(re-exported since?); its model name and class count are not used")
        report = None
    if report is None:
        if not onnx_path.is_file():
            facts.notes.append(f"{onnx_path}: not found, so the class count of the model is unknown")
        elif ran_sha256 and sha256_file(onnx_path) != ran_sha256:
            facts.notes.append(f"{onnx_path} changed since it ran; its class count is unknown")
        else:
            _graph_facts(onnx_path, facts)
        return
    facts.model = report.model
    where = str(export_report_path(onnx_path))
    facts.num_classes = _classes_of(report.outputs, where)
    if facts.num_classes:
        facts.classes_source = f"{where}: output 0 {report.outputs[0].get('shape')}"
        return
    registry = registry_classes(report.model)
    if registry:
        facts.num_classes, facts.classes_source = registry, f"the registry entry of {report.model}"


def model_file_facts(model_file: str | os.PathLike, ran_sha256: str | None = None) -> ModelFacts:
    """Registry name and class count of an .onnx or .om (see the module doc); ``ran_sha256`` is
    the hash an infer record gives for the .onnx."""
    path = Path(model_file)
    facts = ModelFacts(model_file=str(path))
    if path.suffix.lower() == ".om":
        build = AtcRecord.for_om(path)
        if build is None:
            facts.notes.append(f"{path}: no ATC build record (*.atc.json) beside it, so the ONNX it was built from, "
                               "and its class count, are unknown")
            return facts
        _onnx_facts(source_onnx(path), facts, build.onnx_sha256 or None)
    else:
        _onnx_facts(path, facts, ran_sha256)
    return facts


def results_facts(results_dir: str | os.PathLike) -> ModelFacts:
    """What the infer record beside ``results_dir`` says (empty facts when there is none)."""
    record = InferRecord.read(results_dir)
    if record is None:
        return ModelFacts()
    if not (record.model_file or record.model):
        return ModelFacts(record=record, notes=[f"{infer_record_path(results_dir)}: unreadable; ignored"])
    facts = ModelFacts(record=record)
    model_file = Path(record.model_file) if record.model_file else None
    if model_file is not None and model_file.is_file():
        if record.model_sha256 and sha256_file(model_file) != record.model_sha256:
            facts.notes.append(f"{model_file} changed since it wrote {results_dir}; its class count is not used")
        else:
            facts = model_file_facts(model_file, record.model_sha256 or None)
            facts.record = record
    facts.model_file = record.model_file or None
    facts.model = record.model or facts.model
    if facts.num_classes is None and facts.model:
        registry = registry_classes(facts.model)
        if registry:
            facts.num_classes, facts.classes_source = registry, f"the registry entry of {facts.model}"
    return facts
