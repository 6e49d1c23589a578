"""``focalinfer bench preprocess``: img/s of this stage next to the seed's way of doing it, and
float32 files next to uint8 ones (``--dtype uint8``, for AIPP): img/s and bytes written per image.

All rates come from one run on the same generated images, in interleaved rounds (the float32 and
uint8 runs swap order every round), so their ratios are what to trust on a noisy machine, not the
absolute numbers.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from focalinfer.defaults import DEFAULT_MODEL
from focalinfer.inputs import FILE_DTYPES, FLOAT32
from focalinfer.machine import cpu_count, cpu_model
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


def _bin_bytes_per_image(out: Path, count: int) -> float:
    return sum(p.stat().st_size for p in out.glob("*.bin")) / count


def _variant(dtype: str, workers: int) -> str:
    """Figure names: ``workers_N`` is float32 (the names before uint8 existed), ``uint8_workers_N``."""
    return f"workers_{workers}" if dtype == FLOAT32 else f"{dtype}_workers_{workers}"


def bench_preprocess(count: int = 500, model: str = DEFAULT_MODEL, workers: int | None = None,
                     rounds: int = 3, workdir: str | Path | None = None) -> dict:
    """Interleaved rounds of baseline / float32 and uint8 at 1 and all workers; ratios are medians
    of per-round ratios."""
    import torch  # noqa: F401  (imported before timing: the baseline should not pay for it)

    from focalinfer.samples import make_sample_set

    workers = workers or cpu_count()
    counts = sorted({1, workers})
    root = Path(tempfile.mkdtemp(prefix="focalinfer-bench-", dir=workdir))
    try:
        images_dir = make_sample_set(root / "images", count=count, modes=["RGB"])
        images = sorted(images_dir.glob("*.JPEG"))
        runs = {"baseline": [], **{_variant(d, n): [] for n in counts for d in FILE_DTYPES}}
        written = {}

        def fresh(name: str) -> Path:
            shutil.rmtree(root / name, ignore_errors=True)
            (root / name).mkdir()
            return root / name

        for round_index in range(rounds):
            out = fresh("baseline")
            runs["baseline"].append(_seconds(lambda: seed_style_baseline(images, out, model)))
            dtypes = FILE_DTYPES if round_index % 2 == 0 else FILE_DTYPES[::-1]
            for n in counts:
                for dtype in dtypes:
                    out = fresh(_variant(dtype, n))
                    runs[_variant(dtype, n)].append(_seconds(
                        lambda: preprocess(model, images_dir, out, workers=n, dtype=dtype, progress=False)))
                    written[dtype] = _bin_bytes_per_image(out, count)
        rate = {k: [count / s for s in v] for k, v in runs.items()}
        per_round = lambda a, b: statistics.median(x / y for x, y in zip(rate[a], rate[b]))  # noqa: E731
        return {
            "model": model,
            "images": count,
            "rounds": rounds,
            "cpu": cpu_model(),
            "cpu_count": cpu_count(),
            "workers": workers,
            **{f"{k}_img_per_s": round(statistics.median(v), 1) for k, v in rate.items()},
            "single_vs_baseline": round(per_round("workers_1", "baseline"), 2),
            "parallel_speedup": round(per_round(f"workers_{workers}", "workers_1"), 2),
            **{f"{dtype}_bytes_per_image": round(written[dtype]) for dtype in FILE_DTYPES},
            **{f"uint8_vs_float32_workers_{n}": round(per_round(_variant("uint8", n), _variant(FLOAT32, n)), 2)
               for n in counts},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
