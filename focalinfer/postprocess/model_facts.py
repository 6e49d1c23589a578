"""Which model made a result, and how many classes it has: from the stage records, never a default.

A model file's identity (registry name, class count, the ONNX an .om was built from) is
``records.identify_model``'s one answer; a result folder's is the infer record beside it
(``records.InferRecord``): its model file's identity when that file is still the one that ran,
else the registry entry the record names. What cannot be found stays None; the caller then takes
``--num-classes`` or sniffs (loudly).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer.errors import FocalinferError, RecordError, first_line
from focalinfer.records import InferRecord, ModelIdentity, identify_model, infer_record_path, registry_classes
from focalinfer.util import sha256_file


@dataclass
class ModelFacts:
    model: str | None = None            # registry name
    model_file: str | None = None
    num_classes: int | None = None
    classes_source: str | None = None   # where num_classes comes from, for messages and result.json
    record: InferRecord | None = None   # the infer record of a result folder
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, identity: ModelIdentity, record: InferRecord | None = None) -> "ModelFacts":
        """The facts of a model file for scoring; a model whose output 0 is not logits is refused."""
        if identity.not_a_classifier:
            raise FocalinferError(identity.not_a_classifier)
        return cls(model=identity.name, model_file=identity.path, num_classes=identity.num_classes,
                   classes_source=identity.classes_source, record=record, notes=list(identity.notes))


def results_facts(results_dir: str | os.PathLike) -> ModelFacts:
    """What the infer record beside ``results_dir`` says (empty facts when there is none)."""
    try:
        record = InferRecord.read(results_dir)
    except RecordError as e:
        return ModelFacts(notes=[f"{first_line(e)}; ignored"])
    if record is None:
        return ModelFacts()
    if not (record.model_file or record.model):
        return ModelFacts(record=record, notes=[f"{infer_record_path(results_dir)}: names no model; ignored"])
    facts = ModelFacts(record=record)
    model_file = Path(record.model_file) if record.model_file else None
    if model_file is not None and model_file.is_file():
        if record.model_sha256 and sha256_file(model_file) != record.model_sha256:
            facts.notes.append(f"{model_file} changed since it wrote {results_dir}; its class count is not used")
        else:
            facts = ModelFacts.of(identify_model(model_file, record.model_sha256 or None), record)
    facts.model_file = record.model_file or None
    facts.model = record.model or facts.model
    if facts.num_classes is None and (registry := registry_classes(facts.model)):
        facts.num_classes, facts.classes_source = registry, f"the registry entry of {facts.model}"
    return facts
