"""`focalinfer bench eval`: score generated ais_bench TXT outputs, against the seed's per-file way.

The seed (ModelZoo's Focal_Transformer_postprocess.py) read each output with ``np.loadtxt`` and
ran ``torch.topk`` on it, one file at a time. That baseline is timed on a subset and scaled to the
full count (it would take minutes on 50,000 files); the report says so.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from focalinfer.layout import write_sample
from focalinfer.postprocess.outputs import pool_context, default_workers

BAR_COUNT = 50_000
BAR_SECONDS = 5.0


def write_output(directory: Path, stem: str, vector: np.ndarray, outfmt: str) -> Path:
    """One sample's output 0 in ais_bench's layout (generated data: no atomic rename needed)."""
    return write_sample(directory, stem, vector, outfmt, atomic=False)


def _write_chunk(task) -> None:
    directory, stems, vectors = task
    for stem, vector in zip(stems, vectors):
        write_output(Path(directory), stem, vector, "TXT")


def image_names(count: int) -> list[str]:
    return [f"ILSVRC2012_val_{i:08d}" for i in range(1, count + 1)]


def synthetic_logits(count: int, classes: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels with a plausible accuracy: the label's logit is raised for most images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=count)
    logits = rng.normal(0.0, 2.0, size=(count, classes)).astype(np.float32)
    logits[np.arange(count), labels] += rng.uniform(3.0, 12.0, size=count).astype(np.float32)
    return logits, labels


def make_txt_results(directory: str | os.PathLike, count: int, classes: int = 1000, seed: int = 0,
                     workers: int | None = None) -> tuple[Path, Path]:
    """Write ``count`` TXT outputs to ``<directory>/result`` and a matching ``val_label.txt``."""
    directory = Path(directory)
    results = directory / "result"
    results.mkdir(parents=True, exist_ok=True)
    names = image_names(count)
    logits, labels = synthetic_logits(count, classes, seed)
    workers = workers or default_workers()
    step = max(1, -(-count // (workers * 4)))
    tasks = [(str(results), names[i:i + step], logits[i:i + step]) for i in range(0, count, step)]
    if workers > 1 and count >= 2000:
        with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context()) as pool:
            list(pool.map(_write_chunk, tasks))
    else:
        for task in tasks:
            _write_chunk(task)
    label_file = directory / "val_label.txt"
    label_file.write_text("".join(f"{n}.JPEG {c}\n" for n, c in zip(names, labels.tolist())))
    return results, label_file


def seed_style_score(results_dir: Path, label_file: Path, names: Sequence[str]) -> dict:
    """The seed's method on ``names``: np.loadtxt per file, torch.topk(5) per file, hits counted."""
    import torch

    targets = {}
    for line in label_file.read_text().splitlines():
        image, cls = line.split()
        targets[image.split(".")[0]] = int(cls)
    hit1 = hit5 = 0
    start = time.perf_counter()
    for name in names:
        output = torch.tensor(np.loadtxt(results_dir / f"{name}_0.txt", dtype=np.float32)).unsqueeze(dim=0)
        top = output.topk(5, 1, True, True).indices[0]
        hit1 += int(top[0] == targets[name])
        hit5 += int((top == targets[name]).any())
    seconds = time.perf_counter() - start
    return {"files": len(names), "seconds": seconds, "hit@1": hit1, "hit@5": hit5}


def _time_focalinfer(results: Path, label_file: Path, out: Path, workers: int | None):
    from focalinfer.postprocess.scoring import score_results, write_result

    start = time.perf_counter()
    result = score_results(results, label_file, workers=workers)
    write_result(result, out)
    return time.perf_counter() - start, result


def bench_eval(count: int = BAR_COUNT, baseline_count: int = 2000, repeats: int = 3,
               workers: int | None = None, keep_dir: str | os.PathLike | None = None) -> dict:
    """Time focalinfer's scorer (whole eval: labels, outputs, top-k, result.json) against the seed's."""
    baseline_count = min(baseline_count, count)
    with tempfile.TemporaryDirectory(prefix="focalinfer-bench-eval-", dir=keep_dir) as tmp:
        start = time.perf_counter()
        results, label_file = make_txt_results(tmp, count, workers=workers)
        generate_seconds = time.perf_counter() - start

        runs = [_time_focalinfer(results, label_file, Path(tmp) / "result.json", workers) for _ in range(repeats)]
        ours = min(seconds for seconds, _ in runs)
        result = runs[0][1]

        subset = image_names(count)[:baseline_count]
        baseline = seed_style_score(results, label_file, subset)
        ours_subset = [result.images[f"{n}.JPEG"] for n in subset]
        agree = (baseline["hit@1"] == sum(r["hit@1"] for r in ours_subset)
                 and baseline["hit@5"] == sum(r["hit@5"] for r in ours_subset))

    ours_rate = count / ours
    baseline_rate = baseline["files"] / baseline["seconds"]
    return {
        "count": count,
        "format": "TXT (ais_bench: %f values, space after each, newline)",
        "machine": {"cpus": default_workers(), "python": platform.python_version(), "platform": platform.platform()},
        "generate_seconds": round(generate_seconds, 3),
        "focalinfer": {
            "seconds": round(ours, 3),
            "seconds_all_runs": [round(s, 3) for s, _ in runs],
            "files_per_s": round(ours_rate, 1),
            "workers": workers or default_workers(),
            "scope": "read labels + all outputs, top-5, write result.json (in-process, page cache warm)",
        },
        "baseline": {
            "method": "seed: np.loadtxt + torch.topk per file",
            "files_measured": baseline["files"],
            "seconds_measured": round(baseline["seconds"], 3),
            "files_per_s": round(baseline_rate, 1),
            "projected_seconds_for_count": round(count / baseline_rate, 1),
            "note": f"measured on the first {baseline['files']} files and scaled to {count}",
        },
        "ratio": round(ours_rate / baseline_rate, 2),
        "same_hits_on_baseline_subset": agree,
        "bar": {
            "seconds": BAR_SECONDS, "count": BAR_COUNT,
            "projected_seconds_for_bar_count": round(BAR_COUNT / ours_rate, 3),
            "met": BAR_COUNT / ours_rate < BAR_SECONDS,
        },
    }
