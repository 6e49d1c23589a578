"""Focal-fast (Focal Transformer v2): fidelity to the official code, geometry checks, rewrites, ONNX.

The pinned logits in tests/data/pinned/focal.json were computed once by the official
microsoft/Focal-Transformer@57bb303 ``classification/focal_transformer_v2.py`` (built in a scratch
directory outside this repo with a tiny stand-in for the timm helpers it imports), on weights from
``synthetic_state_dict(official_model, seed)`` and the inputs named in the file — see its
``_provenance``; re-verified against the official code on 2026-11-23 (``_verified``: the official
logits equal the pinned ones exactly). The same seeds give the same weights here because the
state-dict keys, shapes and constant buffers are identical. Neighbouring top-6 logits are at least
7.9 parity bounds apart (``min_top6_gap``), so top-5 equality is a fair check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from focalinfer.models.checkpoint import CheckpointError, load_model, save_checkpoint
from focalinfer.models.focal import REWRITES, FocalWindowAttention
from focalinfer.models.synthetic import make_checkpoint, synthetic_state_dict
from focalinfer.registry import get_model_spec

DATA = Path(__file__).parents[1] / "data"
PINNED = json.loads((DATA / "pinned" / "focal.json").read_text())
MANIFEST = json.loads((DATA / "manifests" / "focal-fast-s.json").read_text())
REDUCED = dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=50)


def pinned_input(case: dict) -> torch.Tensor:
    batch = 2 if case is PINNED["reduced"] else 1
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(case["seed"] + 100))


def bound(reference: torch.Tensor) -> float:
    return 1e-4 * max(1.0, reference.abs().max().item())


@pytest.fixture(scope="module")
def reduced_checkpoint(tmp_path_factory):
    model = get_model_spec("focal-fast-s").build(**REDUCED)
    path = tmp_path_factory.mktemp("focal") / "reduced.pth"
    save_checkpoint(synthetic_state_dict(model, seed=PINNED["reduced"]["seed"]), path, "model")
    return path


def load_reduced(path, rewrites=()):
    model = load_model("focal-fast-s", path, **REDUCED)
    model.set_export_rewrites(rewrites)
    return model


@pytest.mark.parametrize("rewrites", [(), *[(r,) for r in REWRITES], tuple(REWRITES)])
def test_reduced_config_matches_official_logits(reduced_checkpoint, rewrites):
    case = PINNED["reduced"]
    with torch.no_grad():
        logits = load_reduced(reduced_checkpoint, rewrites)(pinned_input(case))
    want = torch.tensor(case["logits"])
    assert (logits - want).abs().max().item() <= bound(want)
    assert logits.topk(5).indices.tolist() == case["top5"]


@pytest.mark.parametrize("rewrites", [*[(r,) for r in REWRITES], tuple(REWRITES)])
def test_each_rewrite_keeps_the_logits_of_the_official_path(reduced_checkpoint, rewrites):
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = load_reduced(reduced_checkpoint)(x)
        got = load_reduced(reduced_checkpoint, rewrites)(x)
    assert (got - want).abs().max().item() <= bound(want)


def test_precomputed_bias_follows_weights_loaded_after_a_forward(reduced_checkpoint):
    model = get_model_spec("focal-fast-s").build(**REDUCED)
    model.set_export_rewrites(["precomputed_bias"])
    x = pinned_input(PINNED["reduced"])
    with torch.no_grad():
        model(x)  # caches the bias of the random init
        model.load_state_dict(torch.load(reduced_checkpoint, weights_only=True)["model"])
        got = model(x)
    want = torch.tensor(PINNED["reduced"]["logits"])
    assert (got - want).abs().max().item() <= bound(want)


def test_rewrites_keep_the_state_dict(reduced_checkpoint):
    plain, rewritten = load_reduced(reduced_checkpoint), load_reduced(reduced_checkpoint, REWRITES)
    with torch.no_grad():
        rewritten(pinned_input(PINNED["reduced"]))  # fills the bias cache
    a, b = plain.state_dict(), rewritten.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.fullsize
def test_focal_fast_s_matches_official_logits(tmp_path):
    case = PINNED["focal-fast-s"]
    path = make_checkpoint("focal-fast-s", tmp_path / "focal.pth", seed=case["seed"])
    assert set(torch.load(path, weights_only=True)) == {"model"}
    model = load_model("focal-fast-s", path)
    with torch.no_grad():
        logits = model(pinned_input(case))
    assert abs(logits.abs().max().item() - case["max_abs_logit"]) <= bound(logits)
    assert (logits[:, :16] - torch.tensor(case["logits_0_16"])).abs().max().item() <= bound(logits)
    assert logits.topk(5).indices.tolist() == case["top5"]


def test_state_dict_equals_the_official_manifest():
    with torch.device("meta"):
        model = get_model_spec("focal-fast-s").build()
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    want = [(e["key"], e["shape"], e["dtype"]) for e in MANIFEST["state_dict"]]
    assert got == want
    params = {k for k, _ in model.named_parameters()}
    assert params == {e["key"] for e in MANIFEST["state_dict"] if e["kind"] == "parameter"}
    assert sum(p.numel() for p in model.parameters()) == MANIFEST["parameters"] == get_model_spec("focal-fast-s").params


def test_family_variants_are_registered():
    """T/S/B are the three focalv2_*_useconv configs at 57bb303; parameter counts of the official models."""
    official_params = {"focal-fast-t": 30_220_564, "focal-fast-s": 51_526_540, "focal-fast-b": 91_186_824}
    for name, dim in (("focal-fast-t", 96), ("focal-fast-s", 96), ("focal-fast-b", 128)):
        spec = get_model_spec(name)
        assert spec.default_transform.resize == 256 and spec.default_transform.crop == 224
        assert spec.source == "microsoft/Focal-Transformer@57bb303 classification/focal_transformer_v2.py"
        assert spec.checkpoint_layout == "model"
        size = {"t": "tiny", "s": "small", "b": "base"}[name[-1]]
        assert spec.extra["config"] == f"configs/focalv2_{size}_useconv_patch4_window7_224.yaml"
        with torch.device("meta"):
            model = spec.build()
        assert model.patch_embed.proj.out_channels == dim
        assert sum(p.numel() for p in model.parameters()) == spec.params == official_params[name]
    assert get_model_spec("focal-fast-s").is_lead


def attention_prefix(model) -> str:
    return next(n for n, m in model.named_modules() if isinstance(m, FocalWindowAttention)) + "."


TAMPERED = {  # buffer: (edit, what the error says)
    "topk_cloest_indice_0": (lambda t: t.flip(1) + 1, "does not select the nearest keys"),  # other keys
    "topk_cloest_indice_1": (lambda t: t.clone().fill_(0), "does not select the nearest keys"),  # repeated keys
    "topk_cloest_coords_0": (lambda t: t * 2, "differs from the constant this architecture computes"),
    "topk_cloest_coords_1": (lambda t: t.flip(-1), "differs from the constant this architecture computes"),
    "window_coords": (lambda t: t + 1, "differs from the constant this architecture computes"),
}


@pytest.mark.parametrize("buffer", list(TAMPERED))
def test_a_wrong_constant_buffer_is_refused(reduced_checkpoint, tmp_path, buffer):
    state = torch.load(reduced_checkpoint, weights_only=True)["model"]
    key = attention_prefix(load_reduced(reduced_checkpoint)) + buffer
    edit, message = TAMPERED[buffer]
    state[key] = edit(state[key])
    save_checkpoint(state, tmp_path / "bad.pth", "model")
    with pytest.raises(CheckpointError, match=f"{key} {message}") as err:
        load_reduced(tmp_path / "bad.pth")
    assert "\n" not in str(err.value) and "bad.pth" in str(err.value) and "official .pth" in str(err.value)


@pytest.mark.parametrize("rewrites", [(), tuple(REWRITES)])
def test_an_equivalent_key_order_from_another_torch_build_loads(reduced_checkpoint, tmp_path, rewrites):
    """Another top-k implementation may list the same nearest keys in another order: still this model."""
    model = load_reduced(reduced_checkpoint, rewrites)
    prefix = attention_prefix(model)
    state = torch.load(reduced_checkpoint, weights_only=True)["model"]
    for name in ("topk_cloest_indice_0", "topk_cloest_coords_0"):
        state[prefix + name] = state[prefix + name].flip(-1 if "indice" in name else -2)
    save_checkpoint(state, tmp_path / "reordered.pth", "model")
    x = pinned_input(PINNED["reduced"])
    with torch.no_grad():
        a, b = model(x), load_reduced(tmp_path / "reordered.pth", rewrites)(x)
    assert (a - b).abs().max().item() <= bound(a)


def export(model, path, dynamic=True):
    torch.onnx.export(
        model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=11,
        input_names=["image"], output_names=["class"],
        dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}} if dynamic else None,
    )
    return onnx.load(str(path))


def block_ops(graph: onnx.ModelProto, op_type: str) -> int:
    """``op_type`` nodes inside transformer blocks, after constant folding (onnxsim, as export runs it)."""
    import onnxsim

    simplified, ok = onnxsim.simplify(graph)
    assert ok
    return sum(n.op_type == op_type and "/blocks." in n.name for n in simplified.graph.node)


def test_head_gather_leaves_one_transpose_per_block_beside_the_key_transpose(reduced_checkpoint, tmp_path):
    """Per block: the qkv table's head-major Transpose and k's last-two-axes one (ONNX Runtime folds
    the latter into its MatMul), against 8 Transposes and 2–3 Slices without head_gather."""
    blocks = sum(REDUCED["depths"])
    others = [r for r in REWRITES if r != "head_gather"]
    before = export(load_reduced(reduced_checkpoint, others), tmp_path / "before.onnx")
    after = export(load_reduced(reduced_checkpoint, REWRITES), tmp_path / "after.onnx")
    assert block_ops(before, "Transpose") == 8 * blocks and block_ops(before, "Slice") >= 2 * blocks
    assert block_ops(after, "Transpose") == 2 * blocks and block_ops(after, "Slice") == 0


def max_rank(graph: onnx.ModelProto) -> int:
    inferred = onnx.shape_inference.infer_shapes(graph)
    infos = list(inferred.graph.value_info) + list(inferred.graph.output)
    return max(len(i.type.tensor_type.shape.dim) for i in infos)


@pytest.mark.parametrize("rewrites", [(), tuple(REWRITES)])
def test_dynamic_batch_onnx_is_right_at_every_batch_size(reduced_checkpoint, tmp_path, rewrites):
    """The official batch count int(windows / windows_per_image) would freeze at export: not here."""
    model = load_reduced(reduced_checkpoint, rewrites)
    graph = export(model, tmp_path / "m.onnx")
    ops = {n.op_type for n in graph.graph.node}
    static_rank = max_rank(export(model, tmp_path / "static.onnx", dynamic=False))  # ranks infer fully
    assert not ops & {"Pad", "Loop", "If"}  # no zero-size pads, no control flow either way
    if rewrites:
        assert not ops & {"GatherElements", "ScatterND", "ScatterElements", "Tile", "Expand"}
        assert static_rank <= 5
    else:
        assert {"GatherElements", "Tile"} <= ops and static_rank == 6  # what the rewrites remove
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == (batch, 50)
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
