"""Twins image classifiers: PCPVT and ALTGVT (a.k.a. Twins-SVT), eval only.

Follows Meituan-AutoML/Twins @4700293 ``gvt.py`` (classes ``CPVTV2`` and ``ALTGVT``). A stage is a
patch embedding (strided conv + LayerNorm) followed by transformer blocks; a depthwise-conv
position encoding (PEG) runs after the first block of every stage, and the head classifies the
token average. PCPVT uses global sub-sampled attention (GSA) in every block; ALTGVT alternates
locally-grouped attention inside ``ws``×``ws`` windows (LSA, even blocks) with GSA (odd blocks).

The classification code at that commit cannot run LSA when H or W is not a multiple of the
window; here the feature map is zero-padded on the right/bottom and cropped back, as the same
commit's ``detection/gvt.py`` does (``segmentation/gvt.py`` calls it ``forward_padding``).
For every size the official classifier accepts, no padding happens and the result is the same.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn

from focalinfer.models.layers import ExportRewrites, Mlp, rewrite_enabled, trunc_normal_
from focalinfer.registry import (
    IMAGENET_MEAN, IMAGENET_STD, ModelSpec, modelzoo_transform, official_transform, register_model,
)

SOURCE = "Meituan-AutoML/Twins@4700293 gvt.py"
BLOCK_NORM_EPS = 1e-6  # the builders pass partial(nn.LayerNorm, eps=1e-6) as norm_layer
# Patch embeddings and GSA's sub-sampling norm build nn.LayerNorm(dim) themselves (eps 1e-5).
INNER_NORM_EPS = 1e-5

WINDOW_5D = "window_5d"
STATIC_SPATIAL = "static_spatial"


def _spatial_size(x: torch.Tensor, module: nn.Module) -> tuple[int, int]:
    """(H, W) of an NCHW map; Python ints under the ``static_spatial`` rewrite even when tracing."""
    height, width = x.shape[-2:]
    if rewrite_enabled(module, STATIC_SPATIAL) and torch.jit.is_tracing():
        with warnings.catch_warnings():
            # Freezing is the point: exported graphs have a static spatial size.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return int(height), int(width)
    return height, width


# Reshapes below write the batch as -1 and take channel counts from the module, where the
# official code reads both from x.shape: the same result, and a traced graph needs no Shape op
# for them (with ``static_spatial`` every Reshape target is then a constant).


class PatchEmbed(nn.Module):
    """Non-overlapping patches: conv with kernel = stride = patch, then LayerNorm over channels."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=INNER_NORM_EPS)

    def forward(self, x: torch.Tensor):
        x = self.proj(x)
        height, width = _spatial_size(x, self)
        tokens = x.reshape(-1, self.embed_dim, height * width).transpose(1, 2)
        return self.norm(tokens), height, width


class PositionEncoding(nn.Module):
    """PEG: depthwise 3×3 conv over the token map, added back to the tokens."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        # A Sequential because the checkpoints name the conv ``proj.0``.
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim))

    def forward(self, x: torch.Tensor, height, width) -> torch.Tensor:
        feature_map = x.transpose(1, 2).reshape(-1, self.dim, height, width)
        out = self.proj(feature_map) + feature_map
        return out.reshape(-1, self.dim, height * width).transpose(1, 2)


class GlobalSubsampledAttention(nn.Module):
    """GSA: every token attends to keys/values of a map sub-sampled by a stride-``sr_ratio`` conv."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=INNER_NORM_EPS)

    def forward(self, x: torch.Tensor, height, width) -> torch.Tensor:
        tokens, head_dim = height * width, self.dim // self.num_heads
        q = self.q(x).reshape(-1, tokens, self.num_heads, head_dim).permute(0, 2, 1, 3)
        source, source_tokens = x, tokens
        if self.sr_ratio > 1:
            feature_map = x.permute(0, 2, 1).reshape(-1, self.dim, height, width)
            source_tokens = (height // self.sr_ratio) * (width // self.sr_ratio)  # conv floors
            reduced = self.sr(feature_map).reshape(-1, self.dim, source_tokens).permute(0, 2, 1)
            source = self.norm(reduced)
        kv = self.kv(source).reshape(-1, source_tokens, 2, self.num_heads, head_dim)
        kv = kv.permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(-1, tokens, self.dim))


class LocallyGroupedAttention(nn.Module):
    """LSA: self-attention inside non-overlapping ``ws``×``ws`` windows."""

    def __init__(self, dim: int, num_heads: int, ws: int):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.ws = ws

    def forward(self, x: torch.Tensor, height, width) -> torch.Tensor:
        grid = x.reshape(-1, height, width, self.dim)
        pad_right = (self.ws - width % self.ws) % self.ws
        pad_bottom = (self.ws - height % self.ws) % self.ws
        padded = bool(pad_right > 0 or pad_bottom > 0)
        if padded:
            grid = nn.functional.pad(grid, (0, 0, 0, pad_right, 0, pad_bottom))
        rows, cols = (height + pad_bottom) // self.ws, (width + pad_right) // self.ws
        if rewrite_enabled(self, WINDOW_5D):
            grid = self._attend_5d(grid, rows, cols)
        else:
            grid = self._attend_6d(grid, rows, cols)
        if padded:
            grid = grid[:, :height, :width, :]
        return self.proj(grid.reshape(-1, height * width, self.dim))

    def _attend_6d(self, grid: torch.Tensor, rows, cols) -> torch.Tensor:
        """The official formulation: 6-D window views and a 6-D qkv permute."""
        ws, dim, heads = self.ws, self.dim, self.num_heads
        windows = grid.reshape(-1, rows, ws, cols, ws, dim).transpose(2, 3)
        qkv = self.qkv(windows).reshape(-1, rows * cols, ws * ws, 3, heads, dim // heads)
        qkv = qkv.permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(2, 3).reshape(-1, rows, cols, ws, ws, dim)
        return out.transpose(2, 3).reshape(-1, rows * ws, cols * ws, dim)

    def _attend_5d(self, grid: torch.Tensor, rows, cols) -> torch.Tensor:
        """Same windows with batch and window rows folded together: no tensor above 5-D."""
        ws, dim, heads = self.ws, self.dim, self.num_heads
        row_strips = grid.reshape(-1, ws, cols, ws * dim)  # (B·rows, ws, cols, ws·C)
        windows = row_strips.transpose(1, 2).reshape(-1, ws * ws, dim)
        qkv = self.qkv(windows).reshape(-1, ws * ws, 3, heads, dim // heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(-1, cols, ws, ws * dim)
        return out.transpose(1, 2).reshape(-1, rows * ws, cols * ws, dim)


class Block(nn.Module):
    """Pre-norm transformer block around one attention module."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, attn_registered_last: bool):
        super().__init__()
        # Registration order only sets the order of state_dict() keys. ALTGVT's GroupBlock deletes
        # and re-adds ``attn`` after the timm Block init, so its released keys list attn last.
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        if not attn_registered_last:
            self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if attn_registered_last:
            self.attn = attn

    def forward(self, x: torch.Tensor, height, width) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), height, width)
        return x + self.mlp(self.norm2(x))


class Twins(ExportRewrites, nn.Module):
    """PCPVT when ``wss`` is None, else ALTGVT with window size ``wss[stage]`` in even blocks."""

    export_rewrites = {
        WINDOW_5D: "LSA windows via ≤5-D reshapes/transposes (batch folded into the window axis) "
                   "instead of the official 6-D ones, for converters limited to 5-D",
        STATIC_SPATIAL: "H, W become constants while tracing, so every Reshape target is constant: "
                        "a dynamic-batch graph keeps no Shape/Gather/int64 shape arithmetic",
    }

    def __init__(
        self,
        embed_dims: Sequence[int],
        num_heads: Sequence[int],
        mlp_ratios: Sequence[float],
        depths: Sequence[int],
        sr_ratios: Sequence[int],
        wss: Sequence[int] | None = None,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(patch_size if i == 0 else 2, in_chans if i == 0 else embed_dims[i - 1], dim)
            for i, dim in enumerate(embed_dims)
        )
        stages = nn.ModuleList(
            self._make_stage(dim, heads, mlp_ratio, depth, sr, None if wss is None else wss[i])
            for i, (dim, heads, mlp_ratio, depth, sr) in enumerate(
                zip(embed_dims, num_heads, mlp_ratios, depths, sr_ratios))
        )
        # Same order of top-level keys as the official checkpoints: ALTGVT rebuilds ``blocks``
        # after CPVTV2 has added ``pos_block``, PCPVT keeps the PVT order.
        if wss is None:
            self.blocks = stages
        self.norm = nn.LayerNorm(embed_dims[-1], eps=BLOCK_NORM_EPS)
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.pos_block = nn.ModuleList(PositionEncoding(dim) for dim in embed_dims)
        if wss is not None:
            self.blocks = stages
        self.apply(_init_weights)

    @staticmethod
    def _make_stage(dim, heads, mlp_ratio, depth, sr_ratio, ws):
        def attention(i):
            if ws is not None and i % 2 == 0:
                return LocallyGroupedAttention(dim, heads, ws)
            return GlobalSubsampledAttention(dim, heads, sr_ratio)

        return nn.ModuleList(
            Block(dim, attention(i), mlp_ratio, attn_registered_last=ws is not None)
            for i in range(depth)
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.blocks) - 1
        for i, (embed, stage, peg) in enumerate(zip(self.patch_embeds, self.blocks, self.pos_block)):
            x, height, width = embed(x)
            for j, block in enumerate(stage):
                x = block(x, height, width)
                if j == 0:
                    x = peg(x, height, width)
            if i < last:
                x = x.reshape(-1, height, width, embed.embed_dim).permute(0, 3, 1, 2)
        return self.norm(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    """Random init in the official style (only matters for models used without a checkpoint)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, (2.0 / fan_out) ** 0.5)
        nn.init.zeros_(module.bias)


# Hyper-parameters of the official builders (all use qkv_bias=True, patch_size=4).
_PCPVT = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4),
              sr_ratios=(8, 4, 2, 1))
_ALTGVT = dict(mlp_ratios=(4, 4, 4, 4), wss=(7, 7, 7, 7), sr_ratios=(8, 4, 2, 1))
CONFIGS = {
    "pcpvt_small_v0": dict(_PCPVT, depths=(3, 4, 6, 3)),
    "pcpvt_base_v0": dict(_PCPVT, depths=(3, 4, 18, 3)),
    "pcpvt_large_v0": dict(_PCPVT, depths=(3, 8, 27, 3)),
    "alt_gvt_small": dict(_ALTGVT, embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16),
                          depths=(2, 2, 10, 4)),
    "alt_gvt_base": dict(_ALTGVT, embed_dims=(96, 192, 384, 768), num_heads=(3, 6, 12, 24),
                         depths=(2, 2, 18, 2)),
    "alt_gvt_large": dict(_ALTGVT, embed_dims=(128, 256, 512, 1024), num_heads=(4, 8, 16, 32),
                          depths=(2, 2, 18, 2)),
}


def _builder(config_name: str):
    def build(**overrides) -> Twins:
        """The official configuration; keyword overrides build reduced variants (tests)."""
        return Twins(**{**CONFIGS[config_name], **overrides})

    build.__name__ = config_name
    return build


def _register(name: str, config_name: str, params: int, released_as: str, **extra_spec) -> None:
    """Every variant: raw state-dict checkpoints and the DeiT eval transform of Twins datasets.py."""
    transforms = {"official": official_transform(224, 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD)}
    transforms.update(extra_spec.pop("transforms", {}))
    register_model(ModelSpec(
        name=name,
        family="twins",
        builder=_builder(config_name),
        input_size=224,
        transforms=transforms,
        checkpoint_layout="raw",
        source=f"{SOURCE} {config_name}",
        params=params,
        notes=f"official weights: {released_as}; eval transform from Twins datasets.py "
              "(resize 256, crop 224, bicubic), not timm's crop_pct 0.9",
        **extra_spec,
    ))


# params: counted on the official builders. README Acc@1 in the notes.
_register("twins-altgvt-s", "alt_gvt_small", 24_060_776, "alt_gvt_small.pth (Twins-SVT-S, 81.7)",
          is_lead=True, transforms={"modelzoo": modelzoo_transform(224)})
_register("twins-altgvt-b", "alt_gvt_base", 56_070_952, "alt_gvt_base.pth (Twins-SVT-B, 83.2)")
_register("twins-altgvt-l", "alt_gvt_large", 99_271_400, "alt_gvt_large.pth (Twins-SVT-L, 83.7)")
_register("twins-pcpvt-s", "pcpvt_small_v0", 24_106_216, "pcpvt_small.pth (Twins-PCPVT-S, 81.2)")
_register("twins-pcpvt-b", "pcpvt_base_v0", 43_828_456, "pcpvt_base.pth (Twins-PCPVT-B, 82.7)")
_register("twins-pcpvt-l", "pcpvt_large_v0", 60_989_672, "pcpvt_large.pth (Twins-PCPVT-L, 83.1)")
