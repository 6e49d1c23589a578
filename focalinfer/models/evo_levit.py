"""Evo-LeViT: LeViT with slow-fast token evolution (Xu et al., AAAI 2022), eval mode only.

Follows YifanXu74/Evo-ViT @4c5d9b3, ``levit/evo_levit.py`` (224 px) and ``levit/evo_levit_384.py``
(384 px); the two files differ only in the input size. A LeViT-style backbone (Conv/Linear +
BatchNorm, Hardswish, a learned position embedding ``poss`` instead of LeViT's attention biases)
whose layers after the first two see only part of the tokens:

* every attention layer blends its class attention into a running per-token score (the *global
  class attention*), with a learned trade-off ``sigmoid(learn_tradeoff)``;
* each stage sorts the patch tokens by that score, runs its layers on the top half plus one token
  merged from the rest (score-weighted mean), then moves every other token by the merged token's
  residual updates (the "fast" path);
* the attention-subsample layers put the tokens back in their original order before pooling.

The official code carries the scores and the original positions between modules in module-level
globals; here they travel explicitly as a :class:`TokenState`. Modules hold the same parameters
under the same names, including the official double registration: ``blocks`` and
``stage_blocks`` list the same layers, so every layer weight has two state-dict keys (both are in
the released checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from focalinfer.errors import FocalinferError
from focalinfer.models.layers import ExportRewrites, rewrite_enabled, trunc_normal_
from focalinfer.registry import (
    IMAGENET_MEAN, IMAGENET_STD, ModelSpec, modelzoo_transform, official_transform, register_model,
)

SOURCE = "YifanXu74/Evo-ViT@4c5d9b3"
STATIC_SELECTION = "static_token_selection"
PATCH_SIZE = 16  # four stride-2 convolutions


class TokenState(NamedTuple):
    """What the official code keeps in the globals ``global_attn`` and ``ori_indices``.

    ``scores``: (B, N) global class attention of the patch tokens, in the current token order
    (None before the first attention layer). ``order``: (B, N) original grid position of each
    token, as floats (the official code packs it into one tensor with the tokens).
    """

    scores: torch.Tensor | None
    order: torch.Tensor


# --- LeViT building blocks -------------------------------------------------------------------

class ConvBN(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.c = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)


class LinearBN(nn.Sequential):
    """Linear without bias, then BatchNorm1d over the flattened (batch × tokens) rows."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.c = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        if isinstance(self.bn, nn.Identity):  # folded at export: the flatten round trip is waste
            return y
        return self.bn(y.flatten(0, 1)).reshape_as(y)


class BNLinear(nn.Sequential):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.l = nn.Linear(in_features, out_features)


def patch_embedding(dim: int) -> nn.Sequential:
    act = nn.Hardswish
    return nn.Sequential(
        ConvBN(3, dim // 8), act(), ConvBN(dim // 8, dim // 4), act(),
        ConvBN(dim // 4, dim // 2), act(), ConvBN(dim // 2, dim),
    )


class FeedForward(nn.Sequential):
    """LinearBN → Hardswish → LinearBN; takes and returns the scores untouched (uniform calls)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(LinearBN(dim, hidden), nn.Hardswish(), LinearBN(hidden, dim))

    def forward(self, x: torch.Tensor, scores: torch.Tensor | None = None):
        return super().forward(x), scores


class Residual(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def step(self, x: torch.Tensor, scores):
        """(x + update, update, scores): stages need the raw update of the merged token."""
        update, scores = self.m(x, scores)
        return x + update, update, scores

    def forward(self, x: torch.Tensor, state: TokenState):
        x, _, scores = self.step(x, state.scores)
        return x, state._replace(scores=scores)


class LayerPair(nn.Module):
    """One layer (attention, feed-forward) as listed in the official ``blocks``.

    Only there for the state-dict keys ``blocks.<i>.m1`` / ``.m2``: the eval forward of the
    official model (``stage_wise_prune``) runs ``stage_blocks``, which holds the same modules.
    """

    def __init__(self, m1: Residual, m2: Residual):
        super().__init__()
        self.m1 = m1
        self.m2 = m2


# --- token selection -------------------------------------------------------------------------

def gather_rows(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, C) reordered along N by index (B, N): one Gather on the flattened rows."""
    batch, count, channels = tokens.shape
    offset = torch.arange(batch, device=tokens.device).unsqueeze(1) * count
    rows = (index + offset).reshape(-1)
    return tokens.reshape(-1, channels).index_select(0, rows).reshape(batch, -1, channels)


def reorder(patches: torch.Tensor, state: TokenState, index: torch.Tensor):
    """Patch tokens, scores and positions permuted by index, gathered as one packed tensor."""
    packed = torch.cat((patches, state.scores.unsqueeze(-1), state.order.unsqueeze(-1)), dim=-1)
    packed = gather_rows(packed, index)
    return packed[:, :, :-2], packed[:, :, -2], packed[:, :, -1]


def replace_patches(x: torch.Tensor, patches: torch.Tensor, static: bool) -> torch.Tensor:
    """The cls token of x followed by ``patches``."""
    if static:
        return torch.cat((x[:, :1], patches), dim=1)
    x[:, 1:] = patches  # the official eval path writes in place (a ScatterND in ONNX)
    return x


def merge_tokens(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(B, 1, C): the score-weighted mean of the tokens."""
    weight = scores / scores.sum(dim=1, keepdim=True)
    return (weight.unsqueeze(-1) * tokens).sum(dim=1, keepdim=True)


# --- attention -------------------------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int = 2):
        super().__init__()
        self.learn_tradeoff = nn.Parameter(torch.zeros(1))
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        # Set by EvoStage: its layers see cls, this many kept tokens, then the merged token.
        self.kept_tokens: int | None = None
        self.qkv = LinearBN(dim, (2 * key_dim + self.value_dim) * num_heads)
        self.proj = nn.Sequential(nn.Hardswish(), LinearBN(self.value_dim * num_heads, dim))

    def forward(self, x: torch.Tensor, scores: torch.Tensor | None):
        batch, count, _ = x.shape
        q, k, v = self.qkv(x).view(batch, count, self.num_heads, -1).split(
            [self.key_dim, self.key_dim, self.value_dim], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        scores = self.evolve_scores(attn, scores)
        x = (attn @ v).transpose(1, 2).reshape(batch, count, -1)
        return self.proj(x), scores

    def evolve_scores(self, attn: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        if scores is None:  # the model's first attention layer starts the running score
            return attn[:, :, 0, 1:].mean(dim=1)
        tradeoff = torch.sigmoid(self.learn_tradeoff)
        if self.kept_tokens is None:  # every patch token is present, no merged token
            return (1 - tradeoff) * scores + tradeoff * attn[:, :, 0, 1:].mean(dim=1)
        kept = self.kept_tokens  # their scores come first, in the stage's sorted order
        updated = (1 - tradeoff) * scores[:, :kept] + tradeoff * attn[:, :, 0, 1:-1].mean(dim=1)
        if rewrite_enabled(self, STATIC_SELECTION):
            return torch.cat((updated, scores[:, kept:]), dim=1)
        scores[:, :kept] = updated  # official in-place write (ScatterND in ONNX)
        return scores


class Subsample(nn.Module):
    """Every stride-th token of the resolution × resolution grid (after the cls token, if any)."""

    def __init__(self, stride: int, resolution: int):
        super().__init__()
        self.stride = stride
        self.resolution = resolution

    def forward(self, x: torch.Tensor, with_cls: bool = True) -> torch.Tensor:
        if with_cls:
            return torch.cat((x[:, :1], self.forward(x[:, 1:], with_cls=False)), dim=1)
        batch, _, channels = x.shape
        grid = x.reshape(batch, self.resolution, self.resolution, channels)
        return grid[:, ::self.stride, ::self.stride].reshape(batch, -1, channels)


class AttentionSubsample(nn.Module):
    """Restores the original token order, then attention with queries on the strided grid."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, num_heads: int,
                 attn_ratio: int, stride: int, resolution: int):
        super().__init__()
        self.learn_tradeoff = nn.Parameter(torch.zeros(1))
        self.poss = nn.Parameter(torch.zeros(1, resolution ** 2 + 1, in_dim))
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.num_patches = resolution ** 2
        self.out_resolution = (resolution - 1) // stride + 1
        self.kv = LinearBN(in_dim, (key_dim + self.value_dim) * num_heads)
        self.q = nn.Sequential(Subsample(stride, resolution), LinearBN(in_dim, key_dim * num_heads))
        self.proj = nn.Sequential(nn.Hardswish(), LinearBN(self.value_dim * num_heads, out_dim))

    def forward(self, x: torch.Tensor, state: TokenState):
        static = rewrite_enabled(self, STATIC_SELECTION)
        total_score = state.scores.sum(dim=1, keepdim=True)
        if static:
            original_order = state.order.topk(self.num_patches, dim=1, largest=False).indices
        else:
            original_order = torch.argsort(state.order, dim=1)
        patches, scores, order = reorder(x[:, 1:], state, original_order)
        pooled = self.q[0](torch.stack((scores, order), dim=-1), with_cls=False)
        scores, order = pooled[:, :, 0], pooled[:, :, 1]
        x = replace_patches(x, patches, static) + self.poss

        batch, count, _ = x.shape
        k, v = self.kv(x).view(batch, count, self.num_heads, -1).split([self.key_dim, self.value_dim], dim=3)
        k, v = k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        q = self.q(x).view(batch, self.out_resolution ** 2 + 1, self.num_heads, self.key_dim).permute(0, 2, 1, 3)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)

        cls_attn = self.q[0](attn[:, :, 0, 1:].mean(dim=1).unsqueeze(-1), with_cls=False).squeeze(-1)
        tradeoff = torch.sigmoid(self.learn_tradeoff)
        scores = (1 - tradeoff) * scores + tradeoff * cls_attn
        scores = scores * (total_score / scores.sum(dim=1, keepdim=True))  # keep the total score

        x = (attn @ v).transpose(1, 2).reshape(batch, -1, self.value_dim * self.num_heads)
        return self.proj(x), TokenState(scores, order)


class EvoStage(nn.Module):
    """The layers of a stage that see only the top-scored tokens (the official ``StageModule``)."""

    def __init__(self, layers: list[Residual], keep_ratio: float, num_patches: int):
        super().__init__()
        self.m = nn.ModuleList(layers)
        self.num_patches = num_patches
        self.num_kept = int(num_patches * keep_ratio)
        # The official code tells the two layouts apart by shape (patches - 1 == tokens seen - 2),
        # so a stage that drops exactly one token updates its scores as if nothing were dropped.
        if num_patches - self.num_kept != 1:
            for layer in layers:
                if isinstance(layer.m, Attention):
                    layer.m.kept_tokens = self.num_kept

    def forward(self, x: torch.Tensor, state: TokenState):
        static = rewrite_enabled(self, STATIC_SELECTION)
        if static:
            ranking = state.scores.topk(self.num_patches, dim=1).indices
        else:
            ranking = torch.argsort(state.scores, dim=1, descending=True)
        patches, scores, order = reorder(x[:, 1:], state, ranking)
        x = replace_patches(x, patches, static)
        split = self.num_kept + 1  # cls + kept tokens
        slow, fast = x[:, :split], x[:, split:]

        x_slow = torch.cat((slow, merge_tokens(fast, scores[:, self.num_kept:])), dim=1)
        merged_update = 0
        for layer in self.m:
            x_slow, update, scores = layer.step(x_slow, scores)
            merged_update = merged_update + update[:, -1:]
        fast = fast + merged_update.expand(-1, fast.shape[1], -1)
        x_slow = x_slow[:, :-1]

        if static:
            x = torch.cat((x_slow, fast), dim=1)
        else:  # the official eval path writes both parts back in place
            x[:, split:] = fast
            x[:, :split] = x_slow
        return x, TokenState(scores, order)


# --- model -----------------------------------------------------------------------------------

class EvoLeViT(ExportRewrites, nn.Module):
    """Evo-LeViT with the distillation heads; eval returns the mean of ``head`` and ``head_dist``."""

    export_rewrites = {
        STATIC_SELECTION: "token sorting as TopK with a constant k (not argsort, whose k is computed "
                          "from shapes) and Concat instead of in-place slice writes (ScatterND)",
    }

    def __init__(self, img_size: int = 224, embed_dim=(128, 256, 384), key_dim: int = 16,
                 depth=(2, 3, 4), num_heads=(4, 6, 8), dense_layers: int = 2,
                 keep_ratio: float = 0.5, num_classes: int = 1000):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim[0]))
        self.patch_embed = patch_embedding(embed_dim[0])
        resolution = img_size // PATCH_SIZE
        self.num_patches = resolution ** 2
        self.poss = nn.Parameter(trunc_normal_(torch.zeros(1, resolution ** 2 + 1, embed_dim[0])))

        blocks, stage_blocks = [], []
        layer_index = 0
        for i, (dim, layers, heads) in enumerate(zip(embed_dim, depth, num_heads)):
            selective = []
            for _ in range(layers):
                attention = Residual(Attention(dim, key_dim, heads))
                feed_forward = Residual(FeedForward(dim, 2 * dim))
                blocks.append(LayerPair(attention, feed_forward))
                (stage_blocks if layer_index < dense_layers else selective).extend((attention, feed_forward))
                layer_index += 1
            if selective:
                stage_blocks.append(EvoStage(selective, keep_ratio, resolution ** 2))
            if i + 1 < len(embed_dim):
                out_dim = embed_dim[i + 1]
                subsample = AttentionSubsample(dim, out_dim, key_dim, num_heads=dim // key_dim,
                                               attn_ratio=4, stride=2, resolution=resolution)
                feed_forward = Residual(FeedForward(out_dim, 2 * out_dim))
                blocks += [subsample, feed_forward]
                stage_blocks += [subsample, feed_forward]
                resolution = subsample.out_resolution
        self.blocks = nn.Sequential(*blocks)
        self.stage_blocks = nn.Sequential(*stage_blocks)

        # head_cls / head_cls_dist classify the cls token in training only; kept for the keys.
        self.head = BNLinear(embed_dim[-1], num_classes)
        self.head_dist = BNLinear(embed_dim[-1], num_classes)
        self.head_cls = BNLinear(embed_dim[-1], num_classes)
        self.head_cls_dist = BNLinear(embed_dim[-1], num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(image).flatten(2).transpose(1, 2)
        batch = x.shape[0]
        order = torch.arange(self.num_patches, dtype=x.dtype, device=x.device)
        state = TokenState(scores=None, order=order.unsqueeze(0).expand(batch, -1))
        x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1) + self.poss
        for module in self.stage_blocks:
            x, state = module(x, state)
        x = x[:, 1:].mean(dim=1)
        return (self.head(x) + self.head_dist(x)) / 2


# --- checkpoints -----------------------------------------------------------------------------

def shared_keys(model: nn.Module) -> list[tuple[str, str]]:
    """(first key, alias) for every tensor the model lists under two state-dict keys."""
    first_key: dict[int, str] = {}
    pairs = []
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first_key:
            pairs.append((first_key[id(tensor)], key))
        else:
            first_key[id(tensor)] = key
    return pairs


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Refuses a checkpoint whose two keys for one shared tensor disagree.

    ``blocks`` and ``stage_blocks`` hold the same layers, so loading silently keeps whichever key
    comes last; the official model always saves equal values under both.
    """
    for key, alias in shared_keys(model):
        if key in state_dict and alias in state_dict and not torch.equal(state_dict[key], state_dict[alias]):
            raise FocalinferError(
                f"{key} and {alias} differ, but Evo-LeViT holds them as one tensor; "
                "save the checkpoint from the model's own state_dict()"
            )
    return state_dict


# --- registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    embed_dim: tuple[int, int, int]
    key_dim: int
    num_heads: tuple[int, int, int]
    depth: tuple[int, int, int]
    params_224: int  # counted on the official builders
    params_384: int


# The official ``specification`` (C, D, N, X); every variant keeps all tokens in its first two
# layers and half of them (plus one merged token) in the rest.
VARIANTS = {
    "128s": Variant((128, 256, 384), 16, (4, 6, 8), (2, 3, 4), 8_606_651, 8_728_251),
    "128": Variant((128, 256, 384), 16, (4, 8, 12), (4, 4, 4), 10_041_022, 10_162_622),
    "192": Variant((192, 288, 384), 32, (3, 5, 6), (4, 4, 4), 11_803_526, 11_976_806),
    "256": Variant((256, 384, 512), 32, (4, 6, 8), (4, 4, 4), 20_035_278, 20_266_318),
    "384": Variant((384, 512, 768), 32, (6, 9, 12), (4, 4, 4), 40_836_830, 41_177_310),
}


# The README model zoo (Top-1 on ImageNet); the other definitions have no released weights.
RELEASED = {
    ("128s", 224): "README weights: Evo-LeViT-128S, 73.0 top-1",
    ("128", 224): "README weights: Evo-LeViT-128, 74.4 top-1",
    ("192", 224): "README weights: Evo-LeViT-192, 76.8 top-1",
    ("256", 224): "README weights: Evo-LeViT-256, 78.8 top-1",
    ("384", 224): "README weights: Evo-LeViT-384, 80.7 top-1",
    ("256", 384): "README weights: Evo-LeViT-256*, 81.1 top-1",
    ("384", 384): "README weights: Evo-LeViT-384*, 82.2 top-1",
}
NOT_RELEASED = "defined in the official code, no released weights"


def _builder(variant: Variant, img_size: int):
    def build(**overrides) -> EvoLeViT:
        config = dict(img_size=img_size, embed_dim=variant.embed_dim, key_dim=variant.key_dim,
                      depth=variant.depth, num_heads=variant.num_heads)
        return EvoLeViT(**{**config, **overrides})

    return build


def _register(size: str, img_size: int) -> None:
    variant = VARIANTS[size]
    is_lead = (size, img_size) == LEAD
    suffix = "_384" if img_size == 384 else ""
    official_file = "levit/evo_levit_384.py" if img_size == 384 else "levit/evo_levit.py"
    transforms = {"official": official_transform(img_size, 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD)}
    if is_lead:  # the Ascend ModelZoo port exists for this model only
        transforms["modelzoo"] = modelzoo_transform(img_size)
    register_model(ModelSpec(
        name=f"evo-levit-{size}" + ("-384" if img_size == 384 else ""),
        family="evo_levit",
        builder=_builder(variant, img_size),
        input_size=img_size,
        transforms=transforms,
        checkpoint_layout="model",
        checkpoint_filter=checkpoint_filter_fn,
        source=f"{SOURCE} {official_file} EvoLeViT_{size.upper()}{suffix}",
        params=variant.params_384 if img_size == 384 else variant.params_224,
        is_lead=is_lead,
        notes=f"eval transform from Evo-ViT datasets.py build_transform: resize int(256/224*{img_size}) "
              f"bicubic, crop {img_size}, ImageNet mean/std; " + RELEASED.get((size, img_size), NOT_RELEASED),
    ))


LEAD = ("256", 384)
for _size in VARIANTS:
    for _img_size in (224, 384):
        _register(_size, _img_size)
