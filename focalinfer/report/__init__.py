"""`focalinfer report RUN…`: one self-contained HTML page (or Markdown) a person reads about one
run or several — accuracy with intervals, each run against the first (the reference) with Δ,
p-value and the gate's verdict, the flipped images, the worst classes, images/s per batch size,
the precision check and the provenance chain.

It reads result.json files and the other stages' records through focalinfer.records only
(tests/test_architecture.py checks it imports no stage package).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from focalinfer import __version__
from focalinfer.metrics.paired import Gate
from focalinfer.report.document import Document, Paragraph
from focalinfer.report.render import to_html, to_markdown
from focalinfer.report.runs import bench_speeds, find_precision, load_run
from focalinfer.report.sections import (
    accuracy_section, against_section, comparisons, flips_section, precision_section, provenance_section,
    speed_section, worst_section,
)
from focalinfer.util import ensure_writable_file, write_bytes_atomic

FORMATS = ("html", "md")


@dataclass
class ReportResult:
    path: Path
    gate_failures: list[str]
    runs: int


def _verdict(runs, compared, gate: Gate) -> Paragraph:
    reference = runs[0].name
    if not compared:
        s = runs[0].summary
        return Paragraph(f"{reference}: Acc@1 {s['Acc@1']:.3f}, Acc@5 {s['Acc@5']:.3f} on {s['count']} images", "muted")
    if gate.active:
        failed = [(run, block) for run, block in compared if not block["gate"]["passed"]]
        if failed:
            run, block = failed[0]
            who = f"{run.name} fails" if len(compared) == 1 else f"{len(failed)} of {len(compared)} runs fail"
            return Paragraph(f"{who} the gate against {reference} — {run.name}: "
                             f"{block['gate']['line'].removeprefix('gate FAILED: ')}", "bad")
        who = f"{compared[0][0].name} passes" if len(compared) == 1 else f"All {len(compared)} runs pass"
        return Paragraph(f"{who} the gate against {reference} ({gate.describe()})", "good")
    worst = min(compared, key=lambda rb: rb[1]["Acc@1"]["delta"])
    one = worst[1]["Acc@1"]
    return Paragraph(f"Against {reference}: the largest ΔAcc@1 is {one['delta']:+.3f} points ({worst[0].name}, "
                     f"p = {one['p_value']:.3g}); no gate given", "muted")


def build_report(run_files: list[str | os.PathLike], out: str | os.PathLike, *, fmt: str = "html",
                 gate: Gate = Gate(), precision: str | os.PathLike | None = None,
                 bench: str | os.PathLike | None = None, title: str | None = None) -> ReportResult:
    """Write the report of ``run_files`` (the first is the reference) to ``out``."""
    out = ensure_writable_file(out, "report")
    runs = [load_run(path) for path in run_files]
    compared = comparisons(runs, gate)
    models = sorted({r.summary.get("model") for r in runs if r.summary.get("model")})
    doc = Document(
        title=title or f"focalinfer report — {', '.join(models) or runs[0].name}",
        subtitle=(f"{len(runs)} run{'s' * (len(runs) > 1)}; reference {runs[0].name}; "
                  f"written {time.strftime('%Y-%m-%d %H:%M %Z')}"),
        verdict=_verdict(runs, compared, gate),
        sections=[accuracy_section(runs), against_section(runs, compared, gate), flips_section(runs, compared),
                  worst_section(runs), speed_section(runs, bench_speeds(bench, models[0] if models else None)),
                  precision_section(find_precision(runs, precision)), provenance_section(runs)],
    )
    footer = f"focalinfer {__version__} — self-contained: no script, nothing loaded from the network"
    text = to_html(doc, footer) if fmt == "html" else to_markdown(doc, footer)
    write_bytes_atomic(out, text.encode())
    failures = [f"{run.name}: {block['gate']['line']}" for run, block in compared
                if block["gate"] and not block["gate"]["passed"]]
    return ReportResult(out, failures, len(runs))
