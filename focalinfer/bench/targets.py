"""The issues' targets, each met / not met / not measured (and why).

- :func:`evaluate_targets`: issue 7's (onnxruntime against eager, the seed's 310P3 at batch 1);
- :func:`evaluate_goal`: issue 13's, per model at its best batch: focalinfer's CPU path ÷ the best
  peer (onnxruntime and OpenVINO on the plain export, eager), the lead model's fraction of the fp32
  GEMM limit, and no batch-size cliff between batch 4 and 64.
"""

from __future__ import annotations

from focalinfer.bench.settings import PEERS, SEED_310P3_BS1_IMG_PER_S, TARGET_MODEL
from focalinfer.bench.side_by_side import CLIFF_BATCHES, OURS, config_name

GOAL_VS_BEST_PEER = 1.0
GOAL_FRACTION_OF_LIMIT = 0.75
GOAL_NO_CLIFF = 0.85

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


def ours_label(ours: dict) -> str:
    """'openvino' or 'onnxruntime, 4/call': what focalinfer's path ran on."""
    runtime = ours.get("runtime") or ours["backend"]
    return runtime + (f", {ours['micro_batch']}/call" if ours.get("backend") == "focalinfer" else "")


def evaluate_goal(models: dict) -> list[dict]:
    """Issue 13's goal table, one row per model and criterion: from the side-by-side measurement
    when the run made one (bench.side_by_side), else from the sweep's batch sizes."""
    rows = []
    for name, record in models.items():
        if record.get("skipped") or "best_ours" not in record:
            reason = record.get("skipped") or "focalinfer's path was not measured"
            rows.append(_target(f"{name}: focalinfer ÷ best peer (best batches)", name, None, GOAL_VS_BEST_PEER, reason))
            continue
        missing = [p for p in PEERS if p not in record.get("best", {})]
        figures = _side_by_side_figures(record) if record.get("side_by_side") else _sweep_figures(record)
        rows += _goal_rows(name, missing, *figures)
    return rows


def _goal_rows(name: str, missing: list[str], peer: tuple, fraction: tuple, cliff: tuple) -> list[dict]:
    """The goal's rows for one model from (value, detail) of each criterion; a None value is 'not
    measured' (the cliff's tuple also carries the batch range's own reason)."""
    title = f"{name}: focalinfer ÷ best peer (best batches)" + (f"; not measured: {', '.join(missing)}" if missing else "")
    rows = [_with_detail(_target(title, name, peer[0], GOAL_VS_BEST_PEER, None if peer[0] is not None else
                                 "no peer measured"), peer[1])]
    if name == TARGET_MODEL:
        rows.append(_with_detail(_target(f"{name}: fraction of the fp32 GEMM limit (best batch)", name, fraction[0],
                                         GOAL_FRACTION_OF_LIMIT, None if fraction[0] is not None else
                                         "no GEMM limit measured"), fraction[1]))
    low, high = CLIFF_BATCHES
    rows.append(_with_detail(_target(f"{name}: slowest batch {low}–{high} ÷ best batch", name, cliff[0], GOAL_NO_CLIFF,
                                     None if cliff[0] is not None else f"no batch size {low}–{high} in this run"),
                             cliff[1]))
    return rows


def _with_detail(row: dict, detail: str | None) -> dict:
    if detail:
        row["detail"] = detail
    return row


def _sweep_figures(record: dict) -> tuple:
    """(value, detail) per criterion from the sweep: each batch size measured at its own time."""
    ours = record["best_ours"]
    peers = {p: record["best"][p] for p in PEERS if p in record["best"]}
    top = max(peers, key=lambda p: peers[p]["img_per_s"]) if peers else None
    value = round(ours["img_per_s"] / peers[top]["img_per_s"], 3) if top else None
    detail = (f"focalinfer ({ours_label(ours)}) {ours['img_per_s']:.2f} img/s at bs {ours['batch_size']}; "
              + (f"best peer {top} {peers[top]['img_per_s']:.2f} img/s at bs {peers[top]['batch_size']}; "
                 f"per-round ratio at bs {ours['batch_size']}: {ours['vs_best_peer']:.2f}×" if top else ""))
    low, high = CLIFF_BATCHES
    inside = [b for b in record["batches"] if low <= b["batch_size"] <= high and "ours" in b]
    worst = min(inside, key=lambda b: b["ours"]["img_per_s"]) if inside else None
    cliff = (round(worst["ours"]["img_per_s"] / ours["img_per_s"], 3),
             f"bs {worst['batch_size']}: {worst['ours']['img_per_s']:.2f} img/s ({ours_label(worst['ours'])})"
             ) if worst else (None, None)
    return (value, detail), (ours.get("fraction_of_limit"), None), cliff


def _side_by_side_figures(record: dict) -> tuple:
    """(value, detail) per criterion from the side-by-side measurement after the sweep."""
    side = record["side_by_side"]
    configs = side["configs"]
    ours = configs[side["ours_best"]]
    sweep = {b["batch_size"]: b["ours"] for b in record["batches"] if "ours" in b}
    detail = f"focalinfer ({ours_label(sweep[ours['batch_size']])}) {ours['img_per_s']:.2f} img/s at bs {ours['batch_size']}"
    peer = configs.get(side.get("best_peer"))
    if peer:
        detail += (f"; best peer {peer['backend']} {peer['img_per_s']:.2f} img/s at bs {peer['batch_size']}; "
                   f"side by side, {side['rounds']} rounds")
    fraction_detail = (f"limit per round {', '.join(f'{x:.0f}' for x in side['limit_gflops_per_round'])} GFLOP/s "
                       "(2048³ MatMul, best of torch / onnxruntime / OpenVINO, in the same rounds)"
                       if side.get("gemm_gflops") else None)
    cliff, cliff_detail = side["vs_best_batch"], None
    worst = min(cliff, key=cliff.get) if cliff else None
    if worst:
        slow = configs[config_name(OURS, int(worst))]
        cliff_detail = (f"bs {worst}: {slow['img_per_s']:.2f} img/s ({ours_label(sweep[int(worst)])}) against "
                        f"bs {ours['batch_size']}, side by side")
    return ((side.get("vs_best_peer") if peer else None, detail), (side.get("fraction_of_limit"), fraction_detail),
            (cliff[worst] if worst else None, cliff_detail))


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
