"""Accuracy of a run against a reference run on the images both scored: the flips each way,
ΔAcc@1 and ΔAcc@5 with their paired 95 % interval and exact McNemar p-value, and the gate.

``compare A B --labels`` builds the per-image rows from the two folders' logits; ``eval
--reference RESULT.json`` from the two result.json files. Both rows look like result.json's
``images`` entries: {label, top5, hit@1, hit@5}. A is the reference, B the run under test.
"""

from __future__ import annotations

from focalinfer.metrics.paired import FLIP_KEYS, Gate, paired_block
from focalinfer.records import EvalRecord
from focalinfer.util import sha256_file


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
