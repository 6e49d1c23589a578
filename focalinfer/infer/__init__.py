"""The infer stage: run an .om (ais_bench) or an .onnx (onnxruntime) over preprocessed .bin files
and write ais_bench's output contract (docs/contract.md).
"""

from focalinfer.infer.run import InferResult, parse_devices, run_inference

__all__ = ["InferResult", "parse_devices", "run_inference"]
