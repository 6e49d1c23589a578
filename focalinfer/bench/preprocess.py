"""``focalinfer bench preprocess``: img/s of this stage next to the seed's way of doing it.

All rates come from one run on the same generated images, so their ratios are what to trust on a
noisy machine, not the absolute numbers.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from focalinfer.defaults import DEFAULT_MODEL
from focalinfer.machine import cpu_count
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


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_preprocess(count: int = 500, model: str = DEFAULT_MODEL, workers: int | None = None,
                     rounds: int = 3, workdir: str | Path | None = None) -> dict:
    """Interleaved rounds of baseline / 1 worker / all workers; ratios are medians over rounds."""
    import torch  # noqa: F401  (imported before timing: the baseline should not pay for it)

    from focalinfer.samples import make_sample_set

    workers = workers or cpu_count()
    root = Path(tempfile.mkdtemp(prefix="focalinfer-bench-", dir=workdir))
    try:
        images_dir = make_sample_set(root / "images", count=count, modes=["RGB"])
        images = sorted(images_dir.glob("*.JPEG"))
        runs = {"baseline": [], "workers_1": [], f"workers_{workers}": []}

        def fresh(name: str) -> Path:
            shutil.rmtree(root / name, ignore_errors=True)
            (root / name).mkdir()
            return root / name

        for _ in range(rounds):
            out = fresh("baseline")
            runs["baseline"].append(_seconds(lambda: seed_style_baseline(images, out, model)))
            for n in sorted({1, workers}):
                out = fresh(f"w{n}")
                runs[f"workers_{n}"].append(
                    _seconds(lambda: preprocess(model, images_dir, out, workers=n, progress=False)))
        rate = {k: [count / s for s in v] for k, v in runs.items()}
        per_round = lambda a, b: statistics.median(x / y for x, y in zip(rate[a], rate[b]))  # noqa: E731
        return {
            "model": model,
            "images": count,
            "rounds": rounds,
            "cpu_count": cpu_count(),
            "workers": workers,
            **{f"{k}_img_per_s": round(statistics.median(v), 1) for k, v in rate.items()},
            "single_vs_baseline": round(per_round("workers_1", "baseline"), 2),
            "parallel_speedup": round(per_round(f"workers_{workers}", "workers_1"), 2),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
