"""eval --csv: one row per run in timm's results-table columns, plus how the run computed.

timm's ``results-imagenet.csv`` columns first (top1/top5 in %, their errors 100 − acc, the
parameter count in millions, crop_pct = crop / resize), then backend, precision mode, batch size
and images/s. The file is rewritten atomically with the row added; its header must match.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from focalinfer.errors import FocalinferError
from focalinfer.registry import get_model_spec, model_names
from focalinfer.util import write_bytes_atomic

TIMM_COLUMNS = ("model", "img_size", "top1", "top1_err", "top5", "top5_err", "param_count", "crop_pct",
                "interpolation")
COLUMNS = TIMM_COLUMNS + ("backend", "precision_mode", "batch_size", "images_per_s")


def _header(path: Path) -> list[str] | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with path.open(newline="") as f:
        return next(csv.reader(f), None)


def check_results_csv(path: str | os.PathLike) -> None:
    """Refuse, before any work, a CSV whose header is not this table's."""
    path = Path(path)
    header = _header(path)
    if header is not None and tuple(header) != COLUMNS:
        raise FocalinferError(f"{path}: its header is not focalinfer's results table ({','.join(COLUMNS)}); "
                              "pass a new file to --csv")


def _model_facts(summary: dict) -> dict:
    """img_size, param_count, crop_pct and interpolation from the registry entry of the run's model."""
    name = summary.get("model")
    if not name or name not in model_names():
        return {}
    spec = get_model_spec(name)
    transform = spec.transform(summary.get("preset") or "official")
    params = spec.params
    if params is None:
        from focalinfer.models.checkpoint import parameter_count

        params = parameter_count(name)
    crop_pct = 1.0 if transform.resize_mode == "square" else transform.crop / transform.resize
    return {"img_size": transform.crop, "param_count": round(params / 1e6, 2) if params else "",
            "crop_pct": round(crop_pct, 4), "interpolation": transform.interpolation}


def csv_row(summary: dict) -> dict:
    top1, top5 = round(summary["Acc@1"], 3), round(summary["Acc@5"], 3)
    model = summary.get("model") or (Path(summary["model_file"]).stem if summary.get("model_file") else "")
    speed = summary.get("images_per_s")
    row = {"model": model, "top1": top1, "top1_err": round(100 - top1, 3), "top5": top5,
           "top5_err": round(100 - top5, 3), **_model_facts(summary),
           "backend": summary.get("backend") or "", "precision_mode": summary.get("precision_mode") or "",
           "batch_size": summary.get("batch_size") or "", "images_per_s": round(speed, 2) if speed else ""}
    return {column: row.get(column, "") for column in COLUMNS}


def append_results_csv(path: str | os.PathLike, summary: dict) -> Path:
    """Add the run's row (and the header to a new file)."""
    path = Path(path)
    check_results_csv(path)
    old = path.read_text() if _header(path) is not None else ""
    if old and not old.endswith("\n"):
        old += "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow(csv_row(summary))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (old + out.getvalue()).encode())
    return path
