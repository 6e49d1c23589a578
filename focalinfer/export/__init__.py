"""Export stage: checkpoint → ONNX with Ascend-friendly rewrites, onnxsim, parity and an ATC lint."""

from focalinfer.export.exporter import ExportReport, ParityError, available_rewrites, export_onnx, report_path_for
from focalinfer.export.lint import Finding, LintResult, lint_onnx

__all__ = [
    "ExportReport", "Finding", "LintResult", "ParityError", "available_rewrites", "export_onnx",
    "lint_onnx", "report_path_for",
]
