"""Running a (probe or emulated) graph over the samples, and scoring it against fp32.

Each candidate configuration is one onnxruntime session (from ``backend.onnxrt.make_session``)
over the samples in batches. Graphs are written to a scratch folder beside their shared weight
file, so building a session for a new candidate does not re-serialise the weights.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from focalinfer.backend.onnxrt import make_session
from focalinfer.defaults import PRECISION_MIN_COSINE, PRECISION_MIN_TOP1
from focalinfer.metrics import compare_logits, topk_indices


@dataclass(frozen=True)
class Thresholds:
    min_cosine: float = PRECISION_MIN_COSINE
    min_top1: float = PRECISION_MIN_TOP1  # percent

    def passed(self, figures: "Figures") -> bool:
        return bool(np.isfinite(figures.max_abs) and figures.min_cosine >= self.min_cosine
                    and figures.top1_agreement >= self.min_top1)


@dataclass(frozen=True)
class Figures:
    """An emulated run against fp32 on the same samples."""

    top1_agreement: float  # percent; a flip between classes within one fp16 step counts as agreement
    min_cosine: float
    mean_cosine: float
    max_abs: float
    top1_flips: int  # samples whose top-1 changed, ties included
    top1_ties: int  # of those, flips between logits within one fp16 step (fp16 cannot order them)
    samples: int  # compared (fewer than all when the run was rejected on the sentinel samples)

    def as_dict(self) -> dict:
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(value):
    """JSON has no NaN or infinity: those become null (an unusable run)."""
    if isinstance(value, float):
        return float(f"{value:.9g}") if np.isfinite(value) else None  # 9 digits: 0.9989999 stays below 0.999
    return value


def score(reference: np.ndarray, candidate: np.ndarray) -> Figures:
    """How far ``candidate`` logits are from fp32 ``reference``, per sample (N, C).

    The .om stores its logits in fp16, so two classes whose fp32 logits are less than one fp16
    step apart cannot be ordered by any fp16 model; a top-1 change between such classes is
    counted as agreement (and reported as a tie).
    """
    comparison = compare_logits(reference, candidate)
    ref_top = topk_indices(reference, 1)[:, 0]
    cand = np.nan_to_num(candidate, nan=-np.inf)
    cand_top = topk_indices(cand, 1)[:, 0]
    flipped = np.nonzero(ref_top != cand_top)[0]
    rows = np.arange(len(reference))
    best = reference[rows, ref_top].astype(np.float64)
    step = np.spacing(np.abs(best).astype(np.float16)).astype(np.float64)
    ties = int(np.sum(reference[flipped, cand_top[flipped]] >= best[flipped] - step[flipped]))
    count = max(len(reference), 1)
    finite = bool(np.isfinite(candidate).all())
    return Figures(
        top1_agreement=100.0 * (len(reference) - len(flipped) + ties) / count,
        min_cosine=comparison.cosine_min if finite else float("nan"),
        mean_cosine=comparison.cosine_mean if finite else float("nan"),
        max_abs=comparison.max_abs_diff if finite else float("inf"),
        top1_flips=int(len(flipped)),
        top1_ties=ties,
        samples=int(len(reference)),
    )


class Evaluator:
    """Runs graphs over the samples: ``batch_size`` per session.run, padded for a static batch.

    ``emulated_input``: what emulated runs are fed instead of ``samples`` (AIPP's fp16 output).
    """

    def __init__(self, samples: np.ndarray, input_name: str, batch_size: int, static_batch: bool,
                 workdir: Path, threads: int | None = None, emulated_input: np.ndarray | None = None):
        self.samples, self.input_name = samples, input_name
        self.emulated_input = samples if emulated_input is None else emulated_input
        self.batch_size, self.static_batch = batch_size, static_batch
        self.workdir, self.threads = Path(workdir), threads
        self._serial = itertools.count()

    def session(self, model, optimization: str = "all"):
        """A session for ``model`` (a ModelProto whose external weights live in ``workdir``)."""
        path = self.workdir / f"graph-{next(self._serial)}.onnx"
        path.write_bytes(model.SerializeToString())
        try:
            return make_session(path, self.threads, optimization=optimization)
        finally:
            path.unlink(missing_ok=True)  # onnxruntime has read it; the weights stay mapped

    def run(self, session, outputs: list[str] | None = None, each_batch=None, rows=None,
            emulated: bool = True) -> np.ndarray:
        """The first output over the samples (or the ``rows`` of them), (N, ...); ``each_batch(outputs)``
        sees every batch's outputs. ``emulated=False``: the fp32 reference's input."""
        names = outputs or [session.get_outputs()[0].name]
        samples = self.emulated_input if emulated else self.samples
        samples = samples if rows is None else samples[rows]
        first = []
        for start in range(0, len(samples), self.batch_size):
            batch = samples[start:start + self.batch_size]
            real = len(batch)
            if self.static_batch and real < self.batch_size:
                pad = np.repeat(batch[:1], self.batch_size - real, axis=0)  # ais_bench's padding rule
                batch = np.concatenate([batch, pad])
            values = session.run(names, {self.input_name: np.ascontiguousarray(batch)})
            first.append(values[0][:real])
            if each_batch is not None:
                each_batch(values)
        return np.concatenate(first)
