"""Export stage: toy models for every path; full-size lead models under @pytest.mark.fullsize."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from focalinfer import registry
from focalinfer.cli import cli
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.export import ParityError, export_onnx, report_path_for
from focalinfer.export.rewrites import fold_batchnorm
from focalinfer.models.layers import ExportRewrites, rewrite_enabled
from focalinfer.models.synthetic import make_checkpoint

TOY_SIZE = 16
TOY_CLASSES = 10


class LinearBN(nn.Sequential):
    """LeViT-style Linear + BatchNorm1d over flattened tokens."""

    def __init__(self, a, b):
        super().__init__()
        self.add_module("c", nn.Linear(a, b))
        self.add_module("bn", nn.BatchNorm1d(b))

    def forward(self, x):
        linear, bn = self._modules.values()
        x = linear(x)
        return bn(x.flatten(0, 1)).reshape_as(x)


class ToyNet(ExportRewrites, nn.Module):
    """Conv+BN stem, a token selection with batch-repeated gather indices, Linear+BN, head."""

    export_rewrites = {
        "constant_gather": "selects tokens with a constant-index Gather instead of GatherElements",
    }

    def __init__(self, num_classes=TOY_CLASSES, dim=8):
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.register_buffer("keep", torch.arange(0, (TOY_SIZE // 2) ** 2, 2))
        self.mix = LinearBN(dim, dim)
        self.head = nn.Linear(dim, num_classes)

    def select(self, tokens):
        if rewrite_enabled(self, "constant_gather"):
            return tokens[:, self.keep]
        index = self.keep[None, :, None].expand(tokens.shape[0], -1, tokens.shape[2])
        return torch.gather(tokens, 1, index)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        tokens = self.select(x.flatten(2).transpose(1, 2))
        return self.head(self.mix(tokens).mean(1))


class BrokenRewriteNet(ToyNet):
    export_rewrites = {"shift_logits": "a deliberately wrong rewrite (adds 0.5 to every logit)"}

    def forward(self, x):
        logits = super().forward(x)
        return logits + 0.5 if rewrite_enabled(self, "shift_logits") else logits


class FrozenBatchNet(ToyNet):
    """Like the official Focal code: a batch count read with int() is frozen by tracing."""

    def forward(self, x):
        batch = int(x.shape[0])
        centered = x - x.reshape(batch, -1).mean(1).reshape(-1, 1, 1, 1)
        return super().forward(centered)


class OtherNet(nn.Module):
    def __init__(self, num_classes=TOY_CLASSES):
        super().__init__()
        self.proj = nn.Conv2d(3, 4, 4, stride=4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.proj(x).mean((2, 3)))


TOYS = {"toy-net": ToyNet, "toy-broken": BrokenRewriteNet, "toy-frozen": FrozenBatchNet, "toy-other": OtherNet}


@pytest.fixture
def toy_registry(monkeypatch):
    registry.model_names()  # load the real families first, so ours are added on top
    for name, builder in TOYS.items():
        spec = registry.ModelSpec(
            name=name, family="toy", builder=builder, input_size=TOY_SIZE,
            transforms={"official": registry.official_transform(TOY_SIZE)},
            checkpoint_layout="raw", source="tests/export/test_export_exporter.py", num_classes=TOY_CLASSES,
        )
        monkeypatch.setitem(registry._REGISTRY, name, spec)
    return TOYS


@pytest.fixture
def toy_checkpoint(toy_registry, tmp_path):
    def make(name="toy-net"):
        return make_checkpoint(name, tmp_path / f"{name}.pth", seed=1)
    return make


def read_report(out: Path) -> dict:
    return json.loads(report_path_for(out).read_text())


# --- the main path -------------------------------------------------------------------------

def test_export_with_rewrites_removes_gather_elements_and_batchnorm(toy_checkpoint, tmp_path):
    out = tmp_path / "toy.onnx"
    report = export_onnx("toy-net", toy_checkpoint(), out, parity_samples=3)

    assert out.is_file() and report.passed
    data = read_report(out)
    assert data == json.loads(json.dumps(report.as_dict()))
    assert data["onnx_sha256"] == __import__("hashlib").sha256(out.read_bytes()).hexdigest()
    assert data["file_size"] == out.stat().st_size
    assert data["inputs"] == [{"name": "image", "shape": [1, 3, TOY_SIZE, TOY_SIZE], "dtype": "float32"}]
    assert data["outputs"] == [{"name": "class", "shape": [1, TOY_CLASSES], "dtype": "float32"}]
    assert {r["name"] for r in data["rewrites"]} == {"fold_batchnorm", "constant_gather"}
    fold = next(r for r in data["rewrites"] if r["name"] == "fold_batchnorm")
    assert fold["changes"] == ["conv -> bn", "mix.c -> mix.bn"]

    # Naive: official path, no folding, no simplification.
    assert data["naive"]["ops"]["GatherElements"] == 1
    assert data["naive"]["ops"]["BatchNormalization"] == 1  # the Linear+BN1d the exporter cannot fuse
    assert "GatherElements" not in data["final"]["ops"] and "BatchNormalization" not in data["final"]["ops"]
    assert data["final"]["nodes"] < data["naive"]["nodes"]
    assert data["final"]["nodes"] == len(onnx.load(str(out)).graph.node)

    parity = data["parity"]
    assert parity["batch_sizes"] == [1] and parity["random_samples"] == 3
    assert {c["reference"] for c in parity["checks"]} == {"official", "rewritten"}
    assert all(c["max_abs_diff"] <= c["bound"] and c["count"] == 3 for c in parity["checks"])
    assert data["lint"]["errors"] == 0 and data["lint"]["warnings"] == 0
    assert data["simplify"]["applied"] is True and data["simplify"]["error"] is None
    assert data["final"]["compute_nodes"] == data["final"]["nodes"] - data["final"]["ops"].get("Constant", 0)


def test_export_without_rewrites_keeps_official_graph(toy_checkpoint, tmp_path):
    out = tmp_path / "toy.onnx"
    report = export_onnx("toy-net", toy_checkpoint(), out, rewrites=False, parity_samples=2)
    assert report.passed and report.rewrites == []
    assert report.final["ops"].get("GatherElements") == 1
    assert [c["reference"] for c in report.parity["checks"]] == ["official"]
    assert [f["rule"] for f in report.lint["findings"]] == ["slow_op"]


@pytest.mark.parametrize("only", ["fold_batchnorm", "constant_gather"])
def test_each_rewrite_alone_keeps_parity(toy_checkpoint, tmp_path, only):
    report = export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", rewrites=[only], parity_samples=2)
    assert report.passed and [r["name"] for r in report.rewrites] == [only]


def test_unknown_rewrite_name_is_a_usage_error(toy_checkpoint, tmp_path):
    with pytest.raises(UsageError, match="constant_gather"):
        export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", rewrites=["no_such_pass"])


def test_static_batch_graph_has_fixed_batch(toy_checkpoint, tmp_path):
    report = export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", batch_size=3, parity_samples=4)
    assert report.inputs[0]["shape"] == [3, 3, TOY_SIZE, TOY_SIZE]
    assert report.parity["batch_sizes"] == [3]
    assert report.parity["random_samples"] == 6  # whole batches only
    assert "Shape" not in report.final["ops"]


def test_dynamic_batch_is_checked_at_two_batch_sizes(toy_checkpoint, tmp_path):
    out = tmp_path / "toy.onnx"
    report = export_onnx("toy-net", toy_checkpoint(), out, dynamic_batch=True, parity_samples=3)
    assert report.passed
    assert report.inputs[0]["shape"] == ["batch", 3, TOY_SIZE, TOY_SIZE]
    assert report.parity["batch_sizes"] == [1, 2]
    assert {c["batch_size"] for c in report.parity["checks"]} == {1, 2}
    assert report.lint["expect_static"] is False


def test_frozen_batch_count_is_caught_in_a_dynamic_graph(toy_checkpoint, tmp_path):
    out = tmp_path / "frozen.onnx"
    with pytest.raises(ParityError, match="batch 2") as caught:
        export_onnx("toy-frozen", toy_checkpoint("toy-frozen"), out, dynamic_batch=True, parity_samples=2)
    data = read_report(out)
    assert out.is_file() and data["parity"]["passed"] is False
    failing = {c["batch_size"] for c in data["parity"]["checks"] if not c["within_bound"]}
    assert failing == {2}
    assert caught.value.report.passed is False
    assert any("tracer:" in w for w in data["warnings"])
    # The same model exported with a static batch is fine at that batch.
    assert export_onnx("toy-frozen", toy_checkpoint("toy-frozen"), tmp_path / "static.onnx",
                       batch_size=2, parity_samples=2).passed


def test_parity_failure_keeps_model_and_marks_report(toy_checkpoint, tmp_path):
    out = tmp_path / "broken.onnx"
    with pytest.raises(ParityError) as caught:
        export_onnx("toy-broken", toy_checkpoint("toy-broken"), out, parity_samples=2)
    assert caught.value.exit_code != 0
    data = read_report(out)
    assert out.is_file() and data["parity"]["passed"] is False
    by_reference = {c["reference"]: c for c in data["parity"]["checks"]}
    # The graph computes what the rewritten model computes, but not what the official one does.
    assert by_reference["rewritten"]["within_bound"] is True
    assert by_reference["official"]["within_bound"] is False
    assert by_reference["official"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-5)


def test_simplify_failure_keeps_graph_and_says_so(toy_checkpoint, tmp_path, monkeypatch):
    import onnxsim

    def broken(*args, **kwargs):
        raise RuntimeError("simulated onnxsim crash")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    out = tmp_path / "toy.onnx"
    with pytest.warns(UserWarning, match="onnxsim failed"):
        report = export_onnx("toy-net", toy_checkpoint(), out, parity_samples=1)
    assert report.passed and out.is_file()
    assert report.simplify["applied"] is False
    assert report.simplify["error"] == "RuntimeError: simulated onnxsim crash"
    assert any("onnxsim failed" in w for w in report.warnings)


def test_no_simplify_leaves_the_traced_graph(toy_checkpoint, tmp_path):
    report = export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", simplify=False, parity_samples=1)
    assert report.simplify == {"requested": False, "applied": False, "error": None}
    assert report.passed


def test_parity_data_files_are_batched_and_padded(toy_checkpoint, tmp_path):
    data_dir = tmp_path / "bins"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2, 10):  # natural order 1, 2, 10; three files at batch 2 → one padded batch
        rng.normal(size=(1, 3, TOY_SIZE, TOY_SIZE)).astype(np.float32).tofile(data_dir / f"img_{i}.bin")
    report = export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", batch_size=2,
                         parity_samples=0, parity_data=data_dir)
    assert report.passed and report.parity["data_files"] == 3 and report.parity["random_samples"] == 0
    assert {(c["inputs"], c["count"]) for c in report.parity["checks"]} == {("data", 3)}


def test_parity_data_of_the_wrong_size_is_refused(toy_checkpoint, tmp_path):
    data_dir = tmp_path / "bins"
    data_dir.mkdir()
    np.zeros((1, 3, 8, 8), np.float32).tofile(data_dir / "a.bin")
    with pytest.raises(FocalinferError, match="a.bin"):
        export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", parity_data=data_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no .bin"):
        export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", parity_data=empty)


# --- bad input -----------------------------------------------------------------------------

def test_unknown_model_lists_known_ones(toy_registry, tmp_path):
    with pytest.raises(UsageError, match="known models: .*toy-net"):
        export_onnx("no-such-model", tmp_path / "x.pth", tmp_path / "x.onnx")


@pytest.mark.parametrize("opset", [10, 18, 9])
def test_opset_out_of_range(toy_checkpoint, tmp_path, opset):
    with pytest.raises(UsageError, match="between 11 and 17"):
        export_onnx("toy-net", toy_checkpoint(), tmp_path / "x.onnx", opset=opset)


def test_opset_17_is_accepted(toy_checkpoint, tmp_path):
    report = export_onnx("toy-net", toy_checkpoint(), tmp_path / "x.onnx", opset=17, parity_samples=1)
    assert report.passed and report.lint["opset"] == 17
    assert onnx.load(str(tmp_path / "x.onnx")).opset_import[0].version == 17


@pytest.mark.parametrize("batch", [0, -2])
def test_batch_size_must_be_positive(toy_checkpoint, tmp_path, batch):
    with pytest.raises(UsageError, match="positive"):
        export_onnx("toy-net", toy_checkpoint(), tmp_path / "x.onnx", batch_size=batch)


def test_existing_output_is_refused_unless_forced(toy_checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    out.write_bytes(b"old")
    with pytest.raises(FocalinferError, match="--force"):
        export_onnx("toy-net", toy_checkpoint(), out, parity_samples=1)
    assert out.read_bytes() == b"old"
    export_onnx("toy-net", toy_checkpoint(), out, parity_samples=1, force=True)
    assert onnx.load(str(out)).graph.input[0].name == "image"


def test_unwritable_output_dir(toy_checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(FocalinferError, match="not writable"):
        export_onnx("toy-net", toy_checkpoint(), blocker / "sub" / "x.onnx")


def test_checkpoint_of_another_model_names_it(toy_checkpoint, tmp_path):
    with pytest.raises(FocalinferError, match="toy-other"):
        export_onnx("toy-net", toy_checkpoint("toy-other"), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_a_crash_after_tracing_leaves_no_onnx(toy_checkpoint, tmp_path, monkeypatch):
    import onnxruntime

    def refuse(*args, **kwargs):
        raise RuntimeError("simulated runtime failure")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    with pytest.raises(FocalinferError, match="nothing was written"):
        export_onnx("toy-net", toy_checkpoint(), tmp_path / "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy-net.pth"]


# --- fold_batchnorm ------------------------------------------------------------------------

class FoldCases(nn.Module):
    """Every BatchNorm situation fold_batchnorm must tell apart."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)  # follows conv, sole consumer: folds back into conv
        self.shared = nn.Conv2d(8, 8, 1)
        self.bn_shared = nn.BatchNorm2d(8)  # conv output also feeds a residual: stays
        self.pre = nn.BatchNorm2d(8)  # pre-norm before an unpadded 1x1 conv: folds forward
        self.after_pre = nn.Conv2d(8, 8, 1)
        self.pre_padded = nn.BatchNorm2d(8)  # before a zero-padded 3x3 conv: stays (borders differ)
        self.padded = nn.Conv2d(8, 8, 3, padding=1)
        self.before_relu = nn.Conv2d(8, 8, 1)
        self.bn_after_relu = nn.BatchNorm2d(8)  # an in-place ReLU sits between: stays
        self.pre_twice = nn.BatchNorm2d(8)  # output used twice: stays
        self.twice = nn.Conv2d(8, 8, 1)
        self.mix = LinearBN(8, 6)  # Linear + BatchNorm1d over flattened tokens: folds back

    def forward(self, x):
        x = self.bn(self.conv(x))
        y = self.shared(x)
        x = self.bn_shared(y) + y
        x = self.after_pre(self.pre(x))
        x = self.padded(self.pre_padded(torch.relu(x)))
        x = self.bn_after_relu(torch.relu_(self.before_relu(x)))
        z = self.pre_twice(x)
        x = self.twice(z) + z
        return self.mix(x.flatten(2).transpose(1, 2)).mean(1)


def test_fold_batchnorm_folds_only_exact_cases():
    torch.manual_seed(0)
    model = FoldCases().eval()
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
            module.bias.data.normal_()
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        reference = model(x)
    folded = copy.deepcopy(model)
    changes = fold_batchnorm(folded, x[:1])
    assert changes == ["conv -> bn", "mix.c -> mix.bn", "pre -> after_pre"]
    assert all(isinstance(getattr(folded, n), nn.Identity) for n in ("bn", "pre"))
    assert isinstance(folded.mix.bn, nn.Identity)
    kept = ("bn_shared", "pre_padded", "bn_after_relu", "pre_twice")
    assert all(isinstance(getattr(folded, n), nn.BatchNorm2d) for n in kept)
    assert folded.conv.bias is not None  # created for the BN shift
    with torch.no_grad():
        assert torch.allclose(folded(x), reference, atol=1e-5)
    assert all(p.requires_grad for p in folded.parameters())


# --- CLI -----------------------------------------------------------------------------------

def test_cli_export_prints_summary_and_writes_report(toy_checkpoint, tmp_path):
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(toy_checkpoint()),
                                      "--out", str(out), "--parity-samples", "1"])
    assert result.exit_code == 0, result.output
    assert "nodes" in result.output and "parity" in result.output and str(report_path_for(out)) in result.output
    assert read_report(out)["parity"]["passed"] is True


def test_cli_export_parity_failure_exits_non_zero(toy_checkpoint, tmp_path):
    out = tmp_path / "broken.onnx"
    result = CliRunner().invoke(cli, ["export", "--model", "toy-broken", "--checkpoint",
                                      str(toy_checkpoint("toy-broken")), "--out", str(out), "--parity-samples", "1"])
    assert result.exit_code == 1
    assert "marked failed" in result.output and "Traceback" not in result.output
    assert out.is_file()


def test_cli_rejects_batch_size_with_dynamic_batch(toy_checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(toy_checkpoint()),
                                      "--out", str(tmp_path / "x.onnx"), "--batch-size", "4", "--dynamic-batch"])
    assert result.exit_code == 2 and "either" in result.output


def test_cli_batch_size_zero_is_refused(toy_checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(toy_checkpoint()),
                                      "--out", str(tmp_path / "x.onnx"), "--batch-size", "0"])
    assert result.exit_code == 2 and "positive" in result.output
    assert not (tmp_path / "x.onnx").exists()


def test_cli_unknown_model_exit_code(toy_registry, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--model", "nope", "--checkpoint", str(tmp_path / "x.pth"),
                                      "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "known models" in result.output and "Traceback" not in result.output


def test_cli_bad_opset_exit_code(toy_checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(toy_checkpoint()),
                                      "--out", str(tmp_path / "x.onnx"), "--opset", "19"])
    assert result.exit_code == 2 and "between 11 and 17" in result.output


def test_skip_rewrite_switches_one_pass_off(toy_checkpoint, tmp_path):
    report = export_onnx("toy-net", toy_checkpoint(), tmp_path / "toy.onnx", skip_rewrites=["constant_gather"],
                         parity_samples=1)
    assert [r["name"] for r in report.rewrites] == ["fold_batchnorm"]
    assert report.final["ops"].get("GatherElements") == 1


def test_constants_become_initializers():
    from onnx import helper, numpy_helper

    from focalinfer.export.exporter import _constants_to_initializers

    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=weight), helper.make_node("Add", ["x", "c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    assert _constants_to_initializers(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add"]
    assert [t.name for t in model.graph.initializer] == ["c"]
    onnx.checker.check_model(model)
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((1, 4), np.float32)})[0].tolist() == [[1, 2, 3, 4]]


# --- full size: the four lead models ---------------------------------------------------------
# Each export traces the model (twice with rewrites: the naive graph is measured too), runs
# onnxsim, one eager forward per reference model per sample and onnxruntime at batch 1 and 2.
# A dynamic-batch graph is what `make export` writes, so parity is checked on it at batch 1 and
# at batch 2 in one export, with and without rewrites.

LEAD_MODELS = ["focal-fast-s", "twins-altgvt-s", "evo-levit-256-384", "van-b2"]


@pytest.fixture(scope="module")
def lead_checkpoints(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            made[name] = make_checkpoint(name, tmp_path_factory.mktemp("ckpt") / f"{name}.pth", seed=0)
        return made[name]
    return get


def with_fixed_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    fixed = copy.deepcopy(model)
    for value in (*fixed.graph.input, *fixed.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    return fixed


@pytest.mark.fullsize
@pytest.mark.parametrize("name", LEAD_MODELS)
def test_fullsize_rewritten_export_parity_and_lint(name, lead_checkpoints, tmp_path):
    from focalinfer.export.lint import lint_onnx

    out = tmp_path / f"{name}.onnx"
    started = time.perf_counter()
    report = export_onnx(name, lead_checkpoints(name), out, dynamic_batch=True, parity_samples=1)
    assert report.passed, report.parity["worst"]
    assert report.parity["batch_sizes"] == [1, 2]
    assert {c["reference"] for c in report.parity["checks"]} == {"official", "rewritten"}
    assert report.outputs[0]["shape"] == ["batch", 1000]
    # Every model-specific rewrite is on.
    with torch.device("meta"):
        declared = set(getattr(registry.get_model_spec(name).builder(), "export_rewrites", {}))
    assert {r["name"] for r in report.rewrites if r["scope"] == "model"} == declared
    assert report.lint["errors"] == 0, report.lint["findings"]
    assert not {"GatherElements", "ScatterND", "NonZero", "Loop", "If"} & set(report.final["ops"])
    if name != "van-b2":  # VAN's pre-norm BNs before attention feed a residual too: nothing to fold into
        assert "BatchNormalization" not in report.final["ops"]
    # The graph ATC compiles is this one at a fixed batch: it must lint clean as a static graph too.
    static = lint_onnx(with_fixed_batch(onnx.load(str(out)), 2), expect_static=True)
    assert static.errors == [], static.findings
    print(f"\n{name}: rewritten dynamic export {time.perf_counter() - started:.1f}s, "
          f"nodes {report.naive['nodes']} -> {report.final['nodes']}, "
          f"warnings {[(f['rule'], f['op_type']) for f in report.lint['findings']]}")


@pytest.mark.fullsize
@pytest.mark.parametrize("name", LEAD_MODELS)
def test_fullsize_official_path_export_parity(name, lead_checkpoints, tmp_path):
    out = tmp_path / f"{name}-naive.onnx"
    started = time.perf_counter()
    report = export_onnx(name, lead_checkpoints(name), out, dynamic_batch=True, rewrites=False, parity_samples=1)
    assert report.passed, report.parity["worst"]
    assert report.rewrites == [] and report.parity["batch_sizes"] == [1, 2]
    print(f"\n{name}: official-path dynamic export {time.perf_counter() - started:.1f}s, "
          f"nodes {report.naive['nodes']} -> {report.final['nodes']}")


def test_docs_describe_every_rewrite():
    """docs/export.md has a table row per (lead model, rewrite) and a row per generic rewrite."""
    from focalinfer.export.rewrites import GENERIC_REWRITES

    lines = (Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("|")]
    missing = [name for name in GENERIC_REWRITES if not any(f"| `{name}` |" in row for row in rows)]
    for spec in registry.all_specs():
        if spec.is_lead:
            with torch.device("meta"):
                declared = getattr(spec.builder(), "export_rewrites", {})
            missing += [f"{spec.name}: {name}" for name in declared
                        if not any(row.startswith(f"| {spec.name} | `{name}` |") for row in rows)]
    assert missing == []


# --- issue 22: a fine-tuned head, a killed export's leftovers, one export per output, a full disk


def test_a_fine_tuned_head_exports_with_num_classes_and_eval_checks_labels_against_it(toy_registry, tmp_path):
    ckpt = make_checkpoint("toy-net", tmp_path / "head7.pth", seed=1, num_classes=7)
    out = tmp_path / "head7.onnx"
    refused = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(ckpt), "--out", str(out),
                                       "--parity-samples", "1"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.output == (f"focalinfer: error: {ckpt}: its classifier head has 7 classes, toy-net as built has 10 "
                              "(a fine-tuned checkpoint?); pass --num-classes 7 to build toy-net with a 7-class head\n")
    done = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(ckpt), "--out", str(out),
                                    "--parity-samples", "1", "--dynamic-batch", "--num-classes", "7"])
    assert done.exit_code == 0, done.output
    assert f"{out}: toy-net, 7-class head, opset 11" in done.output
    report = read_report(out)
    assert report["num_classes"] == 7 and report["outputs"][0]["shape"] == ["batch", 7]
    # eval reads the class count from the report: a label of class 8 is outside the model's 0–6
    images = tmp_path / "img"
    images.mkdir()
    for k in range(2):
        Image_new(images / f"i{k}.png", k)
    assert CliRunner().invoke(cli, ["preprocess", "--model", "toy-net", "--images", str(images), "--out",
                                    str(tmp_path / "bin"), "--quiet"]).exit_code == 0
    (tmp_path / "labels.txt").write_text("i0.png 6\ni1.png 8\n")
    scored = CliRunner().invoke(cli, ["eval", "--onnx", str(out), "--labels", str(tmp_path / "labels.txt"),
                                      "--input", str(tmp_path / "bin"), "--output", str(tmp_path / "r.json"),
                                      "--quiet"])
    assert scored.exit_code == 1
    assert "line 2: class 8 is outside the model's 0–6" in scored.output


def Image_new(path: Path, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(path)


def test_a_killed_exports_temp_files_and_lock_are_cleaned_up_by_the_next(toy_checkpoint, tmp_path):
    from lockholder import killed_holder

    out = tmp_path / "keep.onnx"
    dead = killed_holder(out, "export")
    assert (tmp_path / "keep.onnx.lock").is_file()  # left behind by the kill
    (tmp_path / ".keep.onnx.k3j_9xq1.tmp").write_bytes(b"\0" * 4096)  # as kill -9 in the final write leaves it
    (tmp_path / ".keep.onnx.report.json.ab12cd34.tmp").write_bytes(b"{")
    (tmp_path / ".other.onnx.zz99yy88.tmp").write_bytes(b"another export's")
    result = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(toy_checkpoint()),
                                      "--out", str(out), "--parity-samples", "1"])
    assert result.exit_code == 0, result.output
    assert f"note: {out}: focalinfer export (pid {dead}, started " in result.output
    assert ") ended without releasing its lock (killed?); taking it over" in result.output
    assert f"note: {tmp_path}: removed 2 temp files a killed export left (.keep.onnx.k3j_9xq1.tmp, " \
           ".keep.onnx.report.json.ab12cd34.tmp)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        [".other.onnx.zz99yy88.tmp", "keep.onnx", "keep.onnx.report.json", "toy-net.pth"]
    assert len(read_report(out)["notes"]) == 2


def test_a_live_export_of_the_same_output_is_refused_and_its_temps_left_alone(toy_checkpoint, tmp_path):
    from lockholder import holder, release

    out = tmp_path / "keep.onnx"
    other = holder(out, command="export")
    try:
        (tmp_path / ".keep.onnx.k3j_9xq1.tmp").write_bytes(b"its write in progress")
        result = CliRunner().invoke(cli, ["export", "--model", "toy-net", "--checkpoint", str(toy_checkpoint()),
                                          "--out", str(out), "--parity-samples", "1"])
        assert result.exit_code == 1
        assert result.output.startswith(f"focalinfer: error: {out}: focalinfer export (pid {other.pid}, started ")
        assert result.output.endswith(f") is writing here; wait for it to finish or choose another output (its lock: "
                                      f"{tmp_path / 'keep.onnx.lock'})\n")
        assert (tmp_path / ".keep.onnx.k3j_9xq1.tmp").read_bytes() == b"its write in progress"
    finally:
        release(other)


def test_an_onnx_without_its_report_is_named_an_interrupted_export(toy_checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    export_onnx("toy-net", toy_checkpoint(), out, parity_samples=1)
    with pytest.raises(FocalinferError) as err:
        export_onnx("toy-net", toy_checkpoint(), out, parity_samples=1)
    assert str(err.value) == f"{out}: already exists; pass --force to overwrite it"
    report_path_for(out).unlink()  # killed between the two writes
    with pytest.raises(FocalinferError) as err:
        export_onnx("toy-net", toy_checkpoint(), out, parity_samples=1)
    assert str(err.value) == (f"{out}: already exists without a report that describes it (an export killed while "
                              "writing?); pass --force to overwrite it")


def test_too_little_space_for_the_onnx_is_one_line_before_tracing(tmp_path, small_disk, monkeypatch):
    ckpt = make_checkpoint("van-b0", tmp_path / "van.pth")  # 4.1 M parameters: 16 MB of weights
    monkeypatch.setattr("focalinfer.export.exporter._trace_to_onnx", lambda *a: pytest.fail("tracing started"))
    result = CliRunner().invoke(cli, ["export", "--model", "van-b0", "--checkpoint", str(ckpt),
                                      "--out", str(small_disk / "van.onnx")])
    assert result.exit_code == 1
    assert result.output.startswith(f"focalinfer: error: {small_disk}: not enough free space for van.onnx: about 16.")
    assert result.output.endswith(" MB (the model's weights), 3.1 MB free; free space or choose another --out\n")
    assert os.listdir(small_disk) == []


def fill(disk: Path, name: str = "filler") -> None:
    with open(disk / name, "wb", buffering=0) as f:
        with pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)


def test_a_disk_full_in_the_final_write_is_one_line_and_leaves_no_temp(toy_checkpoint, small_disk, monkeypatch):
    out = small_disk / "x.onnx"
    argv = ["export", "--model", "toy-net", "--checkpoint", str(toy_checkpoint()), "--out", str(out),
            "--parity-samples", "1"]
    monkeypatch.setattr("focalinfer.export.exporter._check_space", lambda *a: fill(small_disk))  # filled meanwhile
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1
    assert result.output.startswith(f"focalinfer: error: {small_disk}: the disk filled up (No space left on "
                                    "device) writing x.onnx (")
    assert result.output.endswith(" bytes) and its report; nothing was written after freeing that much\n")
    assert sorted(os.listdir(small_disk)) == ["filler"]
    # full before the export starts: its lock cannot be written, and nothing is left either
    fill(small_disk, "filler2")
    again = CliRunner().invoke(cli, argv)
    assert again.exit_code == 1
    assert again.output == (f"focalinfer: error: {small_disk / 'x.onnx.lock'}: cannot be written (No space left "
                            f"on device); check the free space and permissions of {small_disk}\n")
    assert sorted(os.listdir(small_disk)) == ["filler", "filler2"]
