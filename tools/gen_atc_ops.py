#!/usr/bin/env python3
"""Derive focalinfer/data/atc_onnx_ops.json from msit's ONNX → Ascend op map.

Usage:
    git --git-dir=<msit mirror> show <commit>:msit/components/analyze/model_evaluation/data/map_conf/onnx.yaml > onnx.yaml
    python tools/gen_atc_ops.py onnx.yaml --commit <commit> [--out focalinfer/data/atc_onnx_ops.json]

The yaml has one line per (opset, ONNX op): ``ai.onnx::<opset>::<OnnxOp>: <AscendOp>``. We keep
only which ONNX op types exist for each opset of the default domain (8–18), which is all the lint
needs. Two lines of the upstream file join two keys with ``""``; each key counts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

SOURCE_REPO = "https://github.com/Ascend/msit"
SOURCE_PATH = "msit/components/analyze/model_evaluation/data/map_conf/onnx.yaml"
LICENSE = "Mulan PSL v2 (http://license.coscl.org.cn/MulanPSL2)"
OPSETS = range(8, 19)
KEY = re.compile(r"ai\.onnx::(\d+)::([A-Za-z0-9_]+)")


def parse_op_table(text: str) -> dict[int, set[str]]:
    """opset → ONNX op types listed for it (default domain only)."""
    table: dict[int, set[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("ai.onnx::"):
            continue
        keys, _, _ascend_op = line.rpartition(":")
        for opset, op_type in KEY.findall(keys):
            table.setdefault(int(opset), set()).add(op_type)
    return table


def build_document(table: dict[int, set[str]], commit: str) -> dict:
    missing = [opset for opset in OPSETS if not table.get(opset)]
    if missing:
        raise SystemExit(f"the yaml lists no op for opset(s) {missing}; is it the right file?")
    return {
        "source": {
            "repository": SOURCE_REPO,
            "path": SOURCE_PATH,
            "commit": commit,
            "license": LICENSE,
            "derived_by": "tools/gen_atc_ops.py",
        },
        "note": (
            "ONNX op types (default domain) that ATC's ONNX parser maps to an Ascend op, per opset. "
            "Presence says ATC converts the op, not that it runs fast on AI Core."
        ),
        "opsets": {str(opset): sorted(table[opset]) for opset in OPSETS},
    }


def render(document: dict) -> str:
    """Indented JSON with each opset's op list on one line (diffs stay readable)."""
    opsets = document["opsets"]
    head = json.dumps({k: v for k, v in document.items() if k != "opsets"}, indent=1)[:-2]
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in opsets.items())
    return f"{head},\n \"opsets\": {{\n{rows}\n }}\n}}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("yaml", type=Path, help="path of msit's map_conf/onnx.yaml")
    parser.add_argument("--commit", required=True, help="msit commit the yaml was read at")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "focalinfer/data/atc_onnx_ops.json")
    args = parser.parse_args(argv)
    document = build_document(parse_op_table(args.yaml.read_text(encoding="utf-8")), args.commit)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(render(document), encoding="utf-8")
    tmp.replace(args.out)
    sizes = ", ".join(f"{k}:{len(v)}" for k, v in document["opsets"].items())
    print(f"wrote {args.out} (ops per opset {sizes})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
