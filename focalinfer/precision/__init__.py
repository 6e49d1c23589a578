"""The precision check: predict on the CPU what ATC's fp16 does to accuracy, and the keep-dtype list that fixes it.

- ``emulate``: the fp32 graph with explicit fp16 rounding where a mode stores fp16;
- ``ranges``: the range lint (activations and initializers beyond fp16, divisors flushed to zero);
- ``search``: the verdict and the keep-list search (lint, known groups, bisection, pruning);
- ``report``: precision.json, keep_dtype.cfg and the terminal table;
- ``run``: :func:`run_precision`, the command's library function.

See docs/precision.md.
"""

from focalinfer.precision.data import Samples, load_samples
# The emulate() function stays in its module: re-exported here it would shadow the module
# focalinfer.precision.emulate as an attribute of this package.
from focalinfer.precision.emulate import MODES, analyse, precision_plan, round_fp16
from focalinfer.precision.evaluate import Figures, Thresholds, score
from focalinfer.precision.ranges import RangeLint, lint_nodes
from focalinfer.precision.run import PrecisionResult, run_precision
from focalinfer.precision.search import Search, SearchResult

__all__ = ["MODES", "Figures", "PrecisionResult", "RangeLint", "Samples", "Search", "SearchResult",
           "Thresholds", "analyse", "lint_nodes", "load_samples", "precision_plan", "round_fp16",
           "run_precision", "score"]
