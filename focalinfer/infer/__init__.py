"""The infer stage: run an .om (ais_bench) or an .onnx (onnxruntime, OpenVINO) over preprocessed .bin
files and write ais_bench's output contract (docs/contract.md). One resolved :class:`InferPlan` per run.
"""

from focalinfer.infer.plan import InferPlan, parse_devices, plan_inference
from focalinfer.infer.run import InferResult, execute, run_inference

__all__ = ["InferPlan", "InferResult", "execute", "parse_devices", "plan_inference", "run_inference"]
