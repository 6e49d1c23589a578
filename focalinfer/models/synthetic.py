"""Deterministic stand-in weights in the official checkpoint layout.

No trained checkpoint can be downloaded here, so tests and ``make demo`` use weights generated
from a seed: the same keys, shapes and dtypes as the official model, values drawn per key so that
adding or removing a key never shifts the others.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch


def _key_generator(key: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)


def _synthetic_value(key: str, ref: torch.Tensor, seed: int) -> torch.Tensor:
    noise = torch.randn(ref.shape, generator=_key_generator(key, seed), dtype=torch.float64)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        value = 1.0 + 0.1 * noise.abs()
    elif leaf == "running_mean":
        value = 0.1 * noise
    elif ref.dim() <= 1 and leaf == "weight":  # norm scales
        value = 1.0 + 0.1 * noise
    elif ref.dim() <= 1:  # biases, layer scales
        value = 0.02 * noise
    else:  # keeps activations O(1) through deep stacks
        fan_in = math.prod(ref.shape[1:])
        value = noise / math.sqrt(fan_in)
    return value.to(ref.dtype)


def synthetic_state_dict(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's state dict with float parameters and BatchNorm statistics replaced.

    Other buffers (index tables, coordinates, masks) are architecture constants and are kept.
    """
    parameter_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    out = {}
    for key, ref in model.state_dict(keep_vars=False).items():
        leaf = key.rsplit(".", 1)[-1]
        replace = ref.is_floating_point() and (
            key in parameter_names or leaf in ("running_mean", "running_var")
        )
        out[key] = _synthetic_value(key, ref, seed) if replace else ref.clone()
    _restore_aliases(model, out)
    return out


def _restore_aliases(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Keys that share one tensor in the model must share one value in the checkpoint too."""
    first_key_of: dict[int, str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        ptr = tensor.data_ptr() if tensor.numel() else None
        if ptr is None:
            continue
        ident = (ptr, tuple(tensor.shape), tensor.dtype)
        ident = hash(ident)
        if ident in first_key_of:
            state[key] = state[first_key_of[ident]]
        else:
            first_key_of[ident] = key


def make_checkpoint(name: str, path: str | Path, seed: int = 0, **build_kwargs) -> Path:
    """Build registry model ``name``, give it synthetic weights and save it in its official layout."""
    from focalinfer.models.checkpoint import save_checkpoint
    from focalinfer.registry import get_model_spec
    from focalinfer.util import ensure_writable_file

    spec = get_model_spec(name)
    ensure_writable_file(path, "checkpoint (--out)")
    model = spec.build(**build_kwargs)
    return save_checkpoint(synthetic_state_dict(model, seed), path, spec.checkpoint_layout)
