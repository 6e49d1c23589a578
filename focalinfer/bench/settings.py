"""What a benchmark run measures and for how long: the backends, batch sizes, rounds, budgets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Callable

from focalinfer.defaults import DEFAULT_MODEL

SCHEMA = "focalinfer.bench/2"
FULL_BATCH_SIZES = (1, 4, 8, 16, 32, 64)
QUICK_BATCH_SIZES = (1, 16)
STAGES = ("preprocess", "eval", "inference")

# Backends in the order they run inside a round (the order rotates every round). focalinfer's own
# CPU path is the rewritten graph on whichever of ort / ov `--backend auto` picks on this machine;
# when auto also splits the batch into smaller calls, that path is timed on its own as `focalinfer`.
BACKENDS = {
    "focalinfer": "focalinfer's CPU path: rewritten graph on `--backend auto`'s backend, in its micro-batches",
    "ort": "onnxruntime, rewritten graph",
    "ov": "OpenVINO fp32, rewritten graph",
    "ov_tput": "OpenVINO fp32, rewritten graph, THROUGHPUT hint (the backend uses LATENCY)",
    "ort_naive": "onnxruntime, plain export (--no-rewrites)",
    "ov_naive": "OpenVINO fp32, plain export (--no-rewrites)",
    "ort_cpu": "onnxruntime, rewritten + CPU fusions (.cpu.onnx)",
    "eager": "PyTorch eager",
}
# What a user could pick instead of focalinfer: the goal is to beat the best of them.
PEERS = ("ort_naive", "ov_naive", "eager")
# The backends `--backend auto` chooses between, as the bench names them on the rewritten graph.
OURS_CANDIDATES = {"onnxruntime": "ort", "openvino": "ov"}
OPENVINO_BACKENDS = ("ov", "ov_tput", "ov_naive")
# Backends that run the --no-rewrites export.
NAIVE_BACKENDS = ("ort_naive", "ov_naive")
# Focal-fast-S on the seed's Ascend 310P3 at batch 1: the figure the CPU path is measured against.
SEED_310P3_BS1_IMG_PER_S = 6.06
TARGET_MODEL = DEFAULT_MODEL

# The quick run leaves out what only explains a setting: the fused CPU graph (an optimiser pass
# and one more backend per round; not part of the inference path) and OpenVINO's other hint.
QUICK_BACKENDS = ("ort", "ov", "ort_naive", "ov_naive", "eager")

Log = Callable[[str], None]


@dataclass
class BenchSettings:
    """Everything that decides what is measured and for how long."""

    models: list[str]
    batch_sizes: list[int]
    quick: bool = False
    rounds: int = 3
    budget_s: float = 1.0  # time per backend per round per batch size (at least min_iters calls)
    min_iters: int = 2
    max_iters: int = 200
    threads: int = 0  # 0 = every CPU this process may use
    stages: tuple[str, ...] = STAGES
    backends: tuple[str, ...] = tuple(BACKENDS)
    preprocess_count: int = 200
    preprocess_rounds: int = 3
    eval_count: int = 50_000  # the bar: 50,000 TXT outputs in under 5 s
    eval_baseline_count: int = 2000
    eval_repeats: int = 3
    gemm_n: int = 2048
    profile: bool = True
    # After the sweep, focalinfer at each batch size 4–64 and each peer at its best batch again,
    # interleaved in one measurement: the goal's cross-batch ratios (bench.side_by_side).
    side_by_side: bool = True
    # A batch size measured while other processes used more than this share of the CPUs is
    # measured again (after waiting up to quiet_wait_s for the machine to calm down), at most
    # `remeasure` times; the least disturbed attempt is kept and its share is reported.
    max_foreign_cpu: float = 0.10
    remeasure: int = 2
    quiet_wait_s: float = 180.0

    @classmethod
    def full(cls, models: list[str] | None = None, batch_sizes: list[int] | None = None, **kw) -> "BenchSettings":
        from focalinfer.registry import model_names

        return cls(models=list(models or model_names(lead_only=True)),
                   batch_sizes=list(batch_sizes or FULL_BATCH_SIZES), **kw)

    @classmethod
    def quick_run(cls, models: list[str] | None = None, batch_sizes: list[int] | None = None, **kw) -> "BenchSettings":
        """A few minutes: one model, focalinfer's path against its peers at batch 1 and 16, two
        short rounds, small stage samples."""
        defaults = dict(quick=True, backends=QUICK_BACKENDS, remeasure=0, rounds=2, budget_s=0.4, min_iters=1,
                        max_iters=50, preprocess_count=120, preprocess_rounds=1, eval_count=5000,
                        eval_baseline_count=500, eval_repeats=2, gemm_n=2048, profile=False)
        defaults.update(kw)
        return cls(models=list(models or [TARGET_MODEL]), batch_sizes=list(batch_sizes or QUICK_BATCH_SIZES),
                   **defaults)

    def installed_backends(self) -> tuple[str, ...]:
        """The selected backends this machine can run (OpenVINO's only with the extra installed)."""
        from focalinfer.backend import openvino

        return tuple(b for b in self.backends if b not in OPENVINO_BACKENDS or openvino.available())

    def key(self) -> str:
        """Identifies runs whose per-model results can be combined (for --resume)."""
        fields = asdict(self)
        fields.pop("models")
        fields.pop("stages")
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
