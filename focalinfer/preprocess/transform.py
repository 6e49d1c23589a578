"""The official eval transform in PIL + numpy, bit-exact with torchvision's.

``preprocess --dtype uint8`` stops before ToTensor: :meth:`ImageTransform.uint8` is the resized,
center-cropped RGB image itself, and the float32 output is that image through the table below.

torchvision on a PIL image: ``Resize(S)`` is ``PIL.Image.resize`` to the size computed below,
``CenterCrop(C)`` slices at ``int(round((h - C) / 2))``, ``ToTensor`` is ``float32(v) / 255`` and
``Normalize`` is ``(x - float32(mean)) / float32(std)``, all in float32. Each output value depends
only on the uint8 input value and the channel, so one 256-entry table per channel, computed with
the same float32 operations, gives identical bytes much faster.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from focalinfer.registry import EvalTransform

RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def load_rgb(path) -> Image.Image:
    """Decode like the official loaders: ``Image.open(f).convert('RGB')``, EXIF orientation ignored."""
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


def decode_rgb(data: bytes) -> Image.Image:
    """:func:`load_rgb` of a file's bytes (preprocess reads each image once, to decode and hash it)."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def resized_size(width: int, height: int, t: EvalTransform) -> tuple[int, int]:
    """(width, height) after the resize step, as torchvision ``Resize(int)`` computes it."""
    if t.resize_mode == "square":
        return t.resize, t.resize
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = t.resize, int(t.resize * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def crop_offsets(width: int, height: int, crop: int) -> tuple[int, int]:
    """(left, top) of torchvision ``CenterCrop``: Python's round, so halves go to even."""
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))


def normalization_table(t: EvalTransform) -> np.ndarray:
    """(3, 256) float32: the normalized value of every uint8 level in every channel."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    mean = np.asarray(t.mean, dtype=np.float32)[:, None]
    std = np.asarray(t.std, dtype=np.float32)[:, None]
    return ((levels[None, :] - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class ImageTransform:
    """An EvalTransform ready to apply; cheap to pickle to worker processes."""

    spec: EvalTransform

    def __post_init__(self):
        if self.spec.resize < self.spec.crop and self.spec.resize_mode == "shorter":
            raise ValueError(f"resize {self.spec.resize} is smaller than crop {self.spec.crop}")
        object.__setattr__(self, "_table", normalization_table(self.spec))

    def pixels(self, img: Image.Image) -> np.ndarray:
        """RGB PIL image → the resized, center-cropped (C, C, 3) uint8 view ToTensor would get."""
        t, crop = self.spec, self.spec.crop
        size = resized_size(*img.size, t)
        if size != img.size:
            img = img.resize(size, RESAMPLE[t.interpolation])
        left, top = crop_offsets(*size, crop)
        return np.asarray(img)[top : top + crop, left : left + crop]

    def uint8(self, img: Image.Image) -> np.ndarray:
        """RGB PIL image → (1, C, C, 3) uint8 NHWC C-contiguous (preprocess --dtype uint8)."""
        return np.ascontiguousarray(self.pixels(img))[None]

    def __call__(self, img: Image.Image) -> np.ndarray:
        """RGB PIL image → (1, 3, C, C) float32 C-contiguous."""
        pixels, crop = self.pixels(img), self.spec.crop
        out = np.empty((1, 3, crop, crop), dtype=np.float32)
        for c in range(3):
            np.take(self._table[c], pixels[:, :, c], out=out[0, c])
        return out
