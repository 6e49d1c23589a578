"""VAN checked against logits pinned from the official code, the checkpoint manifest and onnxruntime.

tests/data/pinned/van.json holds logits computed by the official
Visual-Attention-Network/VAN-Classification ``models/van.py`` at commit e19779b (``van_b2`` for the
lead; ``VAN(norm_layer=partial(nn.LayerNorm, eps=1e-6), **overrides)`` for the reduced config), on
CPU in fp32 with torch 2.13, its ``timm`` imports served by a minimal stand-in (to_2tuple,
trunc_normal_, DropPath, register_model and timm 0.4.12's ``_cfg``), for the weights
``make_checkpoint('van-b2', path, seed, **overrides)`` writes (generated with ``synthetic_state_dict``
on the official model and checked identical) and the inputs ``make_images`` below builds. Generated
2026-11 by a scratch script outside the repository (its "provenance" field says the same);
regenerate only from the official code, never from this package.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from focalinfer.models.checkpoint import load_model, read_state_dict
from focalinfer.models.synthetic import make_checkpoint
from focalinfer.registry import get_model_spec, model_names

DATA = Path(__file__).parents[1] / "data"
PINNED = json.loads((DATA / "pinned" / "van.json").read_text())
MANIFEST = json.loads((DATA / "manifests" / "van-b2.json").read_text())

# Parameter counts of the official van_b0 … van_b3 (1000 classes), counted by building the
# official models at e19779b: sum(p.numel() for p in model.parameters()).
OFFICIAL_PARAMS = {"van-b0": 4_105_800, "van-b1": 13_861_800, "van-b2": 26_578_472, "van-b3": 44_765_608}


def make_images(shape, seed: int) -> torch.Tensor:
    """Deterministic pseudo-images in the normalised-pixel range, identical on every platform."""
    index = torch.arange(math.prod(shape), dtype=torch.float64)
    pattern = torch.sin(index * 0.7548776662 + seed) * torch.cos(index * 0.5698402910 + 2 * seed)
    return (2.0 * pattern).reshape(shape).to(torch.float32)


def parity_bound(reference: torch.Tensor) -> float:
    return 1e-4 * max(1.0, reference.abs().max().item())


def assert_matches(logits: torch.Tensor, reference: torch.Tensor, top5: list) -> None:
    diff = (logits - reference).abs().max().item()
    assert diff <= parity_bound(reference), f"max |diff| {diff:.3g} > {parity_bound(reference):.3g}"
    assert logits.topk(5, dim=1).indices.tolist() == top5


@pytest.fixture(scope="module")
def reduced_model(tmp_path_factory):
    pinned = PINNED["reduced"]
    path = tmp_path_factory.mktemp("van") / "reduced.pth"
    make_checkpoint(pinned["model"], path, seed=pinned["weights_seed"], **pinned["overrides"])
    return load_model(pinned["model"], path, **pinned["overrides"])


@pytest.mark.parametrize("case", PINNED["reduced"]["cases"], ids=lambda c: "x".join(map(str, c["input_shape"])))
def test_reduced_config_matches_official_logits(reduced_model, case):
    with torch.inference_mode():
        logits = reduced_model(make_images(case["input_shape"], case["image_seed"]))
    assert_matches(logits, torch.tensor(case["logits"]), case["top5"])


@pytest.mark.fullsize
def test_lead_matches_official_logits(tmp_path):
    pinned = PINNED["lead"]
    path = make_checkpoint(pinned["model"], tmp_path / "van-b2.pth", seed=pinned["weights_seed"])
    assert read_state_dict(path)[1] == "state_dict"  # the released .pth.tar layout
    model = load_model(pinned["model"], path)
    with torch.inference_mode():
        logits = model(make_images(pinned["input_shape"], pinned["image_seed"]))
    start, stop = pinned["logits_slice"]
    reference = torch.tensor(pinned["logits"])
    tolerance = 1e-4 * max(1.0, pinned["max_abs_logit"])
    assert (logits[:, start:stop] - reference).abs().max().item() <= tolerance
    assert (logits.topk(5, dim=1).values - torch.tensor(pinned["top5_values"])).abs().max().item() <= tolerance
    assert logits.topk(5, dim=1).indices.tolist() == pinned["top5"]
    assert logits.abs().max().item() == pytest.approx(pinned["max_abs_logit"], abs=tolerance)


def test_state_dict_matches_manifest():
    model = get_model_spec("van-b2").build()
    state = model.state_dict(keep_vars=True)
    parameter_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    got = [
        (key, tuple(t.shape), str(t.dtype).removeprefix("torch."),
         "parameter" if key in parameter_names else "buffer")
        for key, t in state.items()
    ]
    want = [(e["key"], tuple(e["shape"]), e["dtype"], e["kind"]) for e in MANIFEST["state_dict"]]
    assert sorted(set(got) - set(want)) == []  # unexpected or differing key/shape/dtype/kind
    assert sorted(set(want) - set(got)) == []  # missing or differing
    assert got == want  # same order as the official module, too

    first_key_of_tensor, aliases = {}, {}
    for key, tensor in state.items():
        first_key = first_key_of_tensor.setdefault(tensor.data_ptr(), key)
        if first_key != key:
            aliases[key] = first_key
    assert aliases == {e["key"]: e["alias_of"] for e in MANIFEST["state_dict"] if "alias_of" in e}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_counts_match_official(name):
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = spec.builder()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name] == spec.params
    if name == MANIFEST["model"]:
        assert spec.params == MANIFEST["parameters"]


def test_registry_entries():
    assert {"van-b0", "van-b1", "van-b2", "van-b3"} <= set(model_names())
    assert [n for n in model_names(lead_only=True) if n.startswith("van-")] == ["van-b2"]
    lead = get_model_spec("van-b2")
    assert lead.source == "Visual-Attention-Network/VAN-Classification@e19779b models/van.py van_b2"
    assert lead.checkpoint_layout == "state_dict"
    assert lead.atc_op_precision == ("Gelu=high_performance",)
    # timm 0.4.12 semantics (crop 0.9, mean = std = 0.5), not timm 1.x's ImageNet/0.875.
    official = lead.transform("official").as_dict()
    assert official == {"resize": 248, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3,
                        "interpolation": "bicubic", "resize_mode": "shorter"}
    assert lead.transform("modelzoo").as_dict() == {
        "resize": 224, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3,
        "interpolation": "bilinear", "resize_mode": "square"}
    for name in ("van-b0", "van-b1", "van-b3"):
        spec = get_model_spec(name)
        assert spec.transforms == lead.transforms and not spec.is_lead
        assert spec.source.endswith(name.replace("-", "_"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the exporter the task requires is the legacy one
def test_onnx_export_matches_onnxruntime_at_batch_1_and_2(reduced_model):
    import onnxruntime as ort

    buffer = io.BytesIO()
    torch.onnx.export(
        reduced_model, make_images((1, 3, 64, 64), 0), buffer, dynamo=False, opset_version=11,
        input_names=["image"], output_names=["class"],
        dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}},
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        images = make_images((batch, 3, 64, 64), 10 + batch)
        with torch.inference_mode():
            reference = reduced_model(images)
        (onnx_logits,) = session.run(["class"], {"image": images.numpy()})
        assert onnx_logits.shape == (batch, PINNED["reduced"]["overrides"]["num_classes"])
        assert np.abs(onnx_logits - reference.numpy()).max() <= parity_bound(reference)
        assert np.argsort(-onnx_logits, axis=1)[:, :5].tolist() == reference.topk(5, dim=1).indices.tolist()
