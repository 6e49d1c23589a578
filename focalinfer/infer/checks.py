"""Before anything runs: do the input files fit the model?

- dtype: preprocess's manifest says whether the files are float32 NCHW (normalised) or uint8 NHWC
  (normalisation left to the model). An AIPP .om (its ATC record says so) takes uint8 files with
  the normalisation its cfg applies; a plain .om takes float32 files; onnxruntime takes float32
  files as they are and uint8 files through :func:`focalinfer.inputs.normalize_nhwc` (the CPU
  path: one set of files serves both).
- dynamic batch: a dynamic-batch .om runs only at one of the gears its ATC record lists.

A folder without a manifest holds the seed's files: float32, as before uint8 files existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from focalinfer import inputs
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.records import AtcRecord, Manifest, manifest_path


@dataclass(frozen=True)
class InputFiles:
    """What preprocess says the files of an input folder are."""

    dtype: str  # float32 | uint8
    normalization: inputs.Normalization | None  # uint8: what the model must still apply
    manifest: str | None  # the manifest's path (None: no manifest, the seed's float32 files)


def input_files_of(manifest: Manifest | None, input_dir) -> InputFiles:
    """What ``input_dir``'s manifest (read by provenance.read_input_set) says its files are."""
    if manifest is None:
        return InputFiles(inputs.FLOAT32, None, None)
    where = str(manifest_path(input_dir))
    if manifest.dtype not in inputs.FILE_DTYPES:
        raise FocalinferError(f"{where}: unknown dtype {manifest.dtype!r}; rerun focalinfer preprocess")
    norm = None
    if manifest.dtype == inputs.UINT8:
        norm = inputs.Normalization.from_dict(manifest.normalization, where)
    return InputFiles(manifest.dtype, norm, where)


def _what(files: InputFiles, input_dir) -> str:
    return f"{input_dir}: the files are {files.dtype}" + ("" if files.manifest else " (no manifest.json: the seed's files)")


def check_om_inputs(om_path, files: InputFiles, input_dir, record: AtcRecord | None) -> None:
    """uint8 files for an AIPP .om (with its mean/std), float32 for a plain one; one line otherwise.

    Without an ATC record the .om's input is unknown here; the API runner checks its dtype later.
    """
    if record is None:
        return
    if record.aipp and files.dtype != inputs.UINT8:
        raise FocalinferError(
            f"{_what(files, input_dir)} but {om_path} was built with --aipp and takes uint8 NHWC images; "
            "preprocess with --dtype uint8 into another --out, or use an .om built without --aipp"
        )
    if not record.aipp and files.dtype == inputs.UINT8:
        raise FocalinferError(
            f"{_what(files, input_dir)} but {om_path} takes float32 (built without --aipp); build it with "
            f"`focalinfer om --aipp`, run the ONNX ({record.onnx}) on the CPU, or preprocess without --dtype uint8"
        )
    if record.aipp:
        chip = inputs.Normalization.from_dict(record.aipp, f"the ATC record of {om_path}")
        if chip != files.normalization:
            raise FocalinferError(
                f"{input_dir}: the files leave mean {list(files.normalization.mean)} / std "
                f"{list(files.normalization.std)} to the model but {om_path}'s AIPP applies mean {list(chip.mean)} / "
                f"std {list(chip.std)}; preprocess with the preset the .om was built for (om --preset)"
            )


def feed_normalization(files: InputFiles, model_dtype: np.dtype, backend: str, model_file,
                       input_dir) -> inputs.Normalization | None:
    """None: the file bytes are the model's input; else normalise uint8 files with it (CPU path)."""
    if np.dtype(files.dtype) == model_dtype:
        return None
    if files.dtype == inputs.UINT8 and model_dtype == np.float32 and backend != "ais_bench":
        return files.normalization
    if files.dtype == inputs.UINT8:
        raise FocalinferError(
            f"{_what(files, input_dir)} but {model_file} takes {model_dtype} input; build the .om with "
            "`focalinfer om --aipp`, or preprocess without --dtype uint8"
        )
    raise FocalinferError(
        f"{_what(files, input_dir)} but {model_file} takes {model_dtype} input (an AIPP .om takes uint8 images); "
        "preprocess with --dtype uint8 into another --out"
    )


def dynamic_batch_gear(om_path, record: AtcRecord | None, batch_size: int | None) -> int | None:
    """The gear to run a dynamic-batch .om at (None for a static one), or a one-line error."""
    if record is None or not record.dynamic_batch:
        return None
    gears = ", ".join(map(str, record.dynamic_batch))
    if batch_size is None:
        raise UsageError(f"{om_path}: a dynamic-batch .om (gears {gears}); pass --batch-size, one of them")
    if batch_size not in record.dynamic_batch:
        raise UsageError(
            f"{om_path}: --batch-size {batch_size} is not one of its dynamic-batch gears ({gears}); "
            f"pick one, or rebuild with `focalinfer om --dynamic-batch` listing {batch_size}"
        )
    return batch_size

