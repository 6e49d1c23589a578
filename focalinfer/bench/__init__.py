"""The benchmark: every stage against its baseline, inference per batch size, docs/benchmarks.md.

One module per concern: ``settings`` (what a run measures), ``machine`` (machine facts and fp32
GEMM rates), ``timing`` (interleaved rounds, other processes' CPU share), ``prepare`` (cached
checkpoints, exports and CPU graphs), ``inference`` (one model's backends per batch size),
``targets`` (the issue's goals), ``report`` (docs sections, plot, terminal summary) and ``run``
(``focalinfer bench all``). ``cpu_graph``, ``profile`` and ``macs`` hold the fused CPU graph,
onnxruntime profiles (and ``bench profile``) and MAC counting; ``preprocess`` and ``eval`` the stage benchmarks.
"""

from focalinfer.bench.report import terminal_summary
from focalinfer.bench.run import bench_all, parse_list, run_bench
from focalinfer.bench.settings import BenchSettings

__all__ = ["BenchSettings", "bench_all", "parse_list", "run_bench", "terminal_summary"]
