"""ImageNet-ReaL ("Are we done with ImageNet?", Beyer et al. 2020): accuracy against the
reassessed labels, beside the original.

``real.json`` is a JSON list with one list of valid class indices per validation image, in
file order (ILSVRC2012_val_00000001 first). Images whose list is empty have no valid label and
are left out of ReaL accuracy. A hit is a top-1 (top-5) class in the image's list.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from focalinfer.errors import FocalinferError
from focalinfer.layout import name_stem
from focalinfer.postprocess.accuracy import interval_percent
from focalinfer.util import sha256_file

IMAGENET_VAL = re.compile(r"ILSVRC2012_val_(\d{8})$")


def read_real_labels(path: str | os.PathLike) -> list[list[int]]:
    """The lists of ``path``; one line naming the file and the fix when it is not ReaL's format."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FocalinferError(f"{path}: ReaL label file not found; pass ImageNet-ReaL's real.json") from None
    except (OSError, ValueError) as e:
        raise FocalinferError(f"{path}: not readable JSON ({e}); pass ImageNet-ReaL's real.json") from None
    if not isinstance(data, list) or not all(
            isinstance(row, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in row)
            for row in data):
        raise FocalinferError(f"{path}: not ReaL's format (a JSON list with one list of class indices per "
                              "validation image, in file order); pass ImageNet-ReaL's real.json")
    return data


def _entry_of(names: list[str], real: list, path) -> dict[str, int]:
    """image name → index into ``real``: ILSVRC2012_val_N is entry N − 1; other names, their sorted order."""
    stems = {name: name_stem(os.path.basename(name)) for name in names}
    numbered = {name: IMAGENET_VAL.match(stem) for name, stem in stems.items()}
    if all(numbered.values()):
        index = {name: int(m.group(1)) - 1 for name, m in numbered.items()}
        beyond = [name for name, i in index.items() if i >= len(real)]
        if beyond:
            raise FocalinferError(f"{path}: {len(real)} entries, but {beyond[0]} is validation image "
                                  f"{index[beyond[0]] + 1}; pass the real.json of the whole validation set")
        return index
    if len(real) != len(names):
        raise FocalinferError(f"{path}: {len(real)} entries for {len(names)} labelled images whose names are not all "
                              "ILSVRC2012_val_NNNNNNNN; entries are matched to the images in sorted name order, "
                              "so the counts must agree")
    return {name: i for i, name in enumerate(sorted(names))}


def real_figures(images: dict, labelled: list[str], real: list, path: str | os.PathLike) -> dict:
    """result.json's ReaL fields for the scored ``images`` ({name: {top5, ...}}); ``labelled`` is
    every labelled image's name (the sorted-order rule counts them all)."""
    entry = _entry_of(labelled, real, path)
    scored = [(real[entry[name]], row["top5"]) for name, row in images.items()]
    judged = [(set(valid), top5) for valid, top5 in scored if valid]
    hit1 = np.array([top5[0] in valid for valid, top5 in judged], bool)
    hit5 = np.array([any(c in valid for c in top5) for valid, top5 in judged], bool)
    n = len(judged)
    return {
        "ReaL_Acc@1": 100.0 * float(hit1.mean()) if n else None,
        "ReaL_Acc@5": 100.0 * float(hit5.mean()) if n else None,
        "ReaL_Acc@1_ci95": interval_percent(int(hit1.sum()), n) if n else None,
        "ReaL_Acc@5_ci95": interval_percent(int(hit5.sum()), n) if n else None,
        "ReaL_count": n,
        "ReaL_excluded": len(scored) - n,
        "ReaL_labels_file": str(path),
        "ReaL_labels_sha256": sha256_file(path),
    }


def real_line(summary: dict) -> str | None:
    if "ReaL_count" not in summary:
        return None
    if not summary["ReaL_count"]:
        return f"  ReaL: no scored image has a valid ReaL label ({summary['ReaL_labels_file']})"
    lo, hi = summary["ReaL_Acc@1_ci95"]
    return (f"  ReaL Acc@1 {summary['ReaL_Acc@1']:.3f} ({lo:.2f}–{hi:.2f})  ReaL Acc@5 {summary['ReaL_Acc@5']:.3f}  "
            f"({summary['ReaL_count']} images; {summary['ReaL_excluded']} without a valid ReaL label left out)")
