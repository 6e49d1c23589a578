"""The verdict and, when fp16 fails, the search for a short list of nodes to keep in fp32.

1. The mode with no list: passing means ``fp16-safe``.
2. The range-lint nodes and their chains (ranges.lint_nodes).
3. Known groups added one at a time: LayerNorm pieces, Softmax, Exp, Erf, ReduceSum, Div.
4. When neither passes: bisection over runs of nodes in graph order, as onnxconverter-common's
   ``auto_convert_mixed_precision`` does: start with every node fp32, try a run in fp16, keep it
   if the result passes, split it in half if not; a failing single node stays fp32; accepted
   runs are never revoked. Every state it holds passes, so it may stop at any point.
5. Pruning of a list from 2 or 3: whole groups first, then each node of a lint list (mostly
   needed nodes: n runs), or the same bisection over a list still holding a group.

A failed full run makes its worst samples "sentinels": later runs go over those first, and a
sentinel cosine below ``--min-cosine`` rejects the run without the other samples (the minimum over
a subset bounds the minimum over all from above, so no verdict changes; a passing run always
covers every sample).

Every list is emulated with its bridges: the data-movement nodes between two kept nodes, which
the list then names too, so ATC moves those values in fp32 as well. A list is short when it holds
at most ``SHORT_LIST_FRACTION`` of the computing nodes (at least ``SHORT_LIST_MIN``); otherwise
the verdict is ``fp32`` with the figures of the fp32 modes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from focalinfer.defaults import PRECISION_MAX_RUNS
from focalinfer.atc_rules import keep_dtype_applies
from focalinfer.metrics import row_cosine
from focalinfer.precision.emulate import ADVICE_MODES, EXACT_OPS, GraphInfo, WeightStore, build_model, precision_plan
from focalinfer.precision.evaluate import Evaluator, Figures, Thresholds, score
from focalinfer.progress import progress_bar

SHORT_LIST_FRACTION = 0.2
SHORT_LIST_MIN = 8
GROUPS = ("LayerNorm", "Softmax", "Exp", "Erf", "ReduceSum", "Div")


@dataclass
class SearchResult:
    verdict: str  # fp16-safe | keep-dtype | fp32
    keep: set[int]
    base: Figures
    with_keep: Figures | None
    advice: dict[str, Figures] = field(default_factory=dict)  # fp32 modes, for verdict fp32
    steps: list[dict] = field(default_factory=list)
    runs: int = 0
    out_of_runs: bool = False


class _OutOfRuns(Exception):
    pass


class Search:
    """One search: emulated runs against the fp32 reference logits, cached by precision plan."""

    def __init__(self, info: GraphInfo, weights: WeightStore, evaluator: Evaluator, reference, mode: str,
                 thresholds: Thresholds, max_runs: int = PRECISION_MAX_RUNS, progress: bool = False):
        self.info, self.weights, self.evaluator = info, weights, evaluator
        self.reference, self.mode, self.thresholds = reference, mode, thresholds
        self.max_runs = max_runs
        self.runs = 0
        self.steps: list[dict] = []
        self._cache: dict[tuple, Figures] = {}
        self._best: set[int] | None = None  # the last list that passed
        # The samples that failed worst so far: a run is tried on them first (see _emulated).
        self._sentinels: list[int] = []
        self.out_of_runs = False
        # tqdm on a terminal (with the stage and list length), one summary line in a log
        self._bar = progress_bar(desc=f"precision {mode}", unit="run", enabled=progress, leave=False)

    @property
    def short_limit(self) -> int:
        return max(SHORT_LIST_MIN, int(SHORT_LIST_FRACTION * len(self.info.candidates)))

    # --- runs ---

    def figures(self, keep: set[int] = frozenset(), mode: str | None = None, stage: str = "",
                full: bool = False) -> Figures:
        """The emulated run of ``mode`` with ``keep`` in fp32 (lists giving the same plan share one run).

        Unless ``full``, a failing run may stop after the sentinel samples (its figures then cover
        those only); a passing run always covers every sample.
        """
        mode = mode or self.mode
        plan = precision_plan(self.info, mode, keep | bridges(self.info, keep))
        key = tuple(plan)
        if key not in self._cache:
            if self.runs >= self.max_runs:
                raise _OutOfRuns
            session = self.evaluator.session(build_model(self.info, plan, self.weights))
            self.runs += 1
            self._cache[key] = figures = self._emulated(session, full)
            self.steps.append({"stage": stage, "mode": mode, "kept": len(keep),
                               "passed": self.thresholds.passed(figures), **figures.as_dict()})
            self._bar.update(1)
            if hasattr(self._bar, "set_postfix_str"):
                self._bar.set_postfix_str(f"{stage}: {len(keep)} kept")
        return self._cache[key]

    def _emulated(self, session, full: bool) -> Figures:
        """Run the sentinels first: their minimum cosine bounds the whole set's from above, so a
        sentinel cosine below the threshold rejects the run without the other samples."""
        count = len(self.reference)
        if full or not self._sentinels:
            logits = self.evaluator.run(session)
        else:
            sentinels = np.array(self._sentinels)
            first = self.evaluator.run(session, rows=sentinels)
            cosine = row_cosine(self.reference[sentinels], first)
            if not (np.isfinite(first).all() and cosine.min() >= self.thresholds.min_cosine):
                return score(self.reference[sentinels], first)
            rest = np.setdiff1d(np.arange(count), sentinels)
            logits = np.empty_like(self.reference)
            logits[sentinels], logits[rest] = first, self.evaluator.run(session, rows=rest)
        figures = score(self.reference, logits)
        if not self.thresholds.passed(figures):
            self._watch(logits)
        return figures

    def _watch(self, logits: np.ndarray) -> None:
        """After a failed full run: its two worst samples join the sentinels (one batch of them)."""
        size = self.evaluator.batch_size
        if len(self.reference) < 2 * size:
            return  # a sentinel batch would save little
        cosine = np.nan_to_num(row_cosine(self.reference, logits), nan=-2.0)
        worst = [int(i) for i in np.argsort(cosine, kind="stable")]
        self._sentinels = list(dict.fromkeys(worst[:2] + self._sentinels + worst))[:size]

    def _passes(self, keep: set[int], stage: str) -> bool:
        if self.thresholds.passed(self.figures(keep, stage=stage)):
            self._best = set(keep)
            return True
        return False

    # --- the search ---

    def run(self, lint_keep: set[int]) -> SearchResult:
        try:
            base = self.figures(stage="fp16")
            if self.thresholds.passed(base):
                return self._result("fp16-safe", set(), base)
            if not keep_dtype_applies(self.mode):  # ATC would ignore a list: nothing to search for
                return self._fp32(base, None)
            try:
                self._search(lint_keep)
            except _OutOfRuns:
                self.out_of_runs = True  # the last list that passed stands
            keep = self._best
            if keep is None or len(keep) > self.short_limit:
                return self._fp32(base, keep)
            keep = keep | bridges(self.info, keep)
            return self._result("keep-dtype", keep, base, self.figures(keep, stage="final"))
        finally:
            self._bar.close()

    def _search(self, lint_keep: set[int]) -> None:
        """Lint, then groups (each pruned when it passes), else bisection over the whole graph."""
        keep, added = set(lint_keep), []
        if keep and self._passes(keep, "range lint"):
            return self._prune(keep, added)
        for name, group in known_groups(self.info):
            if group <= keep:
                continue
            keep = keep | group
            added.append(group)
            if self._passes(keep, f"group {name}"):
                return self._prune(keep, added)
        everything = set(self.info.candidates)
        if self._passes(everything, "bisection"):  # fails only if rounding the input alone does
            self._release(self.info.candidates, everything, "bisection")

    def _prune(self, keep: set[int], added: list[set[int]]) -> None:
        """Drop what a lint or group list does not need: whole groups first. A list still holding a
        group is mostly unneeded nodes, so bisection drops them in runs; a lint list is mostly
        needed nodes, where trying each node once (n runs) beats bisection (up to 2n - 1)."""
        for group in reversed(added):
            trial = keep - group
            if trial != keep and self._passes(trial, "pruning groups"):
                keep = trial
        if any(group & keep for group in added):
            self._release(sorted(keep), keep, "pruning")
            return
        for index in sorted(keep):
            if self._passes(keep - {index}, "pruning"):
                keep = keep - {index}

    def _release(self, order: list[int], keep: set[int], stage: str) -> None:
        """Bisection: move runs of ``order`` from ``keep`` to fp16 while the result passes."""
        queue = deque([list(order)])
        while queue:
            run = [i for i in queue.popleft() if i in keep]
            if not run:
                continue
            trial = keep - set(run)
            if self._passes(trial, stage):
                keep = trial
            elif len(run) > 1:
                queue.extend([run[:len(run) // 2], run[len(run) // 2:]])

    def _fp32(self, base: Figures, keep: set[int] | None) -> SearchResult:
        """No short list: the figures of ATC's fp32 fallbacks, always measured."""
        self.max_runs = max(self.max_runs, self.runs + 3)
        advice = {mode: self.figures(mode=mode, stage="advice", full=True)
                  for mode in ADVICE_MODES if mode != self.mode}
        with_keep = self.figures(keep) if keep else None  # cached: it passed
        result = self._result("fp32", set(keep or ()), base, with_keep)
        result.advice = advice
        return result

    def _result(self, verdict: str, keep: set[int], base: Figures, with_keep: Figures | None = None) -> SearchResult:
        return SearchResult(verdict, keep, base, with_keep, steps=self.steps, runs=self.runs,
                            out_of_runs=self.out_of_runs)


def known_groups(info: GraphInfo) -> list[tuple[str, set[int]]]:
    """The node groups that usually need fp32, in the order they are tried (empty ones left out)."""
    by_type: dict[str, set[int]] = {}
    for node in info.nodes:
        by_type.setdefault(node.op_type, set()).add(node.index)
    groups = {
        "LayerNorm": layernorm_nodes(info),
        "Softmax": by_type.get("Softmax", set()) | by_type.get("LogSoftmax", set()),
        "Exp": by_type.get("Exp", set()),
        "Erf": by_type.get("Erf", set()),
        "ReduceSum": by_type.get("ReduceSum", set()),
        "Div": by_type.get("Div", set()),
    }
    return [(name, groups[name]) for name in GROUPS if groups[name]]


def layernorm_nodes(info: GraphInfo) -> set[int]:
    """The pieces of decomposed LayerNorms: mean → Sub → Pow → ReduceMean → Add → Sqrt → Div
    (plus LayerNormalization ops)."""
    found = {n.index for n in info.nodes if n.op_type == "LayerNormalization"}
    chain = ("ReduceMean", "Add", "Sqrt", "Div")
    for node in info.nodes:
        if node.op_type != "Pow":
            continue
        pieces, tensor = [node.index], node.float_outputs[0] if node.float_outputs else None
        for op_type in chain:
            nxt = [i for i in info.consumers.get(tensor, []) if info.nodes[i].op_type == op_type]
            if not nxt:
                break
            pieces.append(nxt[0])
            tensor = info.nodes[nxt[0]].float_outputs[0] if info.nodes[nxt[0]].float_outputs else None
        else:
            source = node.float_inputs[0][1] if node.float_inputs else None
            sub = info.producer.get(source)
            if sub is not None and info.nodes[sub].op_type == "Sub":
                pieces.append(sub)
                for _, name in info.nodes[sub].float_inputs:
                    mean = info.producer.get(name)
                    if mean is not None and info.nodes[mean].op_type == "ReduceMean":
                        pieces.append(mean)
            found.update(pieces)
    return found


def bridges(info: GraphInfo, keep: set[int]) -> set[int]:
    """Data-movement nodes on a path of them from a kept node to a kept node: listed too, so ATC
    moves those values in fp32. (ONNX nodes are in topological order: one pass each way.)"""
    moves = [n for n in info.nodes if n.op_type in EXACT_OPS and n.index not in keep]
    after: set[int] = set()  # reached from a kept node through moves
    for node in moves:
        if any(info.producer.get(name) in keep or info.producer.get(name) in after for _, name in node.float_inputs):
            after.add(node.index)
    before: set[int] = set()  # reaching a kept node through moves
    for node in reversed(moves):
        if any(i in keep or i in before for out in node.float_outputs for i in info.consumers.get(out, [])):
            before.add(node.index)
    return after & before
