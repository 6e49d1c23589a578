"""Focal Transformer v2 ("focal-fast"): Focal-fast-T/S/B image classifiers, eval only.

Follows microsoft/Focal-Transformer @57bb303 ``classification/focal_transformer_v2.py`` with the
``focalv2_*_useconv_patch4_window7_224`` configs. Each block attends from every 7×7 query window
to two levels of keys: the ``topK`` nearest tokens of the full-resolution map (level 0) and the
nearest window-pooled tokens (level 1, an ``fc`` pooling of each window). Which keys a window
sees and their relative coordinates are constants of the architecture, stored as buffers (the
official checkpoints hold them); a small MLP turns those coordinates into a per-head bias.

The eager path follows the official operations, except that it never computes a batch count from
tensor sizes (the official ``window_reverse`` does, and tracing freezes it to the export batch) and
drops the official no-op slice and zero-size pads. v2 uses no shift, so there are no attention
masks. Export rewrites (``export_rewrites``) give the same numbers with a graph ATC maps well.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from focalinfer.errors import FocalinferError
from focalinfer.models.layers import ExportRewrites, Mlp, rewrite_enabled
from focalinfer.registry import (
    IMAGENET_MEAN, IMAGENET_STD, ModelSpec, modelzoo_transform, official_transform, register_model,
)

SOURCE = "microsoft/Focal-Transformer@57bb303 classification/focal_transformer_v2.py"

REWRITES = {
    "constant_gather": "each window's keys/values taken with one constant-index Gather on the token axis of a "
                       "[level-0 | pooled] token table, batch kept apart from windows, instead of torch.gather "
                       "over batch-repeated indices (GatherElements, slow on Ascend)",
    "precomputed_bias": "relative-position bias MLP over the constant coordinate buffers evaluated once and "
                        "cached (weights are fixed after loading): one constant broadcast over the batch instead "
                        "of recomputed and repeated per image (Tile in a dynamic-batch graph)",
    "window_5d": "window partition/merge and window pooling through 5-D reshapes instead of 6-D ones "
                 "(ATC's Transpose/Reshape are limited to rank 5)",
    "head_gather": "queries, keys and values taken by constant-index Gathers from one head-major transpose of "
                   "the qkv token table, the attended windows put back in row order and the pooled windows "
                   "formed by Gathers too: 2 Transposes per block (one is k's last two axes, which onnxruntime "
                   "folds into its MatMul) and no Slice instead of 8 Transposes and 3 Slices, and no copy of "
                   "the gathered keys (each Transpose is also a TransData on Ascend)",
}


# --- constant geometry (what the official code registers as buffers) ---


def grid_offsets(query_grid: tuple[int, int], key_grid: tuple[int, int]) -> torch.Tensor:
    """(2, Q, K) int64 offsets query - key; on a coarser query grid a query sits at its cell's centre."""
    qh, qw = torch.arange(query_grid[0]), torch.arange(query_grid[1])
    if query_grid[0] != key_grid[0]:
        factor = key_grid[0] // query_grid[0]
        qh, qw = qh * factor + factor // 2, qw * factor + factor // 2
    q = torch.stack(torch.meshgrid(qh, qw, indexing="ij")).flatten(1)
    k = torch.stack(torch.meshgrid(torch.arange(key_grid[0]), torch.arange(key_grid[1]), indexing="ij")).flatten(1)
    return q[:, :, None] - k[:, None, :]


def offsets_of(offsets: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The (Q, k, 2) float32 offsets of the chosen keys ``indices`` (Q, k) from :func:`grid_offsets`."""
    chosen = torch.gather(offsets, 2, indices.unsqueeze(0).expand(2, -1, -1))
    return chosen.permute(1, 2, 0).contiguous().float()


def closest_keys(query_grid: tuple[int, int], key_grid: tuple[int, int], top_k: int):
    """For each query-window centre, the ``top_k`` nearest key positions and their offsets.

    Returns (indices (Q, k) int64, offsets (Q, k, 2) float32 as query - key, k). Ties are broken
    by ``torch.topk``, as in the official code.
    """
    offsets = grid_offsets(query_grid, key_grid)
    dists = torch.sqrt(offsets[0].float() ** 2 + offsets[1].float() ** 2)
    top_k = min(top_k, dists.shape[1])
    _, indices = torch.topk(-dists, top_k, dim=1)
    return indices, offsets_of(offsets, indices), top_k


def window_offsets(window: int) -> torch.Tensor:
    """(window, window, 2) int64 coordinates of each token relative to the window centre."""
    r = torch.arange(window) - window // 2
    return torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1)


def window_positions(H: int, W: int, window: int) -> torch.Tensor:
    """(nH·nW, window²) int64 row-major token positions of each window, windows in row-major order."""
    grid = torch.arange(H * W).view(H // window, window, W // window, window)
    return grid.permute(0, 2, 1, 3).reshape(-1, window * window)


def head_row_order(windows: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(H·W·heads,) rows of a (B, nW·heads·window², hd) attention output, token-major in row order;
    ``windows`` is :func:`window_positions`."""
    area = windows.shape[1]
    slot = torch.empty_like(windows.reshape(-1))
    slot[windows.reshape(-1)] = torch.arange(windows.numel())  # token → window · area + place
    window, place = slot // area, slot % area
    heads = torch.arange(num_heads).view(1, -1)
    return ((window.view(-1, 1) * num_heads + heads) * area + place.view(-1, 1)).reshape(-1)


# --- window helpers: the official 6-D forms and their 5-D rewrites ---


def partition_windows(x: torch.Tensor, window: int, five_d: bool) -> torch.Tensor:
    """(B, H, W, C) → (B·nH·nW, window, window, C), windows in row-major order."""
    _, H, W, C = x.shape
    nh, nw = H // window, W // window
    if five_d:
        x = x.reshape(-1, window, nw, window, C).permute(0, 2, 1, 3, 4)
        return x.reshape(-1, window, window, C)
    x = x.view(-1, nh, window, nw, window, C).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(-1, window, window, C)


def merge_windows(windows: torch.Tensor, window: int, H: int, W: int, C: int, five_d: bool) -> torch.Tensor:
    """Inverse of :func:`partition_windows`. The batch is left to the reshape (-1), never computed
    from window counts: tracing would freeze such a count to the export batch size."""
    nh, nw = H // window, W // window
    if five_d:
        x = windows.reshape(-1, nw, window, window, C).permute(0, 2, 1, 3, 4)
        return x.reshape(-1, H, W, C)
    x = windows.view(-1, nh, nw, window, window, C).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(-1, H, W, C)


def pool_windows(x: torch.Tensor, H: int, W: int, C: int, window: int, pool: nn.Linear, five_d: bool) -> torch.Tensor:
    """(B, H, W, C) → (B, H/window, W/window, C): the ``fc`` pooling of each window's tokens.

    H, W, C are the block's static sizes, so no shape arithmetic reaches the graph.
    """
    pad_r, pad_b = (window - W % window) % window, (window - H % window) % window
    if pad_r or pad_b:  # the official code always pads, even by zero; a zero pad is a no-op
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        H, W = H + pad_b, W + pad_r
    nh, nw = H // window, W // window
    if five_d:
        x = x.reshape(-1, window, nw, window, C).permute(0, 2, 1, 3, 4)
    else:
        x = x.view(-1, nh, window, nw, window, C).permute(0, 1, 3, 2, 4, 5).contiguous()
    x = x.reshape(-1, nh, nw, window * window, C).transpose(3, 4)
    return pool(x).flatten(-2)


def pool_windows_gathered(x: torch.Tensor, H: int, W: int, C: int, positions: torch.Tensor,
                          pool: nn.Linear) -> torch.Tensor:
    """:func:`pool_windows` as one constant-index Gather of the window tokens and a (1, window²) MatMul;
    ``positions`` is :func:`window_positions` of the (H, W) map, a constant of the block."""
    n_windows, area = positions.shape
    tokens = x.reshape(-1, H * W, C).index_select(1, positions.reshape(-1))
    pooled = pool.weight @ tokens.reshape(-1, n_windows, area, C) + pool.bias
    return pooled.reshape(-1, n_windows, C)


# --- modules ---


class FocalWindowAttention(nn.Module):
    """Attention from each query window to its nearest level-0 tokens and level-1 pooled windows."""

    def __init__(self, dim: int, resolution: tuple[int, int], window: int, num_heads: int,
                 focal_level: int, top_k: int):
        super().__init__()
        self.dim, self.window, self.num_heads, self.focal_level = dim, window, num_heads, focal_level
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.resolution = resolution
        self.query_grid = (resolution[0] // window, resolution[1] // window)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        coords = window_offsets(window)
        self.register_buffer("window_coords", coords)
        # head_gather's geometry; not in the state dict (the official checkpoints do not hold it)
        self.register_buffer("window_tokens", window_positions(*resolution, window), persistent=False)
        self.register_buffer("row_order", head_row_order(self.window_tokens, num_heads), persistent=False)
        self.key_grids = []
        self.coord2rpb_all = nn.ModuleList()
        for level in range(focal_level):
            key_grid = resolution if level == 0 else self.query_grid
            self.key_grids.append(key_grid)
            indices, offsets, _ = closest_keys(self.query_grid, key_grid, top_k)
            if level > 0:  # a pooled token stands for a whole window
                offsets = offsets * window
            token_offsets = offsets.unsqueeze(1) + coords.view(-1, 2)[None, :, None, :]
            self.register_buffer(f"topk_cloest_indice_{level}", indices)
            self.register_buffer(f"topk_cloest_coords_{level}", token_offsets)
            self.coord2rpb_all.append(
                nn.Sequential(nn.Linear(2, self.head_dim), nn.ReLU(inplace=True), nn.Linear(self.head_dim, num_heads))
            )
        self._bias_cache: tuple[tuple, torch.Tensor] | None = None

    def indices(self, level: int) -> torch.Tensor:
        return getattr(self, f"topk_cloest_indice_{level}")

    def coords(self, level: int) -> torch.Tensor:
        return getattr(self, f"topk_cloest_coords_{level}")

    def position_bias(self) -> torch.Tensor:
        """(nW, heads, window², keys) bias from the coordinate MLPs."""
        if rewrite_enabled(self, "precomputed_bias"):
            return self._cached_bias()
        return self._compute_bias()

    def _compute_bias(self) -> torch.Tensor:
        bias = torch.cat([mlp(self.coords(l)) for l, mlp in enumerate(self.coord2rpb_all)], 2)
        return bias.permute(0, 3, 1, 2)

    def _bias_key(self) -> tuple:
        tensors = [self.coords(l) for l in range(self.focal_level)] + list(self.coord2rpb_all.parameters())
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def _cached_bias(self) -> torch.Tensor:
        key = self._bias_key()
        if self._bias_cache is None or self._bias_cache[0] != key:
            with torch.no_grad():
                self._bias_cache = (key, self._compute_bias().contiguous())
        return self._bias_cache[1]

    def _level_keys(self, kv: torch.Tensor, level: int, batch: int) -> torch.Tensor:
        """kv (B, tokens, heads, hd) → the selected keys (B·nW, heads, k, hd), as the official code."""
        indices = self.indices(level)
        n_windows, k = indices.shape
        repeated = indices.view(1, -1).repeat(batch, 1)
        picked = torch.gather(kv, 1, repeated.view(batch, -1, 1, 1).expand(-1, -1, self.num_heads, self.head_dim))
        picked = picked.view(-1, n_windows, k, self.num_heads, self.head_dim).transpose(2, 3)
        return picked.reshape(-1, self.num_heads, k, self.head_dim)

    def table_indices(self) -> torch.Tensor:
        """(nW·keys,) positions of each window's keys in the table [level-0 tokens | pooled tokens]."""
        offset, parts = 0, []
        for level, (h, w) in enumerate(self.key_grids):
            parts.append(self.indices(level) + offset)
            offset += h * w
        return torch.cat(parts, 1).reshape(-1)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """levels[0] (B, H, W, C) and the pooled maps → (B·nW, window², C) attended windows, or with
        ``head_gather`` the attended tokens back in row order, (B, H·W, C)."""
        if rewrite_enabled(self, "head_gather"):
            return self._forward_head_gather(levels)
        if rewrite_enabled(self, "constant_gather"):
            return self._forward_token_table(levels)
        return self._forward_official(levels)

    def _forward_official(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        x = levels[0]
        B = x.shape[0]  # only the batch-repeated indices need it; every reshape leaves the batch to -1
        (H, W), C = self.resolution, self.dim
        heads, hd = self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(-1, H, W, 3, C).permute(3, 0, 1, 2, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = partition_windows(q, self.window, rewrite_enabled(self, "window_5d"))
        q = q.reshape(-1, self.window ** 2, heads, hd).transpose(1, 2)
        keys, values = [], []
        for level in range(self.focal_level):
            tokens = self.key_grids[level][0] * self.key_grids[level][1]
            if level == 0:
                k_l, v_l = k.reshape(-1, tokens, heads, hd), v.reshape(-1, tokens, heads, hd)
            else:
                kv = self.qkv(levels[level]).reshape(-1, tokens, 3, heads, hd)
                k_l, v_l = kv[:, :, 1], kv[:, :, 2]
            keys.append(self._level_keys(k_l, level, B))
            values.append(self._level_keys(v_l, level, B))
        keys, values = torch.cat(keys, 2), torch.cat(values, 2)
        attn = (q * self.scale) @ keys.transpose(-2, -1)
        bias = self.position_bias()
        if rewrite_enabled(self, "precomputed_bias"):
            attn = (attn.view((-1,) + bias.shape) + bias).view((-1,) + bias.shape[1:])
        else:
            attn = attn + bias.unsqueeze(0).repeat(B, 1, 1, 1, 1).view((-1,) + bias.shape[1:])
        attn = attn.softmax(dim=-1)
        out = (attn @ values).transpose(1, 2).flatten(2)
        return self.proj(out)

    def _forward_token_table(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """The same attention with the batch kept apart from the windows (rank 5 at most).

        All levels' tokens go through ``qkv`` as one table; each window's keys and values are one
        constant-index Gather from it, and the (nW, heads, window², keys) bias broadcasts over the
        batch with no Tile or Reshape.
        """
        (H, W), C = self.resolution, self.dim
        heads, hd, area = self.num_heads, self.head_dim, self.window ** 2
        table = self.table_indices()
        n_windows = self.query_grid[0] * self.query_grid[1]
        n_keys = table.numel() // n_windows
        tokens = [x.reshape(-1, h * w, C) for x, (h, w) in zip(levels, self.key_grids)]
        qkv = self.qkv(torch.cat(tokens, 1))  # (B, tokens of all levels, 3C)
        q = qkv[:, : H * W, :C].reshape(-1, H, W, C)
        q = partition_windows(q, self.window, rewrite_enabled(self, "window_5d"))
        q = q.reshape(-1, n_windows, area, heads, hd).transpose(2, 3)  # (B, nW, heads, window², hd)
        k = qkv[:, :, C: 2 * C].index_select(1, table).reshape(-1, n_windows, n_keys, heads, hd)
        v = qkv[:, :, 2 * C:].index_select(1, table).reshape(-1, n_windows, n_keys, heads, hd)
        attn = (q * self.scale) @ k.permute(0, 1, 3, 4, 2) + self.position_bias()
        out = attn.softmax(dim=-1) @ v.transpose(2, 3)  # (B, nW, heads, window², hd)
        return self.proj(out.transpose(2, 3).reshape(-1, area, C))

    def _forward_head_gather(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """The token-table attention with every layout change but one done by constant Gathers.

        The qkv table (B, tokens, 3C) is transposed once to head-major rows (B, 3·heads·tokens, hd);
        one Gather per part then yields q (B, nW, heads, window², hd) and k, v (B, nW, heads, keys, hd)
        in the layout the MatMuls take (ONNX Runtime folds k's last-two-axes transpose into its
        MatMul), and one Gather puts the attended windows back in row order before ``proj``.
        """
        (H, W), C = self.resolution, self.dim
        heads, hd, area = self.num_heads, self.head_dim, self.window ** 2
        n_windows = self.query_grid[0] * self.query_grid[1]
        n_tokens = sum(h * w for h, w in self.key_grids)
        tokens = [x.reshape(-1, h * w, C) for x, (h, w) in zip(levels, self.key_grids)]
        qkv = self.qkv(torch.cat(tokens, 1)).reshape(-1, n_tokens, 3 * heads, hd)
        rows = qkv.transpose(1, 2).reshape(-1, 3 * heads * n_tokens, hd)
        keys = self.table_indices().view(n_windows, -1)
        q, k, v = (self._gather_heads(rows, part, positions, n_tokens)
                   for part, positions in ((0, self.window_tokens), (1, keys), (2, keys)))
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.position_bias()
        out = (attn.softmax(dim=-1) @ v).reshape(-1, n_windows * heads * area, hd)
        return self.proj(out.index_select(1, self.row_order).reshape(-1, H * W, C))

    def _gather_heads(self, rows: torch.Tensor, part: int, positions: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """Rows of ``part`` (0 q, 1 k, 2 v) at ``positions`` (nW, n) → (B, nW, heads, n, hd)."""
        heads = torch.arange(self.num_heads, device=positions.device) + part * self.num_heads
        index = positions.unsqueeze(1) + (heads * n_tokens).view(1, -1, 1)
        return rows.index_select(1, index.reshape(-1)).reshape((-1,) + index.shape + (self.head_dim,))


class FocalBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int,
                 focal_level: int, top_k: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.resolution, self.dim = resolution, dim
        self.window = min(window, *resolution)  # a map no larger than the window is one window
        self.focal_level = focal_level
        self.pool_layers = nn.ModuleList()
        for level in range(focal_level - 1):
            size = math.floor(self.window / 2 ** level)
            # head_gather's geometry (not in the state dict): the pooled windows of the fitted map
            self.register_buffer(f"pool_tokens_{level}", window_positions(*self._pool_grid(level), size),
                                 persistent=False)
            pool = nn.Linear(size * size, 1)
            nn.init.constant_(pool.weight, 1.0 / (size * size))
            nn.init.zeros_(pool.bias)
            self.pool_layers.append(pool)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = FocalWindowAttention(dim, resolution, self.window, num_heads, focal_level, top_k)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _pool_grid(self, level: int) -> tuple[int, int]:
        """The (height, width) the map is centre-trimmed or padded to before level ``level``'s pooling."""
        H, W = self.resolution
        size = math.floor(self.window / 2 ** level)
        return math.ceil(H / self.window) * 2 ** level * size, math.ceil(W / self.window) * 2 ** level * size

    def _pooled_levels(self, x: torch.Tensor, five_d: bool) -> list[torch.Tensor]:
        H, W = self.resolution
        levels = []
        for level in range(self.focal_level - 1):
            size = math.floor(self.window / 2 ** level)
            target_h, target_w = self._pool_grid(level)
            fitted = _fit(x, H, W, target_h, target_w)
            if rewrite_enabled(self, "head_gather"):
                levels.append(pool_windows_gathered(fitted, target_h, target_w, self.dim,
                                                    getattr(self, f"pool_tokens_{level}"), self.pool_layers[level]))
            else:
                levels.append(pool_windows(fitted, target_h, target_w, self.dim, size, self.pool_layers[level], five_d))
        return levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.resolution
        C = self.dim
        five_d = rewrite_enabled(self, "window_5d")
        shortcut = x
        x = self.norm1(x).view(-1, H, W, C)
        attended = self.attn([x] + self._pooled_levels(x, five_d))
        if not rewrite_enabled(self, "head_gather"):  # head_gather returns the tokens in row order
            # the official code slices the output to window² tokens: it has exactly that many, a no-op
            windows = attended.reshape(-1, self.window, self.window, C)
            attended = merge_windows(windows, self.window, H, W, C, five_d).reshape(-1, H * W, C)
        x = shortcut + attended
        return x + self.mlp(self.norm2(x))


def _fit(x: torch.Tensor, H: int, W: int, height: int, width: int) -> torch.Tensor:
    """Centre-trim or zero-pad (B, H, W, C) to (height, width), as the official pooling does."""
    if H > height:
        top = (H - height) // 2
        x = x[:, top: top + height]
    elif H < height:
        top = (height - H) // 2
        x = F.pad(x, (0, 0, 0, 0, top, height - H - top))
    if W > width:
        left = (W - width) // 2
        x = x[:, :, left: left + width]
    elif W < width:
        left = (width - W) // 2
        x = F.pad(x, (0, 0, left, width - W - left))
    return x


class ConvPatchEmbed(nn.Module):
    """Strided conv + LayerNorm: the stem (7×7, stride 4) and the stage transitions (3×3, stride 2)."""

    def __init__(self, in_chans: int, embed_dim: int, stem: bool, in_size: int):
        super().__init__()
        kernel, padding, stride = (7, 2, 4) if stem else (3, 1, 2)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)
        self.out_size = (in_size + 2 * padding - kernel) // stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a constant token count (not flatten) keeps the Reshape target static in a dynamic-batch graph
        tokens = self.proj(x).reshape(-1, self.proj.out_channels, self.out_size ** 2)
        return self.norm(tokens.transpose(1, 2))


class FocalStage(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 focal_level: int, top_k: int, downsample: bool):
        super().__init__()
        self.resolution, self.dim = resolution, dim
        self.blocks = nn.ModuleList(
            FocalBlock(dim, resolution, num_heads, window, focal_level, top_k) for _ in range(depth)
        )
        self.downsample = ConvPatchEmbed(dim, 2 * dim, stem=False, in_size=resolution[0]) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x.transpose(1, 2).reshape(-1, self.dim, *self.resolution))
        return x


class FocalTransformerV2(nn.Module, ExportRewrites):
    export_rewrites = REWRITES

    def __init__(self, img_size: int = 224, num_classes: int = 1000, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, focal_levels: Sequence[int] = (2, 2, 2, 2), focal_top_k: int = 128):
        super().__init__()
        self.img_size = img_size
        self.patch_embed = ConvPatchEmbed(3, embed_dim, stem=True, in_size=img_size)
        side = self.patch_embed.out_size
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            res = (side // 2 ** i, side // 2 ** i)
            self.layers.append(FocalStage(embed_dim * 2 ** i, res, depth, num_heads[i], window_size,
                                          focal_levels[i], focal_top_k, downsample=i < len(depths) - 1))
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(1))


# --- checkpoint adapter ---


REBUILD_HINT = ("; the checkpoint's constant buffers were edited or come from another window size or resolution"
                " — use the official .pth of this model")


def checkpoint_filter_fn(state_dict: dict, model: FocalTransformerV2) -> dict:
    """Check the constant geometry a checkpoint carries against the architecture's.

    The nearest-key indices come from a top-k over distances with many ties, so a checkpoint made
    by another torch build may pick other keys at equal distance; that is still this model, and
    its buffers are used as they are. Any other difference means another architecture.
    """
    for name, module in model.named_modules():
        if not isinstance(module, FocalWindowAttention):
            continue
        prefix = f"{name}."
        _expect_equal(state_dict, prefix + "window_coords", module.window_coords)
        for level, grid in enumerate(module.key_grids):
            idx_key, coord_key = f"{prefix}topk_cloest_indice_{level}", f"{prefix}topk_cloest_coords_{level}"
            if idx_key not in state_dict or coord_key not in state_dict:
                continue  # reported as missing by the loader
            indices = state_dict[idx_key]
            if indices.shape != module.indices(level).shape or not _valid_choice(indices, module.query_grid, grid):
                raise FocalinferError(f"{idx_key} does not select the nearest keys this architecture needs{REBUILD_HINT}")
            offsets = offsets_of(grid_offsets(module.query_grid, grid), indices)
            if level > 0:
                offsets = offsets * module.window
            want = offsets.unsqueeze(1) + module.window_coords.view(-1, 2)[None, :, None, :]
            _expect_equal(state_dict, coord_key, want)
    return state_dict


def _expect_equal(state_dict: dict, key: str, want: torch.Tensor) -> None:
    got = state_dict.get(key)
    if got is not None and (got.shape != want.shape or not torch.equal(got.to(want.dtype), want)):
        raise FocalinferError(f"{key} differs from the constant this architecture computes{REBUILD_HINT}")


def _valid_choice(indices: torch.Tensor, query_grid, key_grid) -> bool:
    """True when ``indices`` are distinct keys at the k smallest distances of each query."""
    if indices.min() < 0 or indices.max() >= key_grid[0] * key_grid[1]:
        return False
    if (indices.sort(dim=1).values.diff(dim=1) == 0).any():
        return False
    picked = offsets_of(grid_offsets(query_grid, key_grid), indices)
    _, best, _ = closest_keys(query_grid, key_grid, indices.shape[1])
    return torch.equal(picked.norm(dim=-1).sort(dim=1).values, best.norm(dim=-1).sort(dim=1).values)


# --- variants ---

FOCAL_FAST = {
    # name: (embed_dim, depths, heads, config in the official repo's configs/)
    "focal-fast-t": (96, (2, 2, 6, 2), (3, 6, 12, 24), "configs/focalv2_tiny_useconv_patch4_window7_224.yaml"),
    "focal-fast-s": (96, (2, 2, 18, 2), (3, 6, 12, 24), "configs/focalv2_small_useconv_patch4_window7_224.yaml"),
    "focal-fast-b": (128, (2, 2, 18, 2), (4, 8, 16, 32), "configs/focalv2_base_useconv_patch4_window7_224.yaml"),
}
# parameter counts of the official models built with those configs
PARAMS = {"focal-fast-t": 30_220_564, "focal-fast-s": 51_526_540, "focal-fast-b": 91_186_824}


def _builder(embed_dim, depths, heads):
    def build(**overrides):
        cfg = dict(embed_dim=embed_dim, depths=depths, num_heads=heads)
        cfg.update(overrides)
        return FocalTransformerV2(**cfg)

    return build


focal_fast_tiny = _builder(*FOCAL_FAST["focal-fast-t"][:3])
focal_fast_small = _builder(*FOCAL_FAST["focal-fast-s"][:3])
focal_fast_base = _builder(*FOCAL_FAST["focal-fast-b"][:3])

for _name, _build in (("focal-fast-t", focal_fast_tiny), ("focal-fast-s", focal_fast_small),
                      ("focal-fast-b", focal_fast_base)):
    _config = FOCAL_FAST[_name][3]
    register_model(ModelSpec(
        name=_name,
        family="focal",
        builder=_build,
        input_size=224,
        transforms={
            # Focal data/build.py: resize int(256/224 * 224) bicubic, TEST.CROP
            "official": official_transform(224, 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD),
            "modelzoo": modelzoo_transform(224),
        },
        checkpoint_layout="model",
        source=SOURCE,
        checkpoint_filter=checkpoint_filter_fn,
        params=PARAMS[_name],
        is_lead=_name == "focal-fast-s",
        notes=f"{_config}: focal levels 2, top-k 128, fc pooling, conv patch embed, no shift",
        extra={"config": _config},
    ))
