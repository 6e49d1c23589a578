"""Two runs scored on the same images: ΔAcc with its paired interval and p-value, and the gate.

A is the reference (the fp32 run), B the candidate (the .om). Used by ``compare --labels``,
``eval --reference`` and ``focalinfer report``, so the three say the same thing about the
same two runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from focalinfer.metrics.stats import mcnemar_exact_p, newcombe_paired_interval

PAIRED_METHOD = "Newcombe's method 10 (paired Wilson), 95 %; p: exact McNemar (two-sided binomial on the flips)"


def paired_accuracy(hit_a, hit_b) -> dict:
    """Acc of A and B, Δ = B − A in points with its 95 % interval, and the exact McNemar p-value.

    ``a_only``: images right in A and wrong in B (B's losses); ``b_only``: the reverse.
    """
    hit_a, hit_b = np.asarray(hit_a, bool), np.asarray(hit_b, bool)
    n = len(hit_a)
    both = int((hit_a & hit_b).sum())
    a_only = int((hit_a & ~hit_b).sum())
    b_only = int((~hit_a & hit_b).sum())
    lower, upper = newcombe_paired_interval(both, a_only, b_only, n - both - a_only - b_only)
    acc_a, acc_b = (100.0 * both + 100.0 * a_only) / n, (100.0 * both + 100.0 * b_only) / n
    return {
        "count": n, "acc_a": acc_a, "acc_b": acc_b, "delta": 100.0 * (b_only - a_only) / n,
        "delta_ci95": [100.0 * lower, 100.0 * upper], "p_value": mcnemar_exact_p(a_only, b_only),
        "a_only": a_only, "b_only": b_only,
    }


@dataclass(frozen=True)
class Gate:
    """MLPerf-style acceptance of B against A on Acc@1 point estimates: a drop of at most
    ``max_drop`` points and/or at least ``min_ratio`` of A's accuracy (MLPerf: 0.99)."""

    max_drop: float | None = None
    min_ratio: float | None = None

    @property
    def active(self) -> bool:
        return self.max_drop is not None or self.min_ratio is not None

    def describe(self) -> str:
        parts = ([f"drop ≤ {self.max_drop:g} points"] if self.max_drop is not None else []) + (
            [f"ratio ≥ {self.min_ratio:g}"] if self.min_ratio is not None else [])
        return " and ".join(parts) or "none"

    def check(self, acc_a: float, acc_b: float, what: str = "Acc@1") -> dict:
        """{passed, failures: [one phrase each, with by how much], line} for accuracies in %."""
        failures = []
        drop = acc_a - acc_b
        if self.max_drop is not None and drop > self.max_drop + 1e-9:
            failures.append(f"{what} dropped {drop:.3f} points ({acc_a:.3f} → {acc_b:.3f}), "
                            f"{drop - self.max_drop:.3f} more than --max-drop {self.max_drop:g}")
        ratio = acc_b / acc_a if acc_a > 0 else (1.0 if acc_b == 0 else float("inf"))
        if self.min_ratio is not None and ratio < self.min_ratio - 1e-12:
            failures.append(f"{what} ratio {ratio:.4f} ({acc_b:.3f} / {acc_a:.3f}) is {self.min_ratio - ratio:.4f} "
                            f"below --min-ratio {self.min_ratio:g}")
        if failures:
            line = "gate FAILED: " + "; ".join(failures)
        else:
            line = f"gate passed: {what} {acc_a:.3f} → {acc_b:.3f} ({-drop:+.3f} points, ratio {ratio:.4f}; {self.describe()})"
        return {"passed": not failures, "max_drop": self.max_drop, "min_ratio": self.min_ratio,
                "drop": drop, "ratio": ratio, "failures": failures, "line": line}
