"""The hazards `focalinfer bench precision` plants: fp32 unchanged, fp16 broken the way it says."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "precision"))  # the planted graphs live there
import planted  # noqa: E402

from focalinfer.backend.onnxrt import make_session  # noqa: E402
from focalinfer.bench.precision import plant_layernorm_overflow, plant_underflow  # noqa: E402
from focalinfer.precision import run_precision  # noqa: E402


def logits(model, x):
    return make_session(model).run(None, {"image": x})[0]


def test_planted_hazards_keep_fp32_and_are_found_the_way_the_bench_says(tmp_path):
    inputs = planted.write_inputs(tmp_path / "databin", 16)
    x = np.stack([np.fromfile(p, np.float32).reshape(planted.SHAPE) for p in sorted(inputs.glob("*.bin"))])
    reference = logits(planted.clean_net(), x)
    cases = {"lint": (plant_layernorm_overflow, {"norm/Pow", "norm/ReduceMean_1", "norm/Add", "norm/Sqrt"}),
             "bisection": (plant_underflow, {"planted/underflow/Mul", "planted/underflow/Div"})}
    for name, (plant, expected) in cases.items():
        model = plant(planted.clean_net())
        onnx.checker.check_model(model)
        # A LayerNorm is scale-free and 2^-24 is a power of two: fp32 does not notice either.
        np.testing.assert_allclose(logits(model, x), reference, rtol=1e-4, atol=1e-4)
        record = run_precision(planted.save(model, tmp_path / f"{name}.onnx"), inputs, tmp_path / name,
                               samples=16).record
        stages = {step["stage"] for step in record.extra["search"]["steps"]}
        assert record.verdict == "keep-dtype" and set(record.keep_dtype) == expected, (name, record.keep_dtype)
        assert ("range lint" in stages) == (name == "lint") and ("bisection" in stages) == (name == "bisection")
