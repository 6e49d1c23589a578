"""What infer consumes, and whether it was made for this model: the input set and the model's name.

The inputs are the files preprocess's manifest lists (extra files in the folder are named and left
out); their fingerprint (names, sizes, mtimes) and the manifest's hash go into the infer record, so
a rerun resumes only on the same inputs. The model's registry name comes from the export report
(for an .om, of the ONNX its ATC record names); the manifest's transform must be one of that
model's transforms.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer import layout
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.records import ExportRecord, Manifest, manifest_path, source_onnx
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


def model_name_of(model_file: str | os.PathLike) -> str | None:
    """The registry name the model file was exported from (None when no record says)."""
    onnx = source_onnx(model_file)
    if onnx is None or not onnx.is_file():
        return None
    try:
        export = ExportRecord.read(onnx)
    except FocalinferError as e:
        print(f"[INFO] {e.args[0].split(';')[0]}: the inputs' transform is not checked", file=sys.stderr, flush=True)
        return None
    return export.model if export else None


def _describe(t: EvalTransform) -> str:
    return f"resize {t.resize} {t.interpolation}, crop {t.crop}, mean {tuple(t.mean)}, std {tuple(t.std)}"


def check_transform(inputs: InputSet, model_name: str | None, model_file: str, allow: bool) -> None:
    """Refuse .bin files made with a transform that is not one of the model's (unless ``allow``)."""
    manifest = inputs.manifest
    if manifest is None:
        print(f"[INFO] {inputs.directory} has no {manifest_path('.').name}: cannot check which transform made "
              "its files", file=sys.stderr, flush=True)
        return
    if model_name is None:
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
