"""`focalinfer precision` on planted graphs: each hazard found, and fixed by the list it writes.

"Fixed" is checked independently of the search: the written keep_dtype.cfg is read back, the
graph emulated with exactly those nodes in fp32, and the result scored against plain fp32.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import planted
from focalinfer.backend.onnxrt import make_session
from focalinfer.cli import cli
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.precision import Thresholds, analyse, run_precision, score
from focalinfer.precision.emulate import emulate
from focalinfer.precision import search as search_module
from focalinfer.records import Manifest, PrecisionRecord

SAMPLES = 32


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return planted.write_inputs(tmp_path_factory.mktemp("databin"), SAMPLES)


def emulated_vs_fp32(model, inputs, keep_names, mode="force_fp16"):
    """Figures of ``model`` emulated with ``keep_names`` in fp32, against plain fp32, on the inputs."""
    x = np.stack([np.fromfile(p, np.float32).reshape(planted.SHAPE) for p in sorted(inputs.glob("*.bin"))])
    info = analyse(model)
    reference = make_session(model).run(None, {"image": x})[0]
    candidate = make_session(emulate(info, mode, info.indices(keep_names))).run(None, {"image": x})[0]
    return score(reference, candidate)


def check(tmp_path, inputs, model, **settings):
    tmp_path.mkdir(parents=True, exist_ok=True)
    onnx_path = planted.save(model, tmp_path / "net.onnx")
    result = run_precision(onnx_path, inputs, tmp_path / "out", samples=SAMPLES, **settings)
    return onnx_path, result


def test_clean_net_is_fp16_safe_with_no_list(tmp_path, inputs):
    _, result = check(tmp_path, inputs, planted.clean_net())
    record = PrecisionRecord.read(tmp_path / "out" / "precision.json")
    assert record.verdict == "fp16-safe" and record.keep_dtype == [] and result.safe
    assert record.atc_flags == ["--precision_mode=force_fp16"]
    assert not (tmp_path / "out" / "keep_dtype.cfg").exists()
    assert record.runs == 1 and record.samples == SAMPLES
    assert (record.overflow["activations"], record.overflow["initializers"], record.overflow["divisors"]) == ([], [], [])
    assert 0 < record.overflow["largest"]["max_abs"] < 65504 and record.overflow["largest"]["node"]
    assert record.emulated["fp16"]["min_cosine"] >= 0.999 and record.emulated["with_keep_dtype"] is None
    assert record.emulated["fp16"]["max_abs"] > 0  # it did round


@pytest.mark.parametrize("build, expected_lint, must_keep", [
    (planted.layernorm_overflow_net, {"norm/Pow", "norm/ReduceMean_1", "norm/Add"},
     {"norm/Pow", "norm/ReduceMean_1", "norm/Add", "norm/Sqrt"}),
    (planted.attention_overflow_net, {"attn/qk/MatMul", "attn/Mul"}, {"attn/qk/MatMul", "attn/Mul", "attn/Softmax"}),
])
def test_activation_overflow_found_and_fixed(tmp_path, inputs, build, expected_lint, must_keep):
    model = build()
    _, result = check(tmp_path, inputs, model)
    record = result.record
    found = {f["node"]: f for f in record.overflow["activations"]}
    assert set(found) == expected_lint
    assert all(f["max_abs"] > 65504 and f["times_fp16_max"] > 1 and f["op_type"] for f in found.values())
    assert record.verdict == "keep-dtype" and result.safe
    keep = (tmp_path / "out" / "keep_dtype.cfg").read_text().splitlines()
    assert keep == record.keep_dtype and set(keep) == must_keep
    assert record.atc_flags == ["--precision_mode=force_fp16", f"--keep_dtype={(tmp_path / 'out' / 'keep_dtype.cfg').resolve()}"]
    thresholds = Thresholds()
    assert not thresholds.passed(emulated_vs_fp32(model, inputs, []))
    fixed = emulated_vs_fp32(model, inputs, keep)
    assert thresholds.passed(fixed) and fixed.min_cosine == pytest.approx(record.emulated["with_keep_dtype"]["min_cosine"], abs=1e-6)


def test_constant_beyond_fp16_found_and_fixed(tmp_path, inputs):
    model = planted.constant_overflow_net()
    _, result = check(tmp_path, inputs, model)
    record = result.record
    assert record.overflow["activations"] == []
    (finding,) = record.overflow["initializers"]
    assert finding["name"] == "scale.divisor" and finding["consumers"] == ["scale/Div"] and finding["max_abs"] == 2e5
    assert record.verdict == "keep-dtype" and record.keep_dtype == ["scale/Div"]
    assert not Thresholds().passed(emulated_vs_fp32(model, inputs, []))
    assert Thresholds().passed(emulated_vs_fp32(model, inputs, record.keep_dtype))


def test_bisection_finds_what_the_lint_cannot(tmp_path, inputs):
    """Cancellation exceeds no range: lint and groups give nothing, bisection isolates the pair."""
    model = planted.cancellation_net()
    _, result = check(tmp_path, inputs, model)
    record = result.record
    assert result.lint.clean
    stages = [s["stage"] for s in record.extra["search"]["steps"]]
    assert "bisection" in stages and "range lint" not in stages
    assert record.verdict == "keep-dtype" and set(record.keep_dtype) == {"shift/Add", "shift/Sub"}
    assert record.runs == len(stages) < 20  # O(k log n), not one run per node
    assert Thresholds().passed(emulated_vs_fp32(model, inputs, record.keep_dtype))
    for single in record.keep_dtype:  # neither alone is enough: the pruned list is minimal
        assert not Thresholds().passed(emulated_vs_fp32(model, inputs, [single]))


def test_no_short_list_gives_fp32_with_the_fallbacks_measured(tmp_path, inputs, monkeypatch):
    monkeypatch.setattr(search_module, "SHORT_LIST_MIN", 1)
    monkeypatch.setattr(search_module, "SHORT_LIST_FRACTION", 0.0)
    _, result = check(tmp_path, inputs, planted.cancellation_net())
    record = result.record
    assert record.verdict == "fp32" and not result.safe and record.keep_dtype == []
    assert set(record.emulated["advice"]) == {"allow_fp32_to_fp16", "force_fp32"}
    # Only Cube ops go fp16 in those modes; this net's one MatMul is harmless, so both pass.
    assert record.atc_flags == ["--precision_mode=allow_fp32_to_fp16"]
    assert record.emulated["advice"]["allow_fp32_to_fp16"]["min_cosine"] > 0.999


def test_keep_list_reaches_fp32_under_allow_mix_precision(tmp_path, inputs):
    model = planted.cancellation_net()
    _, result = check(tmp_path, inputs, model, mode="allow_mix_precision")
    assert result.record.mode == "allow_mix_precision" and result.record.verdict == "keep-dtype"
    assert Thresholds().passed(emulated_vs_fp32(model, inputs, result.record.keep_dtype, "allow_mix_precision"))


def test_allow_fp32_to_fp16_searches_a_keep_list_as_atc_reads_one(tmp_path, inputs):
    """ATC reads --keep_dtype under allow_fp32_to_fp16 too (atc_rules): the Cube op that overflows there,
    q·k, is found and kept, and that list alone makes the mode pass."""
    model = planted.attention_overflow_net()
    _, result = check(tmp_path, inputs, model, mode="allow_fp32_to_fp16")
    record = result.record
    assert (record.verdict, record.keep_dtype) == ("keep-dtype", ["attn/qk/MatMul"]) and result.safe
    assert record.atc_flags[0] == "--precision_mode=allow_fp32_to_fp16" and record.atc_flags[1].startswith("--keep_dtype=")
    assert not Thresholds().passed(emulated_vs_fp32(model, inputs, [], "allow_fp32_to_fp16"))
    assert Thresholds().passed(emulated_vs_fp32(model, inputs, record.keep_dtype, "allow_fp32_to_fp16"))


def test_the_keep_dtype_rule_is_atcs():
    from focalinfer.atc_rules import keep_dtype_applies

    for mode in (None, "force_fp16", "allow_mix_precision", "allow_fp32_to_fp16", "force_fp32"):
        assert keep_dtype_applies(mode), mode
    assert not keep_dtype_applies("must_keep_origin_dtype")
    assert not keep_dtype_applies("force_fp16", precision_mode_v2="origin")
    assert keep_dtype_applies(None, precision_mode_v2="fp16")


def test_allow_fp32_to_fp16_keeps_the_layernorm_exact(tmp_path, inputs):
    _, result = check(tmp_path, inputs, planted.layernorm_overflow_net(), mode="allow_fp32_to_fp16")
    assert result.record.verdict == "fp16-safe"
    assert result.record.overflow["activations"]  # the lint still reports the fp32 ranges


def test_thresholds_decide(tmp_path, inputs):
    _, strict = check(tmp_path, inputs, planted.clean_net(), min_cosine=1.0)
    assert strict.record.verdict != "fp16-safe"
    _, lax = check(tmp_path, inputs, planted.cancellation_net(), min_cosine=-1.0, min_top1=0.0)
    assert lax.record.verdict == "fp16-safe"


def test_divisor_that_flushes_to_zero(tmp_path, inputs):
    g = planted.Graph()
    h = g.op("MatMul", [g.features(), g.weight("fc1.weight", (planted.FEATURES, 32))], "fc1/MatMul")
    tiny = g.op("Mul", [g.op("Abs", [h], "tiny/Abs"), g.const("tiny.scale", 1e-9)], "tiny/Mul")
    floor = g.op("Add", [tiny, g.const("tiny.eps", 1e-12)], "tiny/Add")
    ratio = g.op("Div", [g.const("tiny.num", 1e-9), floor], "tiny/Div")
    g.head(g.op("Add", [h, g.op("Mul", [ratio, g.const("tiny.w", 1e-3)], "ratio/Mul")], "mix/Add"), 32)
    _, result = check(tmp_path, inputs, g.model())
    (finding,) = result.record.overflow["divisors"]
    assert finding["node"] == "tiny/Div" and finding["flushed"] > 0 and finding["min_nonzero_abs"] < 2 ** -25
    assert any(f["name"] == "tiny.eps" and f["kind"] == "flushes to zero in fp16" for f in result.record.overflow["initializers"])


def test_inputs_must_fit_the_onnx(tmp_path, inputs):
    onnx_path = planted.save(planted.clean_net(), tmp_path / "net.onnx")
    other = tmp_path / "other"
    other.mkdir()
    np.zeros((1, 3, 8, 8), np.float32).tofile(other / "a.bin")
    Manifest(model="x", preset="official", transform={}, shape=[1, 3, 8, 8]).write(other)
    with pytest.raises(FocalinferError, match=r"manifest.json: the files hold float32 \[3, 8, 8\] images but the ONNX takes \[3, 4, 4\]"):
        run_precision(onnx_path, other, tmp_path / "out")
    with pytest.raises(UsageError, match="--mode 'fp16'"):
        run_precision(onnx_path, inputs, tmp_path / "out", mode="fp16")
    with pytest.raises(FocalinferError, match="ONNX file not found"):
        run_precision(tmp_path / "missing.onnx", inputs, tmp_path / "out")


def write_uint8_inputs(folder, count, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """uint8 NHWC files as `preprocess --dtype uint8` writes them, normalisation left to the model."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    height, width = planted.SHAPE[1:]
    pixels = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        image.tofile(folder / f"img_{i:03d}.bin")
    Manifest(model="planted", preset="official", transform={}, dtype="uint8", tensor_layout="NHWC",
             shape=[1, height, width, 3], bytes_per_file=height * width * 3,
             normalization={"mean": list(mean), "std": list(std)}).write(folder)
    return pixels, np.asarray(mean, np.float64), np.asarray(std, np.float64)


def test_uint8_files_are_normalised_and_rounded_to_fp16_for_the_npu(tmp_path):
    from focalinfer.precision import load_samples
    from focalinfer.precision.emulate import round_fp16

    pixels, mean, std = write_uint8_inputs(tmp_path / "u8", 12)
    samples = load_samples(tmp_path / "u8", 12, planted.SHAPE)
    assert samples.dtype == "uint8" and samples.aipp and samples.array.dtype == np.float32
    # the float32 files' formula, channel by channel, NHWC → NCHW
    expected = ((pixels / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(samples.array, expected, atol=5e-7)
    assert np.array_equal(samples.emulated_input, round_fp16(samples.array))  # AIPP outputs fp16
    assert not np.array_equal(samples.emulated_input, samples.array)
    result = run_precision(planted.save(planted.clean_net(), tmp_path / "net.onnx"), tmp_path / "u8",
                           tmp_path / "out", samples=12)
    assert result.record.verdict == "fp16-safe" and result.record.extra["input_dtype"] == "uint8"
    with pytest.raises(FocalinferError, match=r"the files hold uint8 \[4, 4, 3\] images but the ONNX takes \[3, 8, 8\]"):
        load_samples(tmp_path / "u8", 4, (3, 8, 8))


def test_emulated_runs_see_the_aipp_input_and_fp32_the_plain_one(tmp_path):
    """With every node kept fp32, the only fp16 left is AIPP's rounding of the input."""
    from focalinfer.precision.evaluate import Evaluator

    write_uint8_inputs(tmp_path / "u8", 8)
    from focalinfer.precision import load_samples

    samples = load_samples(tmp_path / "u8", 8, planted.SHAPE)
    model = planted.clean_net()
    info = analyse(model)
    evaluator = Evaluator(samples.array, "image", 4, False, tmp_path, emulated_input=samples.emulated_input)
    everything = {n.index for n in info.nodes if n.float_outputs}
    session = make_session(emulate(info, "force_fp16", everything))
    plain = make_session(model)
    # in the evaluator's batches of 4: another batch size may sum in another order (CPU-dependent)
    def plain_run(x):
        return np.concatenate([plain.run(None, {"image": x[i:i + 4]})[0] for i in range(0, len(x), 4)])

    assert np.array_equal(evaluator.run(session), plain_run(samples.emulated_input))
    assert np.array_equal(evaluator.run(session, emulated=False), plain_run(samples.array))


def test_static_batch_onnx_is_padded(tmp_path, inputs):
    model = planted.clean_net()
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 5  # 32 samples: 6 full batches and one padded
    onnx_path = planted.save(model, tmp_path / "net.onnx")
    result = run_precision(onnx_path, inputs, tmp_path / "out", samples=SAMPLES)
    assert result.record.verdict == "fp16-safe" and result.record.samples == SAMPLES
    with pytest.raises(UsageError, match="static batch of 5"):
        run_precision(onnx_path, inputs, tmp_path / "out", batch_size=4)


def test_samples_spread_over_the_folder(tmp_path, inputs):
    from focalinfer.precision import load_samples

    picked = load_samples(inputs, 4, planted.SHAPE)
    assert [os.path.basename(f) for f in picked.files] == ["img_000.bin", "img_010.bin", "img_021.bin", "img_031.bin"]
    assert np.array_equal(picked.array[1], np.fromfile(inputs / "img_010.bin", np.float32).reshape(planted.SHAPE))
    assert len(load_samples(inputs, 500, planted.SHAPE)) == SAMPLES


# --- the command ---


def invoke(*args):
    return CliRunner().invoke(cli, ["precision", *[str(a) for a in args], "--quiet"])


def test_cli_exit_codes_and_outputs(tmp_path, inputs):
    clean = planted.save(planted.clean_net(), tmp_path / "clean.onnx")
    ok = invoke("--onnx", clean, "--input", inputs, "--out", tmp_path / "a", "--samples", 8)
    assert ok.exit_code == 0, ok.output
    assert "verdict: fp16-safe" in ok.output and "atc flags: --precision_mode=force_fp16" in ok.output
    assert json.loads((tmp_path / "a" / "precision.json").read_text())["samples"] == 8

    broken = planted.save(planted.layernorm_overflow_net(), tmp_path / "ln.onnx")
    fixed = invoke("--onnx", broken, "--input", inputs, "--out", tmp_path / "b")
    assert fixed.exit_code == 0 and "verdict: keep-dtype" in fixed.output and "norm/Pow" in fixed.output
    assert "keep list: " in fixed.output and (tmp_path / "b" / "keep_dtype.cfg").is_file()

    # the same folder, now a verdict without a list: the stale keep_dtype.cfg goes
    none = invoke("--onnx", broken, "--input", inputs, "--out", tmp_path / "b", "--max-runs", 1)
    assert none.exit_code == 1 and "verdict: fp32" in none.output
    assert not (tmp_path / "b" / "keep_dtype.cfg").exists()
    assert PrecisionRecord.read(tmp_path / "b").verdict == "fp32"


def test_cli_bad_input_is_one_line(tmp_path, inputs):
    clean = planted.save(planted.clean_net(), tmp_path / "clean.onnx")
    missing = invoke("--onnx", clean, "--input", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert missing.exit_code == 1 and missing.output.count("\n") == 1
    assert "input directory does not exist" in missing.output
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    bad = invoke("--onnx", garbage, "--input", inputs, "--out", tmp_path / "o")
    assert bad.exit_code == 1 and "not a readable ONNX file" in bad.output and bad.output.count("\n") == 1


def test_unwritable_out_is_checked_first(tmp_path, inputs):
    """An --out that cannot be created fails before the ONNX is even looked for."""
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    result = invoke("--onnx", tmp_path / "missing.onnx", "--input", inputs, "--out", blocker / "out")
    assert result.exit_code == 1 and "precision output folder is not writable" in result.output
    assert "ONNX file not found" not in result.output


def test_node_names_must_be_usable_by_atc(tmp_path, inputs):
    model = planted.clean_net()
    model.graph.node[2].name = model.graph.node[3].name
    with pytest.raises(FocalinferError, match="duplicate node names"):
        run_precision(planted.save(model, tmp_path / "dup.onnx"), inputs, tmp_path / "out")
    model.graph.node[2].name = ""
    with pytest.raises(FocalinferError, match="1 unnamed node"):
        run_precision(planted.save(model, tmp_path / "unnamed.onnx"), inputs, tmp_path / "out")



def test_lint_list_is_pruned_node_by_node(tmp_path, inputs):
    _, result = check(tmp_path, inputs, planted.layernorm_overflow_net())
    steps = result.record.extra["search"]["steps"]
    # each of the four kept nodes is tried once without it (and fails): n runs, not 2n - 1
    assert [s["stage"] for s in steps] == ["fp16", "range lint"] + ["pruning"] * 4
    assert [s["passed"] for s in steps] == [False, True, False, False, False, False]


def test_sentinels_reject_early_without_changing_the_answer(tmp_path, inputs, monkeypatch):
    _, fast = check(tmp_path / "a", inputs, planted.cancellation_net())
    steps = fast.record.extra["search"]["steps"]
    partial = [s for s in steps if s["samples"] < SAMPLES]
    assert partial, "no run was rejected on the sentinels"
    assert all(not s["passed"] and s["min_cosine"] < 0.999 and s["samples"] == 8 for s in partial)
    assert all(s["samples"] == SAMPLES for s in steps if s["passed"])
    monkeypatch.setattr(search_module.Search, "_watch", lambda self, logits: None)  # no sentinels
    _, slow = check(tmp_path / "b", inputs, planted.cancellation_net())
    assert slow.record.keep_dtype == fast.record.keep_dtype and slow.record.runs == fast.record.runs
    assert all(s["samples"] == SAMPLES for s in slow.record.extra["search"]["steps"])
    assert slow.record.emulated == fast.record.emulated


def test_what_a_killed_check_left_is_removed(tmp_path, inputs, capsys):
    out = tmp_path / "out"
    (out / ".precision-k1ll3d00").mkdir(parents=True)
    (out / ".precision-k1ll3d00" / "weights.bin").write_bytes(b"\0" * 4096)  # the fp16 weights of a killed run
    (out / ".precision.json.ab12cd34.tmp").write_text("{")
    check(tmp_path, inputs, planted.clean_net())
    assert "removed what a killed precision check left (.precision.json.ab12cd34.tmp, .precision-k1ll3d00)" \
        in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["precision.json"]
