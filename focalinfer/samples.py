"""Synthetic ImageNet-like sample data: no ImageNet can be downloaded here.

Images are smooth colour fields with noise and shapes (so JPEG sizes and decode times resemble
real photos), in a mix of sizes and PIL modes, named like ImageNet val, with a ``val_label.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from focalinfer.util import atomic_path, ensure_writable_dir, write_bytes_atomic

# ImageNet val's most common shapes, plus odd ones that exercise the transform.
SIZES = [(500, 375), (375, 500), (500, 333), (500, 500), (333, 500), (640, 480), (150, 100), (97, 211)]
MODES = ["RGB"] * 5 + ["L", "CMYK", "RGBA-png"]


def synthetic_photo(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.3, size=3)
    freq = rng.uniform(0.005, 0.03, size=3)
    base = np.stack([127 + 100 * np.sin(freq[c] * (x + 1.7 * y) + phase[c]) for c in range(3)], axis=-1)
    base += rng.normal(0, 12, size=base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(5, max(6, min(width, height) // 3)))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def write_sample(img: Image.Image, path: Path, mode: str) -> None:
    with atomic_path(path) as tmp:
        if mode == "RGBA-png":  # PNG content behind a .JPEG name, as happens in ImageNet
            img.convert("RGBA").save(tmp, format="PNG")
        else:
            img.convert(mode).save(tmp, format="JPEG", quality=90)


def make_sample_set(out: str | Path, count: int = 48, seed: int = 0, sizes=SIZES, modes=MODES,
                    num_classes: int = 1000) -> Path:
    """Write ``count`` images ``ILSVRC2012_val_<n>.JPEG`` and ``val_label.txt`` into ``out``."""
    out = ensure_writable_dir(out, "sample folder (--out)")
    rng = np.random.default_rng(seed)
    lines = []
    for n in range(1, count + 1):
        name = f"ILSVRC2012_val_{n:08d}.JPEG"
        width, height = sizes[(n - 1) % len(sizes)]
        write_sample(synthetic_photo(width, height, rng), out / name, modes[(n - 1) % len(modes)])
        lines.append(f"{name} {int(rng.integers(0, num_classes))}\n")
    write_bytes_atomic(out / "val_label.txt", "".join(lines).encode())
    return out
