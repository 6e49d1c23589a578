"""The issue's targets, each met / not met / not measured (and why)."""

from __future__ import annotations

from focalinfer.bench.settings import SEED_310P3_BS1_IMG_PER_S, TARGET_MODEL

def evaluate_targets(models: dict) -> list[dict]:
    """The issue's targets, each met / not met / not measured (and why)."""
    targets = []
    focal = models.get(TARGET_MODEL, {})
    by_batch = {b["batch_size"]: b for b in focal.get("batches", [])}
    ratio16 = by_batch.get(16, {}).get("ratio_vs_eager", {}).get("ort")
    targets.append(_target(f"{TARGET_MODEL}: onnxruntime / eager img/s at batch 16", TARGET_MODEL, ratio16, 1.5,
                           _why_missing(focal, 16)))
    bs1 = by_batch.get(1, {}).get("results", {}).get("ort", {}).get("img_per_s")
    targets.append(_target(f"{TARGET_MODEL}: onnxruntime img/s at batch 1 (seed 310P3: {SEED_310P3_BS1_IMG_PER_S})",
                           TARGET_MODEL, bs1, SEED_310P3_BS1_IMG_PER_S, _why_missing(focal, 1), strict=True))
    for name, record in models.items():
        ratio = record.get("best_ratio_vs_eager", {}).get("ort")
        targets.append(_target(f"{name}: best onnxruntime / best eager img/s", name, ratio, 1.2,
                               record.get("skipped")))
    return targets


def _why_missing(record: dict, batch: int) -> str | None:
    if not record:
        return "not in this run"
    if record.get("skipped"):
        return record["skipped"]
    if batch not in {b["batch_size"] for b in record.get("batches", [])}:
        return f"batch {batch} not in this run"
    return None


def _target(name: str, model: str, value, threshold: float, missing: str | None, strict: bool = False) -> dict:
    met = None if value is None else (value > threshold if strict else value >= threshold)
    return {"target": name, "model": model, "value": value, "threshold": threshold,
            "rule": ">" if strict else ">=", "met": met, "not_measured": None if value is not None else missing}
