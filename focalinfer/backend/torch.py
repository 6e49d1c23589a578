"""PyTorch eager: the reference every other backend is compared with, behind the runner interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from focalinfer.backend.base import Runner, TensorSpec


class EagerRunner(Runner):
    """A registry model (or any module taking one NCHW float32 batch) run in ``torch.inference_mode``.

    ``model``: an ``nn.Module``, or a registry name whose ``checkpoint`` is loaded strictly.
    """

    backend = "eager"

    def __init__(self, model, checkpoint: str | Path | None = None, *, input_size: int | None = None,
                 threads: int | None = None, num_classes: int | None = None):
        import torch

        from focalinfer.registry import get_model_spec

        if isinstance(model, str):
            from focalinfer.models.checkpoint import load_model

            spec = get_model_spec(model)
            input_size = input_size or spec.input_size
            num_classes = num_classes or spec.num_classes
            model = load_model(spec.name, checkpoint) if checkpoint is not None else spec.build()
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self._input = TensorSpec("image", (None, 3, input_size, input_size) if input_size else (None, 3, None, None),
                                 np.dtype(np.float32))
        self._outputs = [TensorSpec("class", (None, num_classes), np.dtype(np.float32))]

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(batch)))
        return [out.numpy()]
