"""Checks shared by the model-family tests: the spec's parity bound against pinned official logits."""

from __future__ import annotations

import math

import torch


def tolerance(max_abs_logit: float) -> float:
    """The parity bound of the model spec: 1e-4 × max(1, max |logit|), fp32."""
    return 1e-4 * max(1.0, max_abs_logit)


def assert_matches_pinned(logits: torch.Tensor, pinned: dict) -> None:
    bound = tolerance(pinned["max_abs_logit"])
    width = len(pinned["logits_slice"][0])
    slice_diff = (logits[:, :width] - torch.tensor(pinned["logits_slice"])).abs().max().item()
    assert slice_diff <= bound, f"logits[:, :{width}] off by {slice_diff:.3g} > {bound:.3g}"
    top5 = logits.topk(5)
    assert top5.indices.tolist() == pinned["top5"]
    top5_diff = (top5.values - torch.tensor(pinned["top5_logits"])).abs().max().item()
    assert top5_diff <= bound, f"top-5 logits off by {top5_diff:.3g} > {bound:.3g}"
    assert abs(logits.abs().max().item() - pinned["max_abs_logit"]) <= bound


def assert_same_logits(got: torch.Tensor, expected: torch.Tensor) -> None:
    bound = tolerance(expected.abs().max().item())
    diff = (got - expected).abs().max().item()
    assert diff <= bound, f"max abs diff {diff:.3g} > {bound:.3g}"
    assert got.topk(5).indices.tolist() == expected.topk(5).indices.tolist()


def make_images(shape, seed: int) -> torch.Tensor:
    """Deterministic pseudo-images in the normalised-pixel range, identical on every platform."""
    index = torch.arange(math.prod(shape), dtype=torch.float64)
    pattern = torch.sin(index * 0.7548776662 + seed) * torch.cos(index * 0.5698402910 + 2 * seed)
    return (2.0 * pattern).reshape(shape).to(torch.float32)
