"""``focalinfer bench preprocess``: img/s of this stage next to the seed's way of doing it.

All rates come from one run on the same generated images, so their ratios are what to trust on a
noisy machine, not the absolute numbers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from focalinfer.preprocess.run import preprocess
from focalinfer.preprocess.transform import RESAMPLE, crop_offsets, load_rgb, resized_size


def seed_style_baseline(images: list[Path], out: Path, model: str) -> None:
    """What the seed's script does: one process, PIL → float tensor → normalize, per image."""
    import torch

    from focalinfer.registry import get_model_spec

    t = get_model_spec(model).default_transform
    mean = torch.tensor(t.mean).view(3, 1, 1)
    std = torch.tensor(t.std).view(3, 1, 1)
    for path in images:
        img = load_rgb(path)
        size = resized_size(*img.size, t)
        img = img.resize(size, RESAMPLE[t.interpolation])
        left, top = crop_offsets(*size, t.crop)
        img = img.crop((left, top, left + t.crop, top + t.crop))
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)
        x = (x - mean) / std
        x.unsqueeze(0).numpy().tofile(out / f"{path.stem}.bin")


def _rate(count: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def bench_preprocess(count: int = 200, model: str = "focal-fast-s", workers: int | None = None,
                     workdir: str | Path | None = None) -> dict:
    from focalinfer.samples import make_sample_set

    workers = workers or os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="focalinfer-bench-", dir=workdir))
    try:
        images_dir = make_sample_set(root / "images", count=count, modes=["RGB"])
        images = sorted(images_dir.glob("*.JPEG"))
        (root / "baseline").mkdir()
        baseline = _rate(count, lambda: seed_style_baseline(images, root / "baseline", model))
        rates = {}
        for n in sorted({1, workers}):
            out = root / f"w{n}"
            rates[n] = _rate(count, lambda: preprocess(model, images_dir, out, workers=n, progress=False))
        single, best = rates[1], rates[workers]
        return {
            "model": model,
            "images": count,
            "cpu_count": os.cpu_count(),
            "baseline_img_per_s": round(baseline, 1),
            "workers_1_img_per_s": round(single, 1),
            f"workers_{workers}_img_per_s": round(best, 1),
            "single_vs_baseline": round(single / baseline, 2),
            "parallel_speedup": round(best / single, 2),
            "workers": workers,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
