"""The om stage: ONNX → .om with CANN's ATC (build) and a report of the toolchain here (doctor)."""

from focalinfer.atc.build import (OmBuild, OnnxInput, build_atc_argv, build_om, find_om, parse_batch_sizes,
                                  read_onnx_input)

__all__ = ["OmBuild", "OnnxInput", "build_atc_argv", "build_om", "find_om", "parse_batch_sizes", "read_onnx_input"]
