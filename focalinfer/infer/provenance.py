"""What infer consumes, and whether it was made for this model: the input set and the model's name.

The inputs are the files preprocess's manifest lists (extra files in the folder are named and left
out); their fingerprint (names, sizes, mtimes) and the manifest's hash go into the infer record, so
a rerun resumes only on the same inputs. The manifest's transform must be one of the model's
transforms (its registry name is the model identity's, ``records.identify_model``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer import layout
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.log import info
from focalinfer.records import Manifest, ModelIdentity, manifest_path
from focalinfer.registry import EvalTransform, get_model_spec


@dataclass
class InputSet:
    directory: str
    files: list[str]
    manifest: Manifest | None
    manifest_sha256: str | None
    fingerprint: str
    extra: list[str] = field(default_factory=list)  # input files the manifest does not list


def _fingerprint(files: list[str]) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = os.stat(path)
        digest.update(f"{os.path.basename(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_input_set(input_dir: str | os.PathLike) -> InputSet:
    """The input files as ais_bench orders them, restricted to what the manifest lists."""
    files = layout.list_input_files(input_dir)
    manifest = Manifest.read(input_dir)
    extra: list[str] = []
    if manifest is not None:
        if manifest.status != "complete":
            raise FocalinferError(
                f"{manifest_path(input_dir)}: preprocess did not finish (status {manifest.status!r}); "
                "rerun the same preprocess command to complete it"
            )
        listed = {entry["bin"] for entry in manifest.files if isinstance(entry, dict) and "bin" in entry}
        missing = sorted(listed - {os.path.basename(f) for f in files})
        if missing:
            raise FocalinferError(
                f"{input_dir}: {len(missing)} files its manifest lists are missing (first: {missing[0]}); "
                "rerun preprocess to write them"
            )
        extra = [f for f in files if os.path.basename(f) not in listed]
        files = [f for f in files if os.path.basename(f) in listed]
        if not files:
            raise FocalinferError(f"{input_dir}: its manifest lists no input files; rerun preprocess")
    layout.check_unique_stems(files)
    return InputSet(os.fspath(input_dir), files, manifest, Manifest.sha256(input_dir) if manifest else None,
                    _fingerprint(files), extra)


def _describe(t: EvalTransform) -> str:
    return f"resize {t.resize} {t.interpolation}, crop {t.crop}, mean {tuple(t.mean)}, std {tuple(t.std)}"


def check_transform(inputs: InputSet, model: ModelIdentity, allow: bool) -> None:
    """Refuse .bin files made with a transform that is not one of the model's (unless ``allow``)."""
    manifest = inputs.manifest
    if manifest is None:
        info(f"{inputs.directory} has no {manifest_path('.').name}: cannot check which transform made its files")
        return
    model_name, model_file = model.name, model.path
    if model_name is None:
        if model.export_error:
            info(f"{model.export_error.split(';')[0]}: the inputs' transform is not checked")
        return
    try:
        spec = get_model_spec(model_name)
        made = EvalTransform.from_dict(manifest.transform)
    except (UsageError, KeyError, TypeError, ValueError):
        return
    if made in spec.transforms.values() or allow:
        return
    wanted = spec.default_transform
    raise FocalinferError(
        f"{inputs.directory}: its files were made for {manifest.model} ({manifest.preset}: {_describe(made)}) but "
        f"{model_file} is {model_name} (official: {_describe(wanted)}); preprocess with --model {model_name} into "
        "another --out, or pass --allow-transform-mismatch"
    )
