"""The checkpoint loader every stage uses: layouts, safety, and one-line errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from focalinfer import registry
from focalinfer.cli import cli
from focalinfer.models.checkpoint import (
    CheckpointError, guess_model, inspect_checkpoint, load_model, read_state_dict,
    registry_key_shapes, save_checkpoint,
)
from focalinfer.models.synthetic import synthetic_state_dict


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).mean((2, 3)))


@pytest.fixture
def tiny():
    spec = registry.ModelSpec(
        name="test-tiny", family="test", builder=Tiny, input_size=8,
        transforms={"official": registry.official_transform(8)}, checkpoint_layout="model", source="tests",
    )
    registry._load_families()
    registry.register_model(spec)
    yield spec
    registry._REGISTRY.pop("test-tiny")


@pytest.mark.parametrize("wrap", ["raw", "model", "state_dict", "model_ema", "module-prefix"])
def test_every_common_layout_loads_to_the_same_weights(tmp_path, tiny, wrap):
    state = synthetic_state_dict(Tiny(), seed=3)
    payload = {f"module.{k}": v for k, v in state.items()} if wrap == "module-prefix" else state
    if wrap not in ("raw", "module-prefix"):
        payload = {wrap: payload, "epoch": 300, "optimizer": {}}
    torch.save(payload, tmp_path / "c.pth")
    model = load_model("test-tiny", tmp_path / "c.pth")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert not model.training


def test_synthetic_weights_are_deterministic_and_sane():
    a, b, c = (synthetic_state_dict(Tiny(), seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])
    assert (a["bn.running_var"] > 0).all() and a["bn.num_batches_tracked"].dtype == torch.int64


def test_missing_and_mis_shaped_keys_are_named(tmp_path, tiny):
    state = synthetic_state_dict(Tiny())
    del state["bn.running_mean"]
    state["head.weight"] = torch.zeros(10, 5)
    state["extra.weight"] = torch.zeros(1)
    save_checkpoint(state, tmp_path / "c.pth", "model")
    with pytest.raises(CheckpointError) as err:
        load_model("test-tiny", tmp_path / "c.pth")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "c.pth") in msg
    assert "1 missing: bn.running_mean" in msg and "1 unexpected: extra.weight" in msg
    assert "head.weight: checkpoint (10, 5) vs model (10, 4)" in msg


def test_pickled_objects_are_refused_without_running_them(tmp_path, tiny):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"model": Evil()}, f, protocol=2)  # the protocol torch.save uses
    torch.save({"model": Tiny()}, tmp_path / "module.pth")  # a whole pickled module, common in the wild
    for name in ("evil.pth", "module.pth"):
        with pytest.raises(CheckpointError, match="weights only"):
            read_state_dict(tmp_path / name)


@pytest.mark.parametrize("content", [b"\x80\x02garbage", b"PK\x03\x04 not a zip", "half"])
def test_truncated_and_corrupt_files(tmp_path, tiny, content):
    path = tmp_path / "c.pth"
    if content == "half":
        save_checkpoint(synthetic_state_dict(Tiny()), path, "model")
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as err:
        read_state_dict(path)
    assert "\n" not in str(err.value)


def test_no_state_dict_inside(tmp_path):
    torch.save({"epoch": 3, "acc": 81.0}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        read_state_dict(tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")


def zeros_like_registry(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(shape) for k, shape in registry_key_shapes(name).items()}


def test_checkpoint_of_another_model_says_which(tmp_path):
    state = zeros_like_registry("twins-altgvt-s")
    assert guess_model(state) == "twins-altgvt-s"
    save_checkpoint(state, tmp_path / "twins.pth", "raw")
    with pytest.raises(CheckpointError, match="this looks like twins-altgvt-s") as err:
        load_model("van-b2", tmp_path / "twins.pth")
    assert "does not fit van-b2" in str(err.value)


def test_inspect_reports_layout_counts_and_model(tmp_path):
    state = zeros_like_registry("twins-altgvt-s")
    save_checkpoint(state, tmp_path / "twins.pth", "state_dict")
    info = inspect_checkpoint(tmp_path / "twins.pth")
    assert (info.layout, info.keys, info.model) == ("state_dict", len(state), "twins-altgvt-s")
    assert info.parameters == registry.get_model_spec("twins-altgvt-s").params
    out = CliRunner().invoke(cli, ["inspect", str(tmp_path / "twins.pth"), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["model"] == "twins-altgvt-s"
    bad = CliRunner().invoke(cli, ["inspect", str(tmp_path / "nope.pth")])
    assert bad.exit_code == 1 and bad.output.startswith("focalinfer: error:") and "Traceback" not in bad.output


def test_models_command_lists_lead_models():
    out = CliRunner().invoke(cli, ["models"])
    assert out.exit_code == 0
    for name in registry.model_names(lead_only=True):
        assert name in out.output
    assert "resize 248 bicubic, crop 224, mean (0.5, 0.5, 0.5)" in out.output  # VAN's timm-0.4.12 rule


def test_training_metadata_beside_the_weights_loads_safely(tmp_path, tiny, monkeypatch):
    """Official trainers save args (Namespace), a yacs config and numpy scalars with the weights."""
    import argparse
    import sys
    import types

    import numpy as np

    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):  # the shape of yacs' class: a dict subclass with instance attributes
        def __init__(self, d=None):
            super().__init__(d or {})
            self.__dict__["__immutable__"] = False

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    config.CfgNode, yacs.config = CfgNode, config
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", config)
    state = synthetic_state_dict(Tiny(), seed=1)
    torch.save({"model": state, "config": CfgNode({"MODEL": CfgNode({"NAME": "focal"})}),
                "args": argparse.Namespace(model="van_b2", lr=1e-3), "max_accuracy": np.float64(83.6),
                "epoch": 299}, tmp_path / "c.pth")
    monkeypatch.delitem(sys.modules, "yacs.config")  # the user's machine does not have yacs
    loaded, layout = read_state_dict(tmp_path / "c.pth")
    assert layout == "model" and all(torch.equal(loaded[k], v) for k, v in state.items())


GARBAGE = {"text": b"hello\n", "empty": b"", "random": bytes(range(7, 200, 3)), "json": b'{"model": {}}'}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_is_not_a_pytorch_checkpoint_on_every_loader_path(tmp_path, tiny, kind):
    """A text file once gave `KeyError: 101` from torch's unpickler (issue 10, rule 5)."""
    from focalinfer.backend.torch import EagerRunner

    path = tmp_path / f"{kind}.pth"
    path.write_bytes(GARBAGE[kind])
    for load in (read_state_dict, inspect_checkpoint, lambda p: load_model("test-tiny", p),
                 lambda p: EagerRunner("test-tiny", p)):
        with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as err:
            load(path)
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    for argv in (["inspect", str(path)],
                 ["export", "--model", "test-tiny", "--checkpoint", str(path), "--out", str(tmp_path / "x.onnx")]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.output.splitlines() == [result.output.splitlines()[0]]
        assert result.output.startswith(f"focalinfer: error: {path}: not a PyTorch checkpoint")
    assert not (tmp_path / "x.onnx").exists()


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        read_state_dict(tmp_path)


def test_inspect_counts_each_shared_tensor_once(tmp_path):
    """Evo-LeViT holds one tensor under two keys (blocks.* and stage_blocks.*); inspect once said
    37.9 M parameters for Evo-LeViT-256-384, which has 20.3 M. The small variant shares the same way."""
    from focalinfer.models.checkpoint import parameter_count
    from focalinfer.models.synthetic import make_checkpoint

    path = make_checkpoint("evo-levit-128s", tmp_path / "evo.pth")
    state, _ = read_state_dict(path)
    info = inspect_checkpoint(path)
    model = registry.get_model_spec("evo-levit-128s").build()
    assert info.model == "evo-levit-128s" and info.keys == len(state)
    # the reference: nn.Module.parameters() yields each shared parameter once
    assert info.parameters == sum(p.numel() for p in model.parameters()) == parameter_count("evo-levit-128s")
    shared = len(state) - len({id(t) for t in model.state_dict(keep_vars=True).values()})
    assert info.aliases == shared > 0
    assert info.tensors_bytes == sum(t.numel() * t.element_size() for t in
                                     {id(t): t for t in model.state_dict(keep_vars=True).values()}.values())
    # the same tensors saved as separate copies: counted per key (the file really holds them twice)
    save_checkpoint({k: v.clone() for k, v in state.items()}, tmp_path / "copies.pth", "model")
    assert inspect_checkpoint(tmp_path / "copies.pth").aliases == 0
    out = CliRunner().invoke(cli, ["inspect", str(path)])
    assert out.exit_code == 0 and f"{info.parameters:,} parameters" in out.output
    assert f"({shared} of them alias another key's tensor, counted once)" in out.output


@pytest.mark.fullsize
def test_inspect_parameter_counts_equal_the_official_manifests(tmp_path):
    """tests/data/manifests/<model>.json (the official key manifests): the official parameter count, aliases listed."""
    from pathlib import Path

    from focalinfer.models.synthetic import make_checkpoint

    manifests = Path(__file__).parents[1] / "data" / "manifests"
    for name in registry.model_names(lead_only=True):
        manifest = json.loads((manifests / f"{name}.json").read_text())
        info = inspect_checkpoint(make_checkpoint(name, tmp_path / f"{name}.pth"))
        assert info.parameters == manifest["parameters"], name
        assert info.aliases == sum("alias_of" in e for e in manifest["state_dict"]), name


# --- issue 22: what a refused file holds, and fine-tuned heads --------------------------------


class TrainerConfig:
    """A trainer's own class, pickled by reference beside the weights."""

    def __init__(self):
        self.depth = 12


def test_paths_in_training_args_load_as_pure_paths(tmp_path, tiny):
    import argparse
    import pathlib

    state = synthetic_state_dict(Tiny(), seed=1)
    torch.save({"model": state, "args": argparse.Namespace(output_dir=pathlib.Path("/runs/x"), data=pathlib.Path("d"))},
               tmp_path / "c.pth")
    loaded, layout = read_state_dict(tmp_path / "c.pth")
    assert layout == "model" and all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.parametrize("where, saved", [
    ("args.cfg", lambda state: {"model": state, "args": __import__("argparse").Namespace(lr=0.1, cfg=TrainerConfig())}),
    ("trainer", lambda state: {"model": state, "epoch": 3, "trainer": TrainerConfig()}),
    ("history[1]", lambda state: {"model": state, "history": [0.5, __import__("datetime").date(2026, 1, 1)]}),
])
def test_a_refused_object_is_named_with_its_type_and_key(tmp_path, tiny, where, saved):
    path = tmp_path / "c.pth"
    torch.save(saved(synthetic_state_dict(Tiny(), seed=1)), path)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    kind = "datetime.date" if "history" in where else f"{TrainerConfig.__module__}.TrainerConfig"
    assert str(err.value) == (
        f"{path}: key {where!r} holds a pickled {kind} object, not a tensor or plain metadata; "
        "focalinfer loads weights only (weights_only=True) and does not import it — re-save the weights with "
        "torch.save(model.state_dict(), path)")


def test_a_zip_of_other_files_says_what_it_is(tmp_path):
    import zipfile

    path = tmp_path / "weights.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", "the weights are in model.pth")
        archive.writestr("model/config.json", "{}")
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 1
    assert result.output == (
        f"focalinfer: error: {path}: a zip archive of 2 other files (README.md, model/config.json), not a PyTorch "
        "checkpoint (torch.save's archives hold <name>/data.pkl); pass the .pth file itself (unzip it first if it "
        "is inside)\n")


@pytest.mark.parametrize("model", ["van-b0", "evo-levit-128s"])  # one head; Evo-LeViT's four
def test_a_fine_tuned_head_is_named_by_inspect_and_loads_with_its_class_count(tmp_path, model):
    from focalinfer.models.synthetic import make_checkpoint

    path = make_checkpoint(model, tmp_path / "head100.pth", num_classes=100)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        f"matches: {model} with a 100-class head (registered: 1000 classes); export it with --model {model} "
        "--num-classes 100")
    info = inspect_checkpoint(path)
    assert (info.model, info.num_classes, info.model_classes) == (model, 100, 1000)
    with pytest.raises(CheckpointError) as err:
        load_model(model, path)
    assert str(err.value) == (
        f"{path}: its classifier head has 100 classes, {model} as built has 1000 (a fine-tuned checkpoint?); "
        f"pass --num-classes 100 to build {model} with a 100-class head")
    built = load_model(model, path, num_classes=100)
    assert built(torch.zeros(1, 3, 224, 224)).shape == (1, 100)
    assert inspect_checkpoint(make_checkpoint(model, tmp_path / "plain.pth")).num_classes is None
