"""What ``focalinfer infer`` says about a finished run's speed, from the summaries it (or ais_bench) wrote.

A run over images reports real images/s (padding excluded; the devices' figures added, since they
run in parallel) beside ais_bench's own formula. Pure inference has no images: it reports its
loop time, labelled, and no images/s.
"""

from __future__ import annotations

import json
from pathlib import Path

from focalinfer import layout


def summary_paths(result) -> list[Path]:
    """The run's summary, or one per device folder (either ais_bench layout)."""
    if result.summary_path is not None:
        return [Path(result.summary_path)]
    return [layout.summary_beside(d) for d in result.device_dirs]


def _summaries(result) -> list[dict | None]:
    found = []
    for path in summary_paths(result):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = None
        found.append(info if isinstance(info, dict) else None)
    return found


def images_per_s(result) -> float | None:
    """Real images over the timed runs, summed over devices; None for pure inference or a resumed run."""
    if getattr(result, "pure_inference", False):
        return None
    values = [layout.real_images_per_s(info, result.batch_size) if info else None for info in _summaries(result)]
    return sum(values) if values and all(v is not None for v in values) else None


def mean_run_ms(result) -> tuple[float, int] | None:
    """(mean ms, runs) over every timed run of every device, or None when no times were written."""
    times = [float(t) for info in _summaries(result) if info for t in info.get("npu_compute_time_list") or []]
    return (sum(times) / len(times), len(times)) if times else None


def speed_text(result) -> str:
    """The speed part of the ``infer:`` line, each figure labelled."""
    if result.pure_inference:
        timed = mean_run_ms(result)
        if timed is None:
            return ", pure inference (no images)"
        return f", pure inference (no images): {timed[1]} timed runs of batch {result.batch_size}, mean {timed[0]:.3f} ms a run"
    real = images_per_s(result)
    text = f", {real:.1f} images/s" if real else ""
    if result.throughput:
        text += f", {result.throughput:.1f} samples/s by ais_bench's formula (padding counted)"
    return text
