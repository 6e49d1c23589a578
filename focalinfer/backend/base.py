"""The one runner interface every inference backend implements (Polygraphy's ``BaseRunner`` idea).

A runner loads one model, describes its single input and runs a batch. The base class times every
call (:meth:`Runner.infer` around the subclass's :meth:`Runner._infer`), so no backend times itself;
a backend whose device reports its own compute times (ais_bench) overrides :meth:`device_times_ms`.
What to do with the outputs (ais_bench's files, parity figures, timings) is the caller's:
comparing results lives in ``focalinfer.metrics``, writing them in ``focalinfer.layout``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from focalinfer.errors import FocalinferError


@dataclass(frozen=True)
class TensorSpec:
    """A model tensor: ``shape[0]`` is None when the batch axis is dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def static_batch(self) -> int | None:
        return self.shape[0] if self.shape else None

    def sample_bytes(self) -> int:
        dims = self.shape[1:]
        if any(d is None for d in dims):
            raise FocalinferError(
                f"model input {self.name!r} has dynamic dimensions {self.shape} beyond the batch axis; "
                "export it with a fixed image size"
            )
        return int(np.prod(dims, dtype=np.int64)) * self.dtype.itemsize


class Runner:
    """Base class: a subclass loads the model in ``__init__``, sets ``_input`` and ``_outputs`` (or
    overrides the two spec methods) and implements :meth:`_infer`."""

    backend = "?"
    _input: TensorSpec
    _outputs: list[TensorSpec]

    def input_spec(self) -> TensorSpec:
        return self._input

    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs)

    @staticmethod
    def single_input(model_file, inputs: list):
        """The model's one input, or a one-line error: focalinfer feeds classifiers one image tensor."""
        if len(inputs) != 1:
            raise FocalinferError(
                f"{model_file}: the model has {len(inputs)} inputs; focalinfer feeds classifiers with one image input"
            )
        return inputs[0]

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch and record how long the call took (ms)."""
        start = time.perf_counter()
        outputs = self._infer(batch)
        self._wall_times().append((time.perf_counter() - start) * 1000.0)
        return outputs

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _wall_times(self) -> list[float]:
        return self.__dict__.setdefault("_wall_ms", [])

    @property
    def wall_times_ms(self) -> list[float]:
        """The duration of each :meth:`infer` call since the last :meth:`reset_times`."""
        return list(self._wall_times())

    def device_times_ms(self) -> list[float] | None:
        """The device's own compute time per call, for runtimes that report it (None: they do not)."""
        return None

    @property
    def compute_times_ms(self) -> list[float]:
        """Per-call compute time: the device's own where it reports it, else the timed call."""
        device = self.device_times_ms()
        return self.wall_times_ms if device is None else device

    def reset_times(self) -> None:
        """Forget the timings so far (after warm-up)."""
        self.__dict__["_wall_ms"] = []

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MicroBatchRunner(Runner):
    """Runs a batch as calls of at most ``micro_batch`` images and joins their outputs.

    On CPUs the activations of a large batch can overflow the caches, so a batch of 16 may run
    slower per image than 16 calls of one (``focalinfer.backend.auto`` measures which size is
    fastest). Its times keep one entry per batch: the sum of its calls.
    """

    def __init__(self, runner: Runner, micro_batch: int):
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be at least 1, got {micro_batch}")
        self.runner, self.micro_batch = runner, micro_batch
        self.backend = runner.backend

    @property
    def _input(self) -> TensorSpec:
        return self.runner.input_spec()

    @property
    def _outputs(self) -> list[TensorSpec]:
        return self.runner.output_specs()

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if len(batch) <= self.micro_batch:
            return self.runner.infer(batch)
        parts = [self.runner.infer(batch[i:i + self.micro_batch]) for i in range(0, len(batch), self.micro_batch)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def close(self) -> None:
        self.runner.close()
