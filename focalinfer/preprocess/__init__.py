"""Stage 1: ImageNet val images → .bin files (float32 NCHW, or uint8 NHWC for AIPP) with the model's official eval transform."""

from focalinfer.preprocess.run import PreprocessResult, preprocess

__all__ = ["PreprocessResult", "preprocess"]
