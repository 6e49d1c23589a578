"""Stage 1: ImageNet val images → float32 NCHW .bin files with the model's official eval transform."""

from focalinfer.preprocess.run import PreprocessResult, preprocess

__all__ = ["PreprocessResult", "preprocess"]
