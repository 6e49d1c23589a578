"""The report's sections from the runs: accuracy, runs against the reference, flipped images,
worst classes, throughput, the precision check and the provenance chain."""

from __future__ import annotations

from focalinfer.metrics.paired import FLIP_KEYS, PAIRED_METHOD, Gate, paired_block
from focalinfer.metrics.stats import wilson_interval
from focalinfer.records import PrecisionRecord
from focalinfer.report import plots
from focalinfer.report.document import Cell, Figure, Gallery, Paragraph, Section, Table, Thumb
from focalinfer.report.runs import Run
from focalinfer.report.thumbs import thumbnail

FLIPS_SHOWN = 24
NO_PLOT = "matplotlib is not installed (pip install 'focalinfer[plot]'), so the table stands in for the plot"


def _pct(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(ci) -> str:
    return "–" if not ci else f"{ci[0]:.2f} – {ci[1]:.2f}"


def _delta(figures: dict) -> Cell:
    lo, hi = figures["delta_ci95"]
    return Cell(f"{figures['delta']:+.3f} ({lo:+.2f} to {hi:+.2f})", "bad" if figures["delta"] < 0 else None,
                "Δ in points, 95 % interval in brackets")


def accuracy_of(run: Run) -> dict:
    """Acc@1/Acc@5 with intervals (computed from the images for a result.json older than them)."""
    s, images = run.summary, run.record.images
    figures = {"Acc@1": s["Acc@1"], "Acc@5": s["Acc@5"]}
    for key in ("Acc@1", "Acc@5"):
        ci = s.get(f"{key}_ci95")
        if ci is None:
            lower, upper = wilson_interval(sum(bool(r[f"hit{key[3:]}"]) for r in images.values()), len(images))
            ci = [100 * lower, 100 * upper]
        figures[f"{key}_ci95"] = ci
    return figures


def _run_label(run: Run) -> str:
    s = run.summary
    parts = [s.get("backend"), s.get("precision_mode"), f"bs {s['batch_size']}" if s.get("batch_size") else None]
    return f"{run.name} ({', '.join(p for p in parts if p)})"


def accuracy_section(runs: list[Run]) -> Section:
    figures = [accuracy_of(r) for r in runs]
    real = any(r.summary.get("ReaL_count") for r in runs)
    headers = ["run", "model", "backend", "precision", "batch", "images", "Acc@1", "95 % interval", "Acc@5",
               "95 % interval", "mean conf.", "ECE"] + (["ReaL Acc@1", "ReaL Acc@5"] if real else [])
    rows = []
    for run, f in zip(runs, figures):
        s = run.summary
        ece = s.get("ece")
        row = [run.name, s.get("model") or "–", s.get("backend") or "–", s.get("precision_mode") or "–",
               str(s.get("batch_size") or "–"), str(s["count"]), Cell(f"{f['Acc@1']:.3f}"),
               Cell(_interval(f["Acc@1_ci95"]), "muted"), Cell(f"{f['Acc@5']:.3f}"),
               Cell(_interval(f["Acc@5_ci95"]), "muted"), _pct(s.get("mean_confidence"), 3),
               Cell("–" if ece is None else f"{100 * ece:.2f} %", title=s.get("calibration_note"))]
        if real:
            row += [_pct(s.get("ReaL_Acc@1"), 3), _pct(s.get("ReaL_Acc@5"), 3)]
        rows.append(row)
    table = Table(headers, rows)
    png = plots.accuracy_plot([_run_label(r) for r in runs], figures)
    notes = [Paragraph("Intervals: Wilson score, 95 %, from the counts. ECE: expected calibration error over 15 "
                       "equal-width bins of the top-1 softmax probability.", "muted")]
    notes += [Paragraph(f"{r.name}: {r.summary['calibration_note']}", "muted")
              for r in runs if r.summary.get("calibration_note")]
    blocks = [table] + ([Figure(png, "Acc@1 and Acc@5 of each run, with 95 % intervals", table)] if png else [])
    return Section("Accuracy", blocks + notes, "accuracy")


def comparisons(runs: list[Run], gate: Gate) -> list[tuple[Run, dict]]:
    """Every run after the first against the first (the reference)."""
    reference = runs[0]
    return [(run, paired_block(reference.record.images, run.record.images, gate)) for run in runs[1:]]


def _gate_cell(block: dict) -> Cell:
    gate = block["gate"]
    if gate is None:
        return Cell("no gate", "muted")
    return Cell("PASS" if gate["passed"] else "FAIL", "good" if gate["passed"] else "bad", gate["line"])


def against_section(runs: list[Run], compared: list[tuple[Run, dict]], gate: Gate) -> Section:
    if not compared:
        return Section("Against the reference", [Paragraph("One run only: nothing to compare with.", "muted")],
                       "reference")
    headers = ["run", "images", "top-1 agree", "ΔAcc@1 (95 % interval)", "p (McNemar)",
               "ΔAcc@5 (95 % interval)", "p", "flips: right → wrong / wrong → right", "gate"]
    rows = []
    for run, block in compared:
        one, five = block["Acc@1"], block["Acc@5"]
        rows.append([
            run.name, str(block["count"]), f"{100 * block['top1_agreement']:.2f} %", _delta(one),
            f"{one['p_value']:.3g}", _delta(five), f"{five['p_value']:.3g}",
            f'{len(block["flips"][FLIP_KEYS[0]])} / {len(block["flips"][FLIP_KEYS[1]])}', _gate_cell(block),
        ])
    text = (f"Reference: {runs[0].name}. Δ = run − reference over the images both scored; interval: {PAIRED_METHOD}. "
            f"Gate: {gate.describe()}" + (" (MLPerf asks for a ratio ≥ 0.99)." if gate.active else
                                          " (pass --max-drop PTS and/or --min-ratio R to gate)."))
    blocks = [Table(headers, rows), Paragraph(text, "muted")]
    blocks += [Paragraph(block["gate"]["line"], "good" if block["gate"]["passed"] else "bad")
               for _, block in compared if block["gate"]]
    return Section("Against the reference", blocks, "reference")


def _thumbs(run: Run, reference: Run, flips: list[dict], tone: str) -> list[Thumb]:
    thumbs = []
    for flip in flips[:FLIPS_SHOWN]:
        stem = flip["image"].split(".", 1)[0]
        mark = {True: "✓", False: "✗"}
        caption = [flip["image"], f"label {flip['label']}",
                   f"{reference.name}: {flip['top1_a']} {mark[flip['top1_a'] == flip['label']]}",
                   f"{run.name}: {flip['top1_b']} {mark[flip['top1_b'] == flip['label']]}"]
        thumbs.append(Thumb(thumbnail(run.sources.get(stem) or reference.sources.get(stem)), caption, tone))
    return thumbs


def flips_section(runs: list[Run], compared: list[tuple[Run, dict]]) -> Section:
    blocks = []
    for run, block in compared:
        lost, gained = (block["flips"][k] for k in FLIP_KEYS)
        more = lambda flips: f" (first {FLIPS_SHOWN} of {len(flips)})" if len(flips) > FLIPS_SHOWN else ""  # noqa: E731
        blocks.append(Gallery(f"{run.name}: right in {runs[0].name}, wrong here — {len(lost)}{more(lost)}",
                              _thumbs(run, runs[0], lost, "bad"), "none: no image lost its right top-1"))
        blocks.append(Gallery(f"{run.name}: wrong in {runs[0].name}, right here — {len(gained)}{more(gained)}",
                              _thumbs(run, runs[0], gained, "good"), "none"))
    if not blocks:
        blocks = [Paragraph("One run only: no flips to show.", "muted")]
    return Section("Flipped images", blocks, "flips")


def worst_section(runs: list[Run]) -> Section:
    """Each run's ten worst classes, and every run's accuracy on them."""
    classes = []
    for run in runs:
        for row in run.summary.get("worst_classes") or []:
            if row["class"] not in classes:
                classes.append(row["class"])
    if not classes:
        return Section("Worst classes", [Paragraph("The result files carry no per-class table (made before it "
                                                   "existed): rerun eval.", "muted")], "classes")
    rows = []
    for c in classes:
        cells = [str(c)]
        for run in runs:
            entry = run.record.per_class.get(str(c))
            cells.append(Cell(f"{entry['Acc@1']:.1f} % ({entry['hit@1']}/{entry['images']})") if entry else Cell("–"))
        rows.append(cells)
    return Section("Worst classes", [Table(["class"] + [f"Acc@1 in {r.name}" for r in runs], rows,
                                           "The ten classes of lowest Acc@1 of each run (more images first among "
                                           "equals), with every run's Acc@1 on them")], "classes")


def speed_section(runs: list[Run], bench: list[tuple[str, int, float]]) -> Section:
    points = [(f"runs: {r.summary.get('backend') or 'unknown'}", int(r.summary["batch_size"]),
               float(r.summary["images_per_s"])) for r in runs
              if r.summary.get("images_per_s") and r.summary.get("batch_size")]
    points += bench
    if not points:
        return Section("Throughput", [Paragraph("No run recorded its images/s (and no --bench JSON given).", "muted")],
                       "speed")
    table = Table(["series", "batch size", "images/s"], [[s, str(b), f"{v:.2f}"] for s, b, v in sorted(points)])
    png = plots.speed_plot(points)
    note = ("images/s: real images over the measured compute time (result.json's images_per_s); dashed lines: "
            "the `bench all` JSON given with --bench.")
    return Section("Throughput", [Figure(png, "images/s per batch size", table, None if png else NO_PLOT),
                                  Paragraph(note, "muted")], "speed")


def precision_section(record: PrecisionRecord | None) -> Section:
    if record is None:
        return Section("Precision check", [Paragraph("No precision report found (pass --precision "
                                                     "precision.json, or keep it in <ONNX folder>/precision/).",
                                                     "muted")], "precision")
    tone = {"fp16-safe": "good", "keep-dtype": None, "fp32": "bad"}.get(record.verdict)
    rows = [["verdict", Cell(record.verdict, tone)], ["emulated ATC mode", record.mode],
            ["ATC flags", " ".join(record.atc_flags) or "–"], ["samples", str(record.samples)],
            ["ONNX", f"{record.onnx} (sha256 {record.onnx_sha256[:12]}…)"]]
    fp16 = (record.emulated or {}).get("fp16") or {}
    for key, value in fp16.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "samples":
            rows.append([f"emulated fp16 vs fp32: {key.replace('_', ' ')}", f"{value:.6g}"])
    keep = record.keep_dtype
    keep_text = Paragraph(f"Keep list ({len(keep)} nodes kept fp32): " + (", ".join(keep) if keep else "empty"))
    return Section("Precision check", [Table(["", ""], rows), keep_text], "precision")


def provenance_section(runs: list[Run]) -> Section:
    blocks = []
    for run in runs:
        rows = [[link.what, Cell(link.path or "–"), Cell(link.sha256[:16] + "…" if link.sha256 else "–", "muted",
                                                          link.sha256), Cell(link.note, "muted")]
                for link in run.provenance]
        blocks.append(Table(["", "file", "sha256", "note"], rows, run.name))
    return Section("Provenance", blocks, "provenance")
