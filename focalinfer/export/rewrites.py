"""Generic export rewrites: PyTorch-level passes that apply to any model.

Model-specific rewrites live in the family modules (``ExportRewrites.export_rewrites``); the
passes here need no knowledge of the architecture. Each pass works on the model it is given (the
exporter hands it a copy) and returns a short list of what it changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Autograd nodes that only re-view their input (a flatten before BatchNorm1d, say).
VIEW_NODE_PREFIXES = ("ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward", "AliasBackward")


@dataclass(frozen=True)
class GenericRewrite:
    name: str
    description: str
    apply: Callable[[nn.Module, torch.Tensor], list[str]]


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Fold eval-mode BatchNorms into an adjacent Conv/Linear; each folded BN becomes ``nn.Identity``.

    The pairs are found by running ``example`` once with autograd on, which shows every consumer
    of every tensor. A BatchNorm folds backwards into the Conv/Linear that produced its input when
    the BN is that output's only consumer (its input may be a flat view of it, as in LeViT's
    Linear+BatchNorm1d); otherwise forwards into the Conv (unpadded, ungrouped) or Linear that is
    its output's only consumer (a pre-norm BN feeding a 1×1 conv, as in VAN's MLPs).
    Returns ``"conv -> bn"`` / ``"bn -> conv"`` for each fold.
    """
    calls, uses = _trace_calls(model, example)
    if not calls:
        return []
    names = {id(m): n for n, m in model.named_modules()}
    changes = []
    backward = _backward_pairs(calls, uses)
    folded = {id(bn) for _, bn in backward}
    forward = [(bn, consumer) for bn, consumer in _forward_pairs(calls, uses) if id(bn) not in folded]
    for producer, bn in backward:
        _fold_after(producer, bn)
        changes.append(f"{names[id(producer)]} -> {names[id(bn)]}")
    for bn, consumer in forward:
        _fold_before(bn, consumer)
        changes.append(f"{names[id(bn)]} -> {names[id(consumer)]}")
    for bn in [bn for _, bn in backward] + [bn for bn, _ in forward]:
        _replace_module(model, bn, nn.Identity())
    return changes


@dataclass(frozen=True)
class _Call:
    module: nn.Module
    input: torch.Tensor
    input_fn: object
    output: torch.Tensor
    output_fn: object


def _trace_calls(model: nn.Module, example: torch.Tensor) -> tuple[list[_Call], Counter]:
    """One call record per Conv/Linear/BN module called exactly once, and the autograd use counts."""
    calls: dict[int, list[_Call]] = {}

    def record(module, inputs, output):
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            # grad_fns are read now: a later in-place op on the tensor would replace them.
            calls.setdefault(id(module), []).append(
                _Call(module, inputs[0], inputs[0].grad_fn, output, output.grad_fn))

    watched = [m for m in model.modules() if isinstance(m, PRODUCERS + BATCHNORMS)]
    if not any(isinstance(m, BATCHNORMS) for m in watched):
        return [], Counter()
    handles = [m.register_forward_hook(record) for m in watched]
    grad_flags = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(True)  # the autograd graph is how we see every consumer of a tensor
        with torch.enable_grad():
            output = model(example)
    finally:
        for h in handles:
            h.remove()
        for p, flag in grad_flags.items():
            p.requires_grad_(flag)
    # A module called twice (shared weights) cannot take one fold for both calls.
    single = [entries[0] for entries in calls.values() if len(entries) == 1 and entries[0].output.numel()]
    return single, _autograd_uses(_tensors_in(output))


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    # Every recorded tensor is still alive, so equal storage means one is a view of the other.
    return t.untyped_storage().data_ptr(), t.storage_offset()


def _backward_pairs(calls: list[_Call], uses: Counter) -> list[tuple[nn.Module, nn.Module]]:
    producers = {_storage_key(c.output): c for c in calls if isinstance(c.module, PRODUCERS)}
    pairs = []
    for bn in (c for c in calls if isinstance(c.module, BATCHNORMS) and _foldable_bn(c.module)):
        producer = producers.get(_storage_key(bn.input))
        if (producer and _channels_line_up(producer.module, producer.output, bn.module, bn.input)
                and _only_path(producer.output_fn, bn.input_fn, uses)):
            pairs.append((producer.module, bn.module))
    return pairs


def _forward_pairs(calls: list[_Call], uses: Counter) -> list[tuple[nn.Module, nn.Module]]:
    consumers = {_storage_key(c.input): c for c in calls if _takes_input_fold(c.module)}
    pairs = []
    for bn in (c for c in calls if isinstance(c.module, BATCHNORMS) and _foldable_bn(c.module)):
        consumer = consumers.get(_storage_key(bn.output))
        if (consumer and _input_channels_line_up(bn.module, bn.output, consumer.module, consumer.input)
                and _only_path(bn.output_fn, consumer.input_fn, uses)):
            pairs.append((bn.module, consumer.module))
    return pairs


def _takes_input_fold(module: nn.Module) -> bool:
    """A per-input-channel scale and shift pass through this layer exactly (no zero padding)."""
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        unpadded = module.padding == "valid" or (
            not isinstance(module.padding, str) and all(p == 0 for p in module.padding))
        return unpadded and module.groups == 1
    return False


def _tensors_in(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors_in(item)]
    return []


def _autograd_uses(roots: list[torch.Tensor]) -> Counter:
    """How many edges of the autograd graph (plus model outputs) point at each node."""
    uses: Counter = Counter()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    uses.update(stack)
    seen = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for parent, _ in node.next_functions:
            if parent is not None:
                uses[parent] += 1
                stack.append(parent)
    return uses


def _foldable_bn(bn: nn.Module) -> bool:
    return not bn.training and bn.track_running_stats and bn.running_mean is not None


def _channels_line_up(producer: nn.Module, out: torch.Tensor, bn: nn.Module, bn_in: torch.Tensor) -> bool:
    if bn_in.numel() != out.numel() or not (bn_in.is_contiguous() and out.is_contiguous()):
        return False
    if isinstance(producer, nn.Linear):
        # BatchNorm normalises dim 1; for a flattened (rows, features) view that is the Linear's output.
        return bn_in.dim() == 2 and bn_in.shape[1] == producer.out_features == bn.num_features
    return bn_in.shape == out.shape and producer.out_channels == bn.num_features


def _input_channels_line_up(bn: nn.Module, bn_out: torch.Tensor, consumer: nn.Module,
                            consumer_in: torch.Tensor) -> bool:
    if bn_out.numel() != consumer_in.numel() or not (bn_out.is_contiguous() and consumer_in.is_contiguous()):
        return False
    if isinstance(consumer, nn.Linear):
        # (rows, features) BN output re-viewed with the features last: the Linear's input axis.
        return bn_out.dim() == 2 and bn_out.shape[1] == bn.num_features == consumer.in_features == consumer_in.shape[-1]
    return bn_out.shape == consumer_in.shape and consumer.in_channels == bn.num_features


def _only_path(source_fn, target_fn, uses: Counter) -> bool:
    """True when the tensor made by ``source_fn`` reaches nothing but ``target_fn``'s input,
    through single-use views only."""
    if source_fn is None or target_fn is None:
        return False
    node = target_fn
    while node is not source_fn:
        if uses[node] != 1 or not type(node).__name__.startswith(VIEW_NODE_PREFIXES):
            return False
        node = node.next_functions[0][0]
        if node is None:
            return False
    return uses[node] == 1


def _bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """BN(x) = scale * x + shift per channel (float64)."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def _set_bias(layer: nn.Module, bias: torch.Tensor) -> None:
    bias = bias.to(layer.weight.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(bias)
    else:
        layer.bias.copy_(bias)


@torch.no_grad()
def _fold_before(bn: nn.Module, consumer: nn.Module) -> None:
    """consumer(BN(x)) = consumer'(x): scale the input channels, push the shift into the bias."""
    scale, shift = _bn_scale_shift(bn)
    weight = consumer.weight.double()
    shape = (1, -1) + (1,) * (weight.dim() - 2)  # input channels/features are dim 1
    bias = consumer.bias.double() if consumer.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    bias = bias + (weight * shift.reshape(shape)).flatten(1).sum(1)
    consumer.weight.copy_((weight * scale.reshape(shape)).to(consumer.weight.dtype))
    _set_bias(consumer, bias)


@torch.no_grad()
def _fold_after(producer: nn.Module, bn: nn.Module) -> None:
    """BN(producer(x)) = producer'(x): scale the output channels, shift the bias."""
    scale, shift = _bn_scale_shift(bn)
    weight = producer.weight
    shape = (-1,) + (1,) * (weight.dim() - 1)  # out channels/features are dim 0 for Conv and Linear
    producer.weight.copy_((weight.double() * scale.reshape(shape)).to(weight.dtype))
    old_bias = producer.bias.double() if producer.bias is not None else torch.zeros_like(scale)
    _set_bias(producer, old_bias * scale + shift)


def _replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for child_name, child in list(parent.named_children()):
            if child is old:
                setattr(parent, child_name, new)


GENERIC_REWRITES: dict[str, GenericRewrite] = {
    rewrite.name: rewrite
    for rewrite in (
        GenericRewrite(
            "fold_batchnorm",
            "folds each eval-mode BatchNorm into the Conv/Linear it directly follows (or, for a "
            "pre-norm BN, the unpadded Conv/Linear that is its only consumer): no "
            "BatchNormalization node, and for Linear+BatchNorm1d no flatten/reshape pair around it",
            fold_batchnorm,
        ),
    )
}
