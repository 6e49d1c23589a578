"""The figures result.json carries beside Acc@1/Acc@5: their 95 % intervals, every class's
accuracy (the ten worst printed), and calibration (mean top-1 confidence, ECE) — see docs/eval.md."""

from __future__ import annotations

import numpy as np

from focalinfer.metrics.stats import (
    ECE_BINS, expected_calibration_error, looks_like_probabilities, top1_confidence, wilson_interval,
)

CI_METHOD = "Wilson score interval, 95 %"
WORST_CLASSES = 10
PROBABILITIES_NOTE = ("the outputs are probabilities (every row in [0, 1], summing to 1), not logits: "
                      "confidence and ECE are taken from them as given, without a softmax")


def interval_percent(hits: int, n: int) -> list[float]:
    """The Wilson 95 % interval of hits / n, in percent."""
    lower, upper = wilson_interval(hits, n)
    return [100.0 * lower, 100.0 * upper]


def per_class(targets: np.ndarray, hit1: np.ndarray, hit5: np.ndarray) -> dict[str, dict]:
    """{class: {images, hit@1, hit@5, Acc@1, Acc@5}} for every class with a scored image, by class index."""
    classes, inverse, counts = np.unique(targets, return_inverse=True, return_counts=True)
    hits1 = np.bincount(inverse, weights=hit1, minlength=len(classes))
    hits5 = np.bincount(inverse, weights=hit5, minlength=len(classes))
    return {
        str(int(c)): {"images": int(n), "hit@1": int(h1), "hit@5": int(h5),
                      "Acc@1": 100.0 * h1 / n, "Acc@5": 100.0 * h5 / n}
        for c, n, h1, h5 in zip(classes, counts, hits1, hits5)
    }


def worst_classes(classes: dict[str, dict], count: int = WORST_CLASSES) -> list[dict]:
    """The classes of lowest Acc@1; among equals, more images first (more misses), then class index."""
    ranked = sorted(classes.items(), key=lambda kv: (kv[1]["Acc@1"], -kv[1]["images"], int(kv[0])))
    return [{"class": int(c), "images": row["images"], "hit@1": row["hit@1"], "Acc@1": row["Acc@1"]}
            for c, row in ranked[:count]]


def calibration(values: np.ndarray, rows: np.ndarray, hit1: np.ndarray) -> dict:
    """Mean top-1 confidence and ECE (15 equal-width bins) on the softmax of the scored rows."""
    scored = values[rows]
    note = None
    if looks_like_probabilities(scored):
        confidence, note = scored.max(axis=1).astype(np.float64), PROBABILITIES_NOTE
    else:
        confidence = top1_confidence(values, rows)
    ece, bins = expected_calibration_error(confidence, hit1, ECE_BINS)
    return {"mean_confidence": float(confidence.mean()), "ece": ece, "ece_bins": ECE_BINS,
            "calibration_note": note, "calibration_table": bins}


def accuracy_figures(targets: np.ndarray, hit1: np.ndarray, hit5: np.ndarray, values: np.ndarray,
                     rows: np.ndarray) -> tuple[dict, dict]:
    """(summary fields, per-class table) for ``targets`` in label space and the logits' scored ``rows``."""
    n = len(targets)
    classes = per_class(targets, hit1, hit5)
    summary = {
        "Acc@1_ci95": interval_percent(int(hit1.sum()), n),
        "Acc@5_ci95": interval_percent(int(hit5.sum()), n),
        "ci_method": CI_METHOD,
        **calibration(values, rows, hit1),
        "classes_scored": len(classes),
        "worst_classes": worst_classes(classes),
    }
    return summary, classes


def detail_lines(summary: dict) -> list[str]:
    """The printed lines above eval's Acc line: intervals and calibration, then the worst classes."""
    if "Acc@1_ci95" not in summary:
        return []
    a1, a5 = summary["Acc@1_ci95"], summary["Acc@5_ci95"]
    calib = (f"; mean top-1 confidence {summary['mean_confidence']:.3f}, ECE {100 * summary['ece']:.2f} % "
             f"({summary['ece_bins']} bins)" + (" (probabilities as given)" if summary["calibration_note"] else ""))
    lines = [f"  95 % intervals (Wilson): Acc@1 {a1[0]:.2f}–{a1[1]:.2f}, Acc@5 {a5[0]:.2f}–{a5[1]:.2f}{calib}"]
    worst = summary["worst_classes"]
    if worst:
        shown = ", ".join(f"{w['class']} {w['Acc@1']:.1f} % ({w['hit@1']}/{w['images']})" for w in worst)
        lines.append(f"  worst {len(worst)} of {summary['classes_scored']} classes by Acc@1: {shown}")
    return lines
