"""precision.json and keep_dtype.cfg (written atomically, through records.PrecisionRecord) and the table."""

from __future__ import annotations

from pathlib import Path

from focalinfer.atc_rules import KEEP_ORIGIN_MODE
from focalinfer.precision.emulate import ADVICE_MODES
from focalinfer.precision.evaluate import Figures, Thresholds
from focalinfer.precision.ranges import RangeLint, format_lint
from focalinfer.records import PrecisionRecord, keep_dtype_path
from focalinfer.util import write_bytes_atomic

# When none of the fallbacks passes: the mode with no fp16 at all.
EXACT_FALLBACK = KEEP_ORIGIN_MODE


def atc_flags(verdict: str, mode: str, keep_file: Path | None, advice: dict[str, Figures],
              thresholds: Thresholds) -> list[str]:
    """The flags to add to atc for this verdict."""
    if verdict == "fp16-safe":
        return [f"--precision_mode={mode}"]
    if verdict == "keep-dtype":
        return [f"--precision_mode={mode}", f"--keep_dtype={keep_file}"]
    passing = [m for m in ADVICE_MODES if m in advice and thresholds.passed(advice[m])]
    return [f"--precision_mode={passing[0] if passing else EXACT_FALLBACK}"]


def write_report(record: PrecisionRecord, out_dir: Path) -> tuple[Path, Path | None]:
    """keep_dtype.cfg first (or a stale one removed), then precision.json, which points at it."""
    keep_file = keep_dtype_path(out_dir)
    if record.verdict == "keep-dtype":
        write_bytes_atomic(keep_file, "".join(f"{name}\n" for name in record.keep_dtype).encode())
    else:
        keep_file.unlink(missing_ok=True)
        keep_file = None
    return record.write(out_dir), keep_file


def format_table(record: PrecisionRecord, lint: RangeLint, thresholds: Thresholds) -> str:
    """What the terminal shows: the runs against fp32, the range lint, the verdict and the flags."""
    rows = [("mode", "top-1 agree", "min cosine", "mean cosine", "max |diff|")]
    emulated = record.emulated
    rows.append(_row(f"{record.mode}", emulated.get("fp16")))
    if emulated.get("with_keep_dtype"):
        kept = len(record.keep_dtype) or (record.extra.get("search") or {}).get("kept", 0)
        rows.append(_row(f"{record.mode} + {kept} kept",
                         emulated["with_keep_dtype"]))
    for mode, figures in (emulated.get("advice") or {}).items():
        rows.append(_row(mode, figures))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"precision: {record.onnx}, {record.samples} samples, {record.runs} emulated run(s), "
             f"{record.seconds:.1f} s"]
    lines += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    lines += format_lint(lint)
    lines.append(f"verdict: {record.verdict} (min cosine ≥ {thresholds.min_cosine:g}, "
                 f"top-1 agreement ≥ {thresholds.min_top1:g} %)")
    if record.verdict == "keep-dtype":
        shown = ", ".join(record.keep_dtype[:6]) + (" …" if len(record.keep_dtype) > 6 else "")
        lines.append(f"keep in fp32 ({len(record.keep_dtype)}): {shown}")
    if record.verdict == "fp32":
        lines.append("no short keep list passes: use an fp32 mode (figures above)")
    lines.append("atc flags: " + " ".join(record.atc_flags))
    return "\n".join(lines)


def _row(label: str, figures: dict | None) -> tuple[str, ...]:
    if not figures:
        return (label, "-", "-", "-", "-")

    def number(key, fmt):
        value = figures.get(key)
        return "nan" if value is None else format(value, fmt)

    return (label, number("top1_agreement", ".2f") + " %", number("min_cosine", ".6f"),
            number("mean_cosine", ".6f"), number("max_abs", ".4g"))
