"""What a preprocessed input file holds, and the one normalisation of uint8 files.

preprocess writes either float32 NCHW files (normalised on the CPU, the default) or uint8 NHWC
files (the cropped RGB bytes, normalisation left to the model). An AIPP .om normalises uint8
input on the chip with ``(pixel - min_chn) * var_reci_chn``, ``min_chn = 255 * mean`` and
``var_reci_chn = 1 / (255 * std)`` (docs/infer.md, "--aipp"). The CPU path (onnxruntime over the
same uint8 files) and the precision emulator apply the same formula through
:func:`normalize_nhwc`, and the om stage writes its AIPP config from :class:`Normalization`, so
the numbers the chip is given and the numbers the CPU uses are one computation.

How it relates to the float32 files: those are ``(float32(v) / 255 - mean) / std`` in float32,
three roundings. The AIPP formula is the same real number; here it is evaluated in float64 and
rounded to float32 once, so it differs from the float32 files only by their own rounding: at most
4.8e-7 (ImageNet mean/std) or 6e-8 (mean = std = 0.5) per value, on about two thirds of the 768
(channel, level) pairs. That is far inside the export parity bound; tests/test_inputs.py checks
per-image top-5 and logits against the float32 files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from focalinfer.errors import FocalinferError

FLOAT32 = "float32"
UINT8 = "uint8"
FILE_DTYPES = (FLOAT32, UINT8)
TENSOR_LAYOUTS = {FLOAT32: "NCHW", UINT8: "NHWC"}


def check_file_dtype(dtype: str) -> str:
    if dtype not in FILE_DTYPES:
        raise FocalinferError(f"--dtype {dtype!r}: choose one of {', '.join(FILE_DTYPES)}")
    return dtype


def file_shape(dtype: str, crop: int) -> tuple[int, int, int, int]:
    """The (1, ...) shape of one image's file: NCHW float32 or NHWC uint8."""
    return (1, 3, crop, crop) if check_file_dtype(dtype) == FLOAT32 else (1, crop, crop, 3)


def file_bytes(dtype: str, crop: int) -> int:
    return 3 * crop * crop * np.dtype(check_file_dtype(dtype)).itemsize


@dataclass(frozen=True)
class Normalization:
    """The per-channel (RGB) mean and std a model's eval transform normalises with."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise FocalinferError(f"normalisation mean {self.mean} / std {self.std}: need 3 means and 3 positive stds")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_dict(cls, data: Mapping | None, where: str) -> "Normalization":
        try:
            return cls(tuple(data["mean"]), tuple(data["std"]))
        except (KeyError, TypeError, ValueError):
            raise FocalinferError(
                f"{where}: no usable normalisation (mean/std) recorded; rerun preprocess --dtype uint8"
            ) from None

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @property
    def aipp_min(self) -> tuple[float, float, float]:
        """AIPP ``min_chn_i`` = 255 · mean_i."""
        return tuple(255.0 * m for m in self.mean)

    @property
    def aipp_var_reci(self) -> tuple[float, float, float]:
        """AIPP ``var_reci_chn_i`` = 1 / (255 · std_i)."""
        return tuple(1.0 / (255.0 * s) for s in self.std)

    def table(self) -> np.ndarray:
        """(3, 256) float32: the AIPP formula for every uint8 level, in float64, rounded once."""
        levels = np.arange(256, dtype=np.float64)[None, :]
        low = np.asarray(self.aipp_min)[:, None]
        scale = np.asarray(self.aipp_var_reci)[:, None]
        return ((levels - low) * scale).astype(np.float32)


def normalize_nhwc(pixels: np.ndarray, norm: Normalization, out: np.ndarray | None = None,
                   table: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB → float32 (N, 3, H, W) with the AIPP formula (see the module doc).

    ``out`` (float32, C-contiguous) is filled in place when given; ``table`` is ``norm.table()``
    for callers that normalise many batches.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise FocalinferError(f"normalisation needs uint8 (N, H, W, 3) pixels, got {pixels.dtype} {pixels.shape}")
    n, h, w, _ = pixels.shape
    if out is None:
        out = np.empty((n, 3, h, w), dtype=np.float32)
    elif out.shape != (n, 3, h, w) or out.dtype != np.float32:
        raise FocalinferError(f"normalisation output must be float32 {(n, 3, h, w)}, got {out.dtype} {out.shape}")
    table = norm.table() if table is None else table
    for c in range(3):
        # every uint8 is a valid index: 'clip' skips the bounds check and the buffered copy
        np.take(table[c], pixels[..., c], out=out[:, c], mode="clip")
    return out

