"""Where stages meet: ``eval`` with a model file is infer then score (the only place that runs both)."""

from __future__ import annotations

import os
from pathlib import Path

from focalinfer.defaults import DATABIN_DIR, RESULT_JSON
from focalinfer.errors import ToolMissingError, UsageError
from focalinfer.infer import run_inference
from focalinfer.postprocess import EvalResult, score_results, write_result


def evaluate(
    labels_file: str | os.PathLike, *, results_dir: str | os.PathLike | None = None,
    model_file: str | os.PathLike | None = None, input_dir: str | os.PathLike = DATABIN_DIR,
    output: str | os.PathLike = RESULT_JSON, outfmt: str | None = None,
    batch_size: int | None = None, model: str | None = None, num_classes: int | None = None,
    backend: str | None = None, workers: int | None = None, allow_transform_mismatch: bool = False,
) -> tuple[EvalResult, Path]:
    """Score ``results_dir``, or first run ``model_file`` (.om → ais_bench, .onnx → onnxruntime) on
    ``input_dir`` into ``<output dir>/<output stem>/``; write result.json to ``output``."""
    if (results_dir is None) == (model_file is None):
        raise UsageError("pass exactly one of a model file (--om / --onnx) or --results DIR")
    output = Path(output)
    throughput = None
    if model_file is not None:
        model_file = Path(model_file)
        backend = backend or ("ais_bench" if model_file.suffix.lower() == ".om" else "onnxruntime")
        try:
            run = run_inference(
                model_file, input_dir=input_dir, output=output.parent, output_dirname=output.stem,
                outfmt=(outfmt or "TXT").upper(), batch_size=batch_size, backend=backend,
                allow_transform_mismatch=allow_transform_mismatch,
            )
        except ToolMissingError as e:
            if backend != "ais_bench":
                raise
            # infer's hint names infer's flags; say it in eval's terms.
            raise ToolMissingError(
                f"{model_file}: running an .om needs ais_bench (CANN and an NPU), not installed here; score the "
                "ONNX on CPU with --onnx X.onnx, or score a folder ais_bench wrote on the NPU host with --results DIR"
            ) from e
        results_dir, outfmt, batch_size = run.output_dir, run.outfmt, run.batch_size
        throughput, backend = run.throughput, run.backend
        model = model or model_file.stem
    result = score_results(
        results_dir, labels_file, outfmt=outfmt, num_classes=num_classes, model=model,
        backend=backend, batch_size=batch_size, throughput=throughput, workers=workers,
    )
    return result, write_result(result, output)

