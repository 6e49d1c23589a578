"""Two runs scored on the same images: ΔAcc with its paired interval and p-value, the flips, and the gate.

A is the reference (the fp32 run), B the candidate (the .om). Used by ``compare --labels``,
``eval --reference`` and ``focalinfer report``, so the three say the same thing about the
same two runs. Per-image rows look like result.json's ``images`` entries: {label, top5, hit@1, hit@5}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from focalinfer.errors import FocalinferError
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
            line = (f"gate passed: {what} {acc_a:.3f} → {acc_b:.3f} ({acc_b - acc_a:+.3f} points, ratio {ratio:.4f}; "
                    f"{self.describe()})")
        return {"passed": not failures, "max_drop": self.max_drop, "min_ratio": self.min_ratio,
                "drop": drop, "ratio": ratio, "failures": failures, "line": line}


FLIP_KEYS = ("right_in_a_wrong_in_b", "wrong_in_a_right_in_b")


def _flip(name: str, a: dict, b: dict) -> dict:
    return {"image": name, "label": a["label"], "top1_a": a["top5"][0], "top1_b": b["top5"][0]}


def paired_block(images_a: dict, images_b: dict, gate: Gate) -> dict:
    """The comparison of B with A over the images both have, with the same label in both."""
    common = [name for name in images_a if name in images_b and images_a[name]["label"] == images_b[name]["label"]]
    if not common:
        raise FocalinferError("the two runs share no scored image with the same label; compare runs over the same "
                              "images and label file")
    a = [images_a[n] for n in common]
    b = [images_b[n] for n in common]
    hits = {k: (np.array([r[k] for r in a]), np.array([r[k] for r in b])) for k in ("hit@1", "hit@5")}
    acc1, acc5 = paired_accuracy(*hits["hit@1"]), paired_accuracy(*hits["hit@5"])
    lost = [_flip(n, ra, rb) for n, ra, rb in zip(common, a, b) if ra["hit@1"] and not rb["hit@1"]]
    gained = [_flip(n, ra, rb) for n, ra, rb in zip(common, a, b) if rb["hit@1"] and not ra["hit@1"]]
    return {
        "count": len(common),
        "only_in_a": sum(1 for n in images_a if n not in images_b),
        "only_in_b": sum(1 for n in images_b if n not in images_a),
        "top1_agreement": float(np.mean([ra["top5"][0] == rb["top5"][0] for ra, rb in zip(a, b)])),
        "Acc@1": acc1, "Acc@5": acc5,
        "flips": {FLIP_KEYS[0]: lost, FLIP_KEYS[1]: gained},
        "gate": gate.check(acc1["acc_a"], acc1["acc_b"]) if gate.active else None,
        "method": PAIRED_METHOD,
    }
