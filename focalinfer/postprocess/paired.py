"""Accuracy of a run against a reference run on the images both scored: the flips each way,
ΔAcc@1 and ΔAcc@5 with their paired 95 % interval and exact McNemar p-value, and the gate.

``compare A B --labels`` builds the per-image rows from the two folders' logits; ``eval
--reference RESULT.json`` from the two result.json files. Both rows look like result.json's
``images`` entries: {label, top5, hit@1, hit@5}. A is the reference, B the run under test.
"""

from __future__ import annotations

import os

import numpy as np

from focalinfer.errors import FocalinferError
from focalinfer.metrics.paired import PAIRED_METHOD, Gate, paired_accuracy
from focalinfer.records import EvalRecord
from focalinfer.util import sha256_file

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


def _delta_text(what: str, figures: dict) -> str:
    lo, hi = figures["delta_ci95"]
    return (f"Δ{what} {figures['delta']:+.3f} points (95 % CI {lo:+.3f} to {hi:+.3f}; "
            f"{figures['acc_a']:.3f} → {figures['acc_b']:.3f}), p = {figures['p_value']:.3g}")


def paired_lines(block: dict, a_name: str, b_name: str, flips_shown: int = 10) -> list[str]:
    """Lines for the terminal: agreement, flips, both deltas, the gate's verdict."""
    lost, gained = (block["flips"][k] for k in FLIP_KEYS)
    lines = [
        f"  against {a_name} (reference) on {block['count']} common images: top-1 agreement "
        f"{100 * block['top1_agreement']:.2f} %; {len(lost)} right in the reference and wrong here, "
        f"{len(gained)} the reverse",
        f"  {_delta_text('Acc@1', block['Acc@1'])}; {_delta_text('Acc@5', block['Acc@5'])} (exact McNemar)",
    ]
    for flips, what in ((lost, f"right in {a_name}, wrong in {b_name}"), (gained, f"wrong in {a_name}, right in {b_name}")):
        if flips:
            shown = ", ".join(f"{f['image']} ({f['label']}: {f['top1_a']}→{f['top1_b']})" for f in flips[:flips_shown])
            more = f", … {len(flips) - flips_shown} more" if len(flips) > flips_shown else ""
            lines.append(f"    {what}: {shown}{more}")
    if block["gate"]:
        lines.append(f"  {block['gate']['line']}")
    return lines


def against_reference(images: dict, reference: EvalRecord, gate: Gate) -> dict:
    """eval --reference: result.json's ``reference`` block (this run is B, the reference A)."""
    block = paired_block(reference.images, images, gate)
    s = reference.summary
    return {"file": str(reference.path), "sha256": sha256_file(reference.path),
            **{k: s.get(k) for k in ("model", "model_file", "backend", "batch_size", "precision_mode")}, **block}


def gate_failure(block: dict | None) -> str | None:
    """The gate's one failure line, None when it passed or did not run."""
    gate = (block or {}).get("gate")
    return gate["line"] if gate and not gate["passed"] else None


def reference_name(path: str | os.PathLike) -> str:
    return os.path.basename(os.fspath(path))
