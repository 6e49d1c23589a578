"""Layers shared by more than one family (eval-mode only: no dropout, no stochastic depth)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class Mlp(nn.Module):
    """fc1 → act → fc2, with the timm key names (``fc1``, ``fc2``) the checkpoints use."""

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer=nn.GELU):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ExportRewrites:
    """Mixin for models with named, switchable export rewrites.

    ``export_rewrites`` maps a rewrite name to one line saying what it removes from the graph and
    why. Rewrites are off by default (the eager path follows the official code); they never change
    ``state_dict()`` keys and must keep logits within the parity bound.
    """

    export_rewrites: dict[str, str] = {}

    def set_export_rewrites(self, names: Iterable[str]) -> None:
        names = frozenset(names)
        unknown = names - set(self.export_rewrites)
        if unknown:
            raise ValueError(
                f"unknown rewrite(s) {sorted(unknown)}; this model has {sorted(self.export_rewrites)}"
            )
        for module in self.modules():
            module.enabled_rewrites = names


def rewrite_enabled(module: nn.Module, name: str) -> bool:
    """True when ``set_export_rewrites`` switched ``name`` on for the model owning ``module``."""
    return name in getattr(module, "enabled_rewrites", frozenset())
