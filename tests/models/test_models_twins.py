"""Twins (PCPVT and ALTGVT) checked against logits pinned from the official code.

tests/data/pinned/twins.json holds logits computed on 2026-11-22 by the official
Meituan-AutoML/Twins ``gvt.py`` at commit 4700293 (CPU, fp32, torch 2.13, its ``timm.models``
imports served by a minimal stand-in reproducing timm 0.3.2's ``Block``/``Attention``/``Mlp``),
run from a scratch script outside the repository: the official builder loaded (strict) the
checkpoint ``make_checkpoint(model, path, seed, **overrides)`` writes (passed through
``shrink_for_eps_probe`` for the eps-probe case) and classified ``make_images(shape, seed)``.
The classification ``gvt.py`` cannot window a map whose side is not a multiple of the window,
so the padded case ran it with the ``GroupAttention`` of the same commit's ``detection/gvt.py``
swapped in (zero pad right/bottom, crop back). Input seeds were picked among the first 40 so
that neighbouring top-6 logits are at least 50 parity bounds apart (a stable top-5 check).
Regenerate only from the official code, never from this package.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from focalinfer.models.checkpoint import load_model, read_state_dict, save_checkpoint
from focalinfer.models.synthetic import make_checkpoint, synthetic_state_dict
from focalinfer.registry import get_model_spec
from pinned_logits import assert_matches_pinned, assert_same_logits, make_images, tolerance

DATA = Path(__file__).parents[1] / "data"


def read_json(relative: str) -> dict:
    return json.loads((DATA / relative).read_text())


def pinned_case(name: str) -> dict:
    return read_json("pinned/twins.json")["cases"][name]


def shrink_for_eps_probe(state: dict, scale: float) -> dict:
    """Weights under which LayerNorm eps decides the logits.

    With ordinary weights every LayerNorm sees a variance near 1, so eps 1e-5 instead of 1e-6
    moves the logits far less than the parity bound. Scaling the patch embeddings (conv and
    norm) and GSA's sub-sampling conv shrinks the inputs of the patch-embedding, block and GSA
    norms until a wrong eps moves the logits by hundreds of bounds (only the final norm, fed by
    the residual stream, stays eps-blind).
    """
    def shrink(key: str) -> bool:
        return key.startswith("patch_embeds.") or ".attn.sr." in key

    return {key: value * scale if shrink(key) else value for key, value in state.items()}


REDUCED_CASES = ("altgvt-reduced", "altgvt-reduced-padded", "altgvt-reduced-eps-probe", "pcpvt-reduced")
ALL_REWRITES = ("window_5d", "static_spatial")


def load_pinned_model(case: dict, tmp_path: Path):
    """The registry model loaded from the synthetic checkpoint the pinned case was computed on."""
    checkpoint = make_checkpoint(
        case["model"], tmp_path / "weights.pth", seed=case["checkpoint_seed"], **case["overrides"]
    )
    if case.get("eps_probe_scale"):
        state, layout = read_state_dict(checkpoint)
        save_checkpoint(shrink_for_eps_probe(state, case["eps_probe_scale"]), checkpoint, layout)
    return load_model(case["model"], checkpoint, **case["overrides"])


def window_sizes_seen(model, images: torch.Tensor) -> list[tuple[int, int]]:
    """(H, W) of every map the locally-grouped attention layers receive."""
    from focalinfer.models.twins import LocallyGroupedAttention

    seen = []
    hooks = [
        module.register_forward_pre_hook(lambda m, args: seen.append((int(args[1]), int(args[2]))))
        for module in model.modules() if isinstance(module, LocallyGroupedAttention)
    ]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return seen


def test_state_dict_matches_manifest():
    with torch.device("meta"):
        model = get_model_spec("twins-altgvt-s").build()
    parameters = {name for name, _ in model.named_parameters()}
    got = [
        (key, list(value.shape), str(value.dtype).removeprefix("torch."),
         "parameter" if key in parameters else "buffer")
        for key, value in model.state_dict().items()
    ]
    manifest = read_json("manifests/twins-altgvt-s.json")
    expected = [(e["key"], e["shape"], e["dtype"], e["kind"]) for e in manifest["state_dict"]]
    assert got == expected  # same keys, shapes, dtypes, kinds and order as the official model
    assert sum(p.numel() for p in model.parameters()) == manifest["parameters"]


@pytest.mark.parametrize("name, builder", [
    ("twins-altgvt-s", "alt_gvt_small"), ("twins-altgvt-b", "alt_gvt_base"),
    ("twins-altgvt-l", "alt_gvt_large"), ("twins-pcpvt-s", "pcpvt_small_v0"),
    ("twins-pcpvt-b", "pcpvt_base_v0"), ("twins-pcpvt-l", "pcpvt_large_v0"),
])
def test_registered_variants(name, builder):
    spec = get_model_spec(name)
    assert spec.source == f"Meituan-AutoML/Twins@4700293 gvt.py {builder}"
    assert spec.checkpoint_layout == "raw" and spec.family == "twins"
    assert spec.is_lead == (name == "twins-altgvt-s")
    official = spec.transform("official")
    assert (official.resize, official.crop, official.interpolation) == (256, 224, "bicubic")
    with torch.device("meta"):
        model = spec.build()
    # spec.params was counted on the official builder; this catches a drifted configuration.
    assert sum(p.numel() for p in model.parameters()) == spec.params


@pytest.mark.parametrize("rewrites", [(), ALL_REWRITES], ids=["official", "rewrites"])
@pytest.mark.parametrize("case_name", REDUCED_CASES)
def test_reduced_matches_official(case_name, rewrites, tmp_path):
    case = pinned_case(case_name)
    model = load_pinned_model(case, tmp_path)
    model.set_export_rewrites(rewrites)
    images = make_images(case["input_shape"], case["input_seed"])
    if case["padded"]:
        sizes = window_sizes_seen(model, images)
        assert any(h % 7 or w % 7 for h, w in sizes), sizes
    with torch.no_grad():
        assert_matches_pinned(model(images), case)


@pytest.mark.fullsize
def test_fullsize_matches_official(tmp_path):
    case = pinned_case("altgvt-s-fullsize")
    model = load_pinned_model(case, tmp_path)
    with torch.no_grad():
        assert_matches_pinned(model(make_images(case["input_shape"], case["input_seed"])), case)


def test_local_attention_pads_maps_smaller_than_the_window():
    from focalinfer.models.twins import LocallyGroupedAttention

    torch.manual_seed(0)
    attention = LocallyGroupedAttention(dim=8, num_heads=2, ws=7).eval()
    tokens = torch.randn(2, 3 * 5, 8)
    with torch.no_grad():
        padded = attention(tokens, 3, 5)
        # One window holds the whole 3×5 map, so the result is plain attention plus the effect
        # of the zero padding tokens (qkv bias only) that the official zero-pad variant keeps.
        grid = torch.nn.functional.pad(tokens.view(2, 3, 5, 8), (0, 0, 0, 2, 0, 4))
        whole = attention(grid.reshape(2, 49, 8), 7, 7).view(2, 7, 7, 8)[:, :3, :5]
    # The parity bound: 15 and 49 tokens are different matrix shapes, whose kernels (CPU-dependent)
    # may sum in another order.
    assert (padded - whole.reshape(2, 15, 8)).abs().max() <= tolerance(whole.abs().max().item())


def test_rewrites_keep_state_dict():
    with torch.device("meta"):
        model = get_model_spec("twins-altgvt-s").build()
    keys = list(model.state_dict())
    model.set_export_rewrites(ALL_REWRITES)
    assert list(model.state_dict()) == keys
    with pytest.raises(ValueError, match="unknown rewrite"):
        model.set_export_rewrites(["no_such_rewrite"])


def export_onnx(model, path: Path, image_size) -> list[warnings.WarningMessage]:
    """Export with a dynamic batch axis as the export stage does; returns the TracerWarnings."""
    example = make_images([1, 3, *image_size], 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=11,
            input_names=["image"], output_names=["class"],
            dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}},
        )
    return [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


def max_tensor_rank(path: Path, images: np.ndarray) -> int:
    """Largest rank among all tensors the graph computes (every node output exposed and run)."""
    graph = onnx.load(str(path))
    exposed = {output.name for output in graph.graph.output}
    for node in graph.graph.node:
        for name in node.output:
            if name and name not in exposed:
                graph.graph.output.append(onnx.ValueInfoProto(name=name))
                exposed.add(name)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return max(np.asarray(value).ndim for value in session.run(None, {"image": images}))


def computed_reshape_targets(path: Path) -> list[str]:
    """Reshape nodes whose target shape is computed in the graph rather than a constant."""
    graph = onnx.load(str(path)).graph
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return [node.name for node in graph.node if node.op_type == "Reshape" and node.input[1] not in constants]


@pytest.mark.parametrize("case_name, image_size, rewrites", [
    ("altgvt-reduced", (224, 224), ()),
    ("altgvt-reduced", (224, 224), ("window_5d",)),
    ("altgvt-reduced", (224, 224), ALL_REWRITES),
    ("altgvt-reduced-padded", (160, 200), ()),
    ("altgvt-reduced-padded", (160, 200), ALL_REWRITES),
    ("pcpvt-reduced", (224, 224), ()),
])
def test_onnx_export_dynamic_batch(case_name, image_size, rewrites, tmp_path):
    case = pinned_case(case_name)
    model = get_model_spec(case["model"]).build(**case["overrides"])
    model.load_state_dict(synthetic_state_dict(model, seed=case["checkpoint_seed"]))
    batches = {n: make_images([n, 3, *image_size], seed=10 + n) for n in (1, 2)}
    with torch.no_grad():  # the official formulation, eager: the reference for every graph
        expected = {n: model(images) for n, images in batches.items()}
    model.set_export_rewrites(rewrites)
    path = tmp_path / "model.onnx"
    tracer_warnings = export_onnx(model, path, image_size)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, images in batches.items():  # one graph, every batch size it claims to support
        (logits,) = session.run(["class"], {"image": images.numpy()})
        assert logits.shape == (n, 1000)
        assert_same_logits(torch.from_numpy(logits), expected[n])
    if "static_spatial" in rewrites:
        assert not tracer_warnings, [str(w.message) for w in tracer_warnings]
        assert computed_reshape_targets(path) == []
    if case["model"] == "twins-altgvt-s":
        rank = max_tensor_rank(path, batches[2].numpy())
        assert rank == (5 if "window_5d" in rewrites else 6)
