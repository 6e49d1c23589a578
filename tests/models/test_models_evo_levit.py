"""Evo-LeViT checked against logits and token selections pinned from the official code.

tests/data/pinned/evo_levit.json was computed on 2026-11-22 by the official YifanXu74/Evo-ViT
code at commit 4c5d9b3 (``levit/evo_levit_384.py``; the reduced cases through its ``LeViT`` class
with the overrides' hyper-parameters, passed the way its ``model_factory`` does), CPU, fp32,
torch 2.13, eval mode, its two timm imports served by a minimal stand-in, from a scratch script
outside the repository: the official model loaded (strict) the checkpoint
``make_checkpoint(model, path, seed, **overrides)`` writes and classified
``make_images(shape, seed)``. ``kept_positions`` are the original grid positions of the tokens each
token-selection stage kept, read from the official global ``ori_indices``.

Random weights give nearly uniform attention, so the ranking that picks the kept tokens can sit
close to a tie. Input seeds were chosen so that at every selection the last kept and the first
dropped score are at least MIN_SELECTION_GAP apart (relative to the largest score; fp32 rounding
moves these scores by about 3e-7 relative, measured against fp64), and so that neighbouring
top-6 logits are at least 10 parity bounds apart. The tests assert the gap instead of trusting it.
Regenerate only from the official code, never from this package.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch

from focalinfer.errors import FocalinferError
from focalinfer.models.checkpoint import load_model, read_state_dict, save_checkpoint
from focalinfer.models.evo_levit import STATIC_SELECTION, ConvBN, EvoStage, LinearBN, checkpoint_filter_fn
from focalinfer.models.synthetic import make_checkpoint, synthetic_state_dict
from focalinfer.registry import get_model_spec
from pinned_logits import assert_matches_pinned, assert_same_logits, make_images

DATA = Path(__file__).parents[1] / "data"
LEAD = "evo-levit-256-384"
REDUCED_CASES = ("reduced", "reduced-dense-stage0")
MIN_SELECTION_GAP = 5e-5
FORBIDDEN_OPS = {"ScatterND", "NonZero", "Loop", "If"}


def read_json(relative: str) -> dict:
    return json.loads((DATA / relative).read_text())


def pinned_case(name: str) -> dict:
    return read_json("pinned/evo_levit.json")["cases"][name]


def load_pinned_model(case: dict, tmp_path: Path):
    checkpoint = make_checkpoint(case["model"], tmp_path / "weights.pth", seed=case["checkpoint_seed"],
                                 **case["overrides"])
    return load_model(case["model"], checkpoint, **case["overrides"])


def run_recording_selection(model, images: torch.Tensor):
    """Logits, plus per selection stage: the sorted kept positions and the relative score gap."""
    kept, gaps = [], []

    def before(stage, args):
        scores = args[1].scores.sort(dim=1, descending=True).values
        gap = scores[:, stage.num_kept - 1] - scores[:, stage.num_kept]
        gaps.append((gap / scores.abs().amax(dim=1)).min().item())

    def after(stage, args, output):
        kept.append(output[1].order[:, :stage.num_kept].round().long().sort(dim=1).values.tolist())

    stages = [m for m in model.modules() if isinstance(m, EvoStage)]
    hooks = [s.register_forward_pre_hook(before) for s in stages]
    hooks += [s.register_forward_hook(after) for s in stages]
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, kept, gaps


def check_against_pinned(model, case: dict) -> None:
    images = make_images(case["input_shape"], case["input_seed"])
    logits, kept, gaps = run_recording_selection(model, images)
    assert len(gaps) == len(case["kept_positions"])
    assert min(gaps) >= MIN_SELECTION_GAP, f"selection near a tie ({min(gaps):.2g}): pick another input seed"
    assert kept == case["kept_positions"]
    assert_matches_pinned(logits, case)


def reduced_model(case_name: str = "reduced", seed: int = 0):
    case = pinned_case(case_name)
    model = get_model_spec(case["model"]).build(**case["overrides"])
    model.load_state_dict(synthetic_state_dict(model, seed=seed))
    return model, case


# --- architecture and registry ---------------------------------------------------------------

def test_state_dict_matches_manifest():
    with torch.device("meta"):
        model = get_model_spec(LEAD).build()
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    state = model.state_dict(keep_vars=True)
    got = [
        (key, list(value.shape), str(value.dtype).removeprefix("torch."),
         "parameter" if key in parameters else "buffer")
        for key, value in state.items()
    ]
    manifest = read_json(f"manifests/{LEAD}.json")
    expected = [(e["key"], e["shape"], e["dtype"], e["kind"]) for e in manifest["state_dict"]]
    assert got == expected  # same keys, shapes, dtypes, kinds and order as the official model
    aliases = [(e["alias_of"], e["key"]) for e in manifest["state_dict"] if e.get("alias_of")]
    assert len(aliases) == 364
    assert all(state[key] is state[alias] for key, alias in aliases)  # one tensor, two keys
    assert sum(p.numel() for p in model.parameters()) == manifest["parameters"]


SIZES = ("128s", "128", "192", "256", "384")


@pytest.mark.parametrize("variant, size", [(v, s) for v in SIZES for s in (224, 384)])
def test_registered_variants(variant, size):
    name = f"evo-levit-{variant}" + ("-384" if size == 384 else "")
    spec = get_model_spec(name)
    file, suffix = ("evo_levit_384.py", "_384") if size == 384 else ("evo_levit.py", "")
    builder = f"EvoLeViT_{variant.upper()}{suffix}"
    assert spec.source == f"YifanXu74/Evo-ViT@4c5d9b3 levit/{file} {builder}"
    assert spec.family == "evo_levit" and spec.checkpoint_layout == "model"
    assert spec.is_lead == (name == LEAD)
    official = spec.transform("official")
    # Evo-ViT datasets.py: Resize(int(256 / 224 * size), bicubic), CenterCrop(size), ImageNet stats.
    assert (official.resize, official.crop, official.interpolation) == (int(256 / 224 * size), size, "bicubic")
    assert official.mean == (0.485, 0.456, 0.406) and official.std == (0.229, 0.224, 0.225)
    assert spec.input_size == size
    assert ("modelzoo" in spec.transforms) == (name == LEAD)
    with torch.device("meta"):
        model = spec.build()
    # spec.params was counted on the official builders; this catches a drifted configuration.
    assert sum(p.numel() for p in model.parameters()) == spec.params
    assert model.poss.shape == (1, (size // 16) ** 2 + 1, model.cls_token.shape[-1])


# --- parity with the official code -----------------------------------------------------------

@pytest.mark.parametrize("rewrites", [(), (STATIC_SELECTION,)], ids=["official", "rewritten"])
@pytest.mark.parametrize("case_name", REDUCED_CASES)
def test_reduced_matches_official(case_name, rewrites, tmp_path):
    case = pinned_case(case_name)
    model = load_pinned_model(case, tmp_path)
    model.set_export_rewrites(rewrites)
    check_against_pinned(model, case)


@pytest.mark.fullsize
def test_fullsize_matches_official(tmp_path):
    case = pinned_case("fullsize")
    assert case["model"] == LEAD and case["overrides"] == {}
    check_against_pinned(load_pinned_model(case, tmp_path), case)


def test_images_are_classified_independently():
    """No state survives a forward or leaks across the batch (the official code uses globals)."""
    model, _ = reduced_model()
    first, second = make_images([1, 3, 128, 128], 1), make_images([1, 3, 128, 128], 2)
    with torch.no_grad():
        alone = model(first)
        model(second)
        again = model(first)
        batched = model(torch.cat((second, first)))
    assert torch.equal(alone, again)
    # Within the parity bound, not bit for bit: a batch of 2 may run other kernels than a batch of
    # 1 (which ones depends on the CPU); anything leaking across the batch is far larger.
    assert_same_logits(batched[1:], alone)


# --- checkpoints -----------------------------------------------------------------------------

def test_checkpoint_with_disagreeing_aliases_is_refused(tmp_path):
    model, case = reduced_model()
    state = model.state_dict()
    assert checkpoint_filter_fn(state, model) is state
    state["stage_blocks.0.m.qkv.c.weight"] = state["stage_blocks.0.m.qkv.c.weight"] + 1
    path = save_checkpoint(state, tmp_path / "bad.pth", "model")
    with pytest.raises(FocalinferError, match="blocks.0.m1.m.qkv.c.weight and stage_blocks.0.m.qkv.c.weight differ") as error:
        load_model(case["model"], path, **case["overrides"])
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert read_state_dict(path)[1] == "model"


# --- export rewrites -------------------------------------------------------------------------

def test_rewrite_keeps_state_dict_and_logits():
    model, _ = reduced_model()
    keys = list(model.state_dict())
    images = make_images([2, 3, 128, 128], 4)
    with torch.no_grad():
        official = model(images)
        model.set_export_rewrites([STATIC_SELECTION])
        rewritten = model(images)
    assert list(model.state_dict()) == keys
    assert_same_logits(rewritten, official)
    with pytest.raises(ValueError, match="unknown rewrite"):
        model.set_export_rewrites(["no_such_rewrite"])


def test_batchnorm_stays_foldable():
    from focalinfer.export.rewrites import fold_batchnorm

    model, _ = reduced_model()
    model.set_export_rewrites([STATIC_SELECTION])
    images = make_images([2, 3, 128, 128], 4)
    with torch.no_grad():
        expected = model(images)
        folds = fold_batchnorm(model, images[:1])
        folded = model(images)
    layers_with_bn = [name for name, m in model.named_modules() if isinstance(m, (ConvBN, LinearBN))]
    folded_into = {fold.split(" -> ")[0] for fold in folds}
    assert {f"{name}.c" for name in layers_with_bn} <= folded_into
    assert_same_logits(folded, expected)


def export_onnx(model, path: Path, image_size: int) -> list[str]:
    """Export with a dynamic batch axis as the export stage does; returns the TracerWarnings."""
    example = make_images([1, 3, image_size, image_size], 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=11,
            input_names=["image"], output_names=["class"],
            dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}},
        )
    return [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


def topk_ks(graph: onnx.ModelProto) -> list[int | None]:
    """K of every TopK node when it is a constant (initializer or Constant node), else None."""
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    ks = []
    for node in graph.graph.node:
        if node.op_type == "TopK":
            value = constants.get(node.input[1])
            ks.append(None if value is None else int(value.reshape(-1)[0]))
    return ks


def test_onnx_export_rewritten_is_static_and_matches(tmp_path):
    model, case = reduced_model()
    batches = {n: make_images([n, 3, 128, 128], seed=10 + n) for n in (1, 2)}
    with torch.no_grad():  # the official formulation, eager: the reference for every graph
        expected = {n: model(images) for n, images in batches.items()}
    model.set_export_rewrites([STATIC_SELECTION])
    path = tmp_path / "model.onnx"
    assert export_onnx(model, path, 128) == []
    graph = onnx.load(str(path))
    ops = Counter(node.op_type for node in graph.graph.node)
    assert not FORBIDDEN_OPS & set(ops), {op: ops[op] for op in FORBIDDEN_OPS & set(ops)}
    # Sort by score in each of the 3 selection stages, restore the grid order in the 2 subsamples.
    assert sorted(topk_ks(graph)) == [4, 16, 16, 64, 64]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, images in batches.items():  # one graph, every batch size it claims to support
        (logits,) = session.run(["class"], {"image": images.numpy()})
        assert logits.shape == (n, 1000)
        assert_same_logits(torch.from_numpy(logits), expected[n])


def test_onnx_export_official_path_has_scatter(tmp_path):
    """What the rewrite removes: the official in-place slice writes export as ScatterND."""
    model, _ = reduced_model()
    path = tmp_path / "naive.onnx"
    export_onnx(model, path, 128)
    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert ops["ScatterND"] > 0
