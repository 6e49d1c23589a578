"""Visual Attention Network (VAN-B0…B3) image classifiers, eval only.

Follows Visual-Attention-Network/VAN-Classification @e19779b ``models/van.py``. Each of the four
stages is an overlapping patch embedding (strided conv + BatchNorm) followed by blocks of
pre-BatchNorm large-kernel attention and a conv MLP, each branch scaled per channel; a LayerNorm
over channels closes every stage and the head classifies the spatial average of the last map.

Large-kernel attention (LKA) decomposes a 21×21 receptive field into a 5×5 depthwise conv, a 7×7
depthwise conv with dilation 3 and a 1×1 conv; the result gates its input by multiplication.
The network is convolutional throughout, so any input size works and nothing depends on batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from focalinfer.models.layers import ExportRewrites
from focalinfer.registry import (
    INCEPTION_MEAN, INCEPTION_STD, ModelSpec, modelzoo_transform, official_transform, register_model,
)

SOURCE = "Visual-Attention-Network/VAN-Classification@e19779b models/van.py"
# Every variant builder passes partial(nn.LayerNorm, eps=1e-6) as the stage norm.
STAGE_NORM_EPS = 1e-6
LAYER_SCALE_INIT = 1e-2


class DepthwiseConv3x3(nn.Module):
    """The MLP's 3×3 depthwise conv; a module of its own because checkpoints name it ``dwconv.dwconv``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x)


class ConvMlp(nn.Module):
    """1×1 conv → 3×3 depthwise conv → GELU → 1×1 conv."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.dwconv = DepthwiseConv3x3(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class LargeKernelAttention(nn.Module):
    """LKA: the input times an attention map from 5×5 dw → 7×7 dw (dilation 3) → 1×1 convs."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        # padding = dilation * (kernel - 1) / 2 keeps the spatial size
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class SpatialAttention(nn.Module):
    """1×1 conv → GELU → LKA → 1×1 conv, plus the input (a residual inside the branch)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LargeKernelAttention(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class VanBlock(nn.Module):
    """x + s1·attn(BN(x)), then x + s2·mlp(BN(x)); s1, s2 are per-channel layer scales."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1[:, None, None] * self.attn(self.norm1(x))
        return x + self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """Strided conv whose kernel overlaps neighbouring patches (padding kernel // 2), then BatchNorm."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


def _channel_layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of an NCHW map, returned as a contiguous NCHW map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


class VAN(ExportRewrites, nn.Module):
    """Four stages named ``patch_embed{i}``/``block{i}``/``norm{i}`` (the checkpoint keys), then ``head``."""

    def __init__(self, embed_dims: Sequence[int] = (64, 128, 320, 512),
                 mlp_ratios: Sequence[float] = (8, 8, 4, 4), depths: Sequence[int] = (3, 3, 12, 3),
                 num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if not len(embed_dims) == len(mlp_ratios) == len(depths):
            raise ValueError("embed_dims, mlp_ratios and depths need one entry per stage")
        self.num_stages = len(depths)
        for i, (dim, ratio, depth) in enumerate(zip(embed_dims, mlp_ratios, depths), start=1):
            first = i == 1
            embed = OverlapPatchEmbed(in_chans if first else embed_dims[i - 2], dim,
                                      kernel_size=7 if first else 3, stride=4 if first else 2)
            setattr(self, f"patch_embed{i}", embed)
            setattr(self, f"block{i}", nn.ModuleList(VanBlock(dim, ratio) for _ in range(depth)))
            setattr(self, f"norm{i}", nn.LayerNorm(dim, eps=STAGE_NORM_EPS))
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, normalised features of the last stage, shape (batch, embed_dims[-1])."""
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                x = block(x)
            norm = getattr(self, f"norm{i}")
            if i < self.num_stages:
                x = _channel_layer_norm(norm, x)
        tokens = norm(x.flatten(2).transpose(1, 2))
        return tokens.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# Hyper-parameters of the official builders van_b0 … van_b3.
VARIANTS = {
    "van-b0": dict(embed_dims=(32, 64, 160, 256), mlp_ratios=(8, 8, 4, 4), depths=(3, 3, 5, 2)),
    "van-b1": dict(embed_dims=(64, 128, 320, 512), mlp_ratios=(8, 8, 4, 4), depths=(2, 2, 4, 2)),
    "van-b2": dict(embed_dims=(64, 128, 320, 512), mlp_ratios=(8, 8, 4, 4), depths=(3, 3, 12, 3)),
    "van-b3": dict(embed_dims=(64, 128, 320, 512), mlp_ratios=(8, 8, 4, 4), depths=(3, 5, 27, 3)),
}
# Parameter counts of the official models (1000 classes), counted from the official code.
PARAMS = {"van-b0": 4_105_800, "van-b1": 13_861_800, "van-b2": 26_578_472, "van-b3": 44_765_608}


def _builder(name: str):
    def build(**overrides) -> VAN:
        return VAN(**{**VARIANTS[name], **overrides})

    build.__name__ = name.replace("-", "_")
    build.__doc__ = f"{name}; keyword arguments override the official hyper-parameters."
    return build


van_b0 = _builder("van-b0")
van_b1 = _builder("van-b1")
van_b2 = _builder("van-b2")
van_b3 = _builder("van-b3")

# timm 0.4.12's vision_transformer._cfg, which every official builder attaches: crop 0.9, bicubic,
# mean = std = 0.5. timm 1.x resolves VAN to ImageNet statistics and crop 0.875 — wrong for
# these weights.
TRANSFORMS = {
    "official": official_transform(224, 0.9, mean=INCEPTION_MEAN, std=INCEPTION_STD),
    "modelzoo": modelzoo_transform(224),
}

for _name, _build in (("van-b0", van_b0), ("van-b1", van_b1), ("van-b2", van_b2), ("van-b3", van_b3)):
    register_model(ModelSpec(
        name=_name,
        family="van",
        builder=_build,
        input_size=224,
        transforms=TRANSFORMS,
        # The released .pth.tar files hold {'state_dict': sd} with exactly the model's keys.
        checkpoint_layout="state_dict",
        source=f"{SOURCE} {_build.__name__}",
        params=PARAMS[_name],
        # As the Ascend ModelZoo VAN port runs ATC.
        atc_op_precision=("Gelu=high_performance",),
        is_lead=_name == "van-b2",
    ))
del _name, _build
