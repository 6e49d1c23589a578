"""The images the emulation runs on: a preprocess output folder, read through its manifest.

One function, :func:`load_samples`, turns whatever preprocess wrote into the float32 NCHW batch
the ONNX takes: float32 files as they are; uint8 NHWC files (``preprocess --dtype uint8``, for an
AIPP .om) through the shared AIPP-formula normalisation, :func:`focalinfer.inputs.normalize_nhwc`,
the one the CPU path uses. AIPP hands the network fp16, so the emulated runs then get the
normalised input rounded to fp16 (:attr:`Samples.emulated_input`); fp32 gets it unrounded.
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
    dtype: str  # of the files: float32 | uint8

    @property
    def names(self) -> list[str]:
        return [output_stem(f) for f in self.files]

    @property
    def aipp(self) -> bool:
        """uint8 files are for an AIPP .om, whose input reaches the network as fp16."""
        return self.dtype == inputs.UINT8

    @property
    def emulated_input(self) -> np.ndarray:
        """What the emulated NPU runs get: AIPP's fp16 output for uint8 files, else the files' values."""
        from focalinfer.precision.emulate import round_fp16

        return round_fp16(self.array) if self.aipp else self.array

    def __len__(self) -> int:
        return len(self.files)


def load_samples(input_dir: str | os.PathLike, count: int, input_shape: tuple[int, int, int]) -> Samples:
    """``count`` files spread evenly over the folder (all when it holds fewer), as float32 NCHW.

    ``input_shape`` is the ONNX input's (C, H, W); the files must be made for it.
    """
    input_dir = Path(input_dir)
    where = manifest_path(input_dir)
    if count < 1:
        raise FocalinferError(f"--samples {count}: give at least one sample")
    manifest = Manifest.read(input_dir)
    dtype = manifest.dtype if manifest else inputs.FLOAT32  # no manifest: the seed's float32 files
    if manifest is not None and manifest.status != "complete":
        raise FocalinferError(f"{where}: preprocess did not finish (status {manifest.status!r}); "
                              "rerun it before the precision check")
    if dtype not in inputs.FILE_DTYPES:
        raise FocalinferError(f"{where}: unknown input dtype {dtype!r}; rerun preprocess")
    channels, height, width = (int(d) for d in input_shape)
    norm = None
    if dtype == inputs.UINT8:
        if channels != 3:
            raise FocalinferError(f"{where}: uint8 files hold RGB images but the ONNX input has {channels} channels")
        norm = inputs.Normalization.from_dict(manifest.normalization, str(where))
    file_shape = (channels, height, width) if norm is None else (height, width, 3)
    if manifest is not None and manifest.shape and tuple(manifest.shape[1:]) != file_shape:
        raise FocalinferError(
            f"{where}: the files hold {dtype} {list(manifest.shape[1:])} images but the ONNX takes "
            f"{list(input_shape)}; preprocess for this model (focalinfer preprocess --model ...)")
    files = list_input_files(input_dir)
    picked = [files[i] for i in _spread(len(files), count)]
    file_bytes = int(np.prod(file_shape)) * np.dtype(dtype).itemsize
    for path in picked:
        if file_data_bytes(path) != file_bytes:
            raise FocalinferError(
                f"{path}: {file_data_bytes(path)} bytes, but a {dtype} {list(file_shape)} image for this ONNX is "
                f"{file_bytes}; preprocess for this model")
    raw = np.empty((len(picked),) + file_shape, dtype)
    fill_batch(raw, Batch(0, tuple(picked), 0), file_bytes)
    array = raw if norm is None else inputs.normalize_nhwc(raw, norm)
    return Samples(picked, array, Manifest.sha256(input_dir), dtype)


def _spread(total: int, count: int) -> list[int]:
    """``count`` indices evenly over ``range(total)`` (a folder sorted by class still gives many classes)."""
    if count >= total:
        return list(range(total))
    return sorted({int(round(i * (total - 1) / (count - 1))) for i in range(count)}) if count > 1 else [0]
