"""The images the emulation runs on: a preprocess output folder, read through its manifest.

One function, :func:`load_samples`, turns whatever preprocess wrote into the float32 NCHW batch
the ONNX takes, so a new file kind is added here and nowhere else. uint8 NHWC files (for AIPP) are
normalised with :func:`focalinfer.inputs.normalize_nhwc` and the manifest's mean/std, then rounded
to fp16: an AIPP .om's graph receives AIPP's fp16 output, so the reference and the emulation both
start from that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from focalinfer import inputs
from focalinfer.errors import FocalinferError
from focalinfer.layout import Batch, file_data_bytes, fill_batch, list_input_files, output_stem
from focalinfer.records import Manifest, manifest_path


@dataclass
class Samples:
    """``array`` (N, C, H, W) float32, one row per file of ``files`` (natural order)."""

    files: list[str]
    array: np.ndarray
    manifest_sha256: str | None
    dtype: str  # of the files

    @property
    def names(self) -> list[str]:
        return [output_stem(f) for f in self.files]

    def __len__(self) -> int:
        return len(self.files)


def load_samples(input_dir: str | os.PathLike, count: int, input_shape: tuple[int, int, int]) -> Samples:
    """``count`` files spread evenly over the folder (all when it holds fewer), as float32 NCHW.

    ``input_shape`` is the ONNX input's (C, H, W); the files must be made for it.
    """
    input_dir = Path(input_dir)
    if count < 1:
        raise FocalinferError(f"--samples {count}: give at least one sample")
    manifest = Manifest.read(input_dir)
    dtype = manifest.dtype if manifest else "float32"
    if manifest is not None and manifest.status != "complete":
        raise FocalinferError(f"{manifest_path(input_dir)}: preprocess did not finish (status {manifest.status!r}); "
                              "rerun it before the precision check")
    if dtype not in inputs.FILE_DTYPES:
        raise FocalinferError(f"{manifest_path(input_dir)}: unknown input dtype {dtype!r}; rerun preprocess")
    shape = tuple(int(d) for d in input_shape)
    # one file's (C, H, W) for float32, (H, W, 3) for uint8
    file_shape = shape if dtype == inputs.FLOAT32 else (shape[1], shape[2], shape[0])
    if manifest is not None and manifest.shape and tuple(manifest.shape[1:]) != file_shape:
        raise FocalinferError(
            f"{manifest_path(input_dir)}: the files hold {list(manifest.shape[1:])} images but the ONNX takes "
            f"{list(shape)}; preprocess for this model (focalinfer preprocess --model ...)")
    norm = inputs.Normalization.from_dict(manifest.normalization, str(manifest_path(input_dir))) \
        if dtype == inputs.UINT8 else None
    files = list_input_files(input_dir)
    picked = [files[i] for i in _spread(len(files), count)]
    file_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    for path in picked:
        if file_data_bytes(path) != file_bytes:
            raise FocalinferError(
                f"{path}: {file_data_bytes(path)} bytes, but the ONNX input {list(shape)} takes {file_bytes} as "
                f"{dtype}; preprocess for this model")
    raw = np.empty((len(picked),) + file_shape, dtype)
    fill_batch(raw, Batch(0, tuple(picked), 0), file_bytes)
    array = raw if norm is None else inputs.normalize_nhwc(raw, norm).astype(np.float16).astype(np.float32)
    return Samples(picked, array, Manifest.sha256(input_dir), dtype)


def _spread(total: int, count: int) -> list[int]:
    """``count`` indices evenly over ``range(total)`` (a folder sorted by class still gives many classes)."""
    if count >= total:
        return list(range(total))
    return sorted({int(round(i * (total - 1) / (count - 1))) for i in range(count)}) if count > 1 else [0]
