"""The CPU-only fused graph."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from focalinfer.bench import cpu_graph
from focalinfer.errors import FocalinferError


def test_cpu_graph_is_written_beside_fuses_and_keeps_parity(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    record = cpu_graph.build_cpu_graph(path, samples=4)
    assert record["path"] == str(path.with_name("tiny.cpu.onnx"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the ATC graph is untouched
    assert record["fused"].get("LayerNormalization") == 1 and record["fused"].get("Gelu", 0) + \
        record["fused"].get("BiasGelu", 0) == 1
    assert record["nodes_after"] < record["nodes_before"]
    parity = record["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= parity["bound"]
    ops = [n.op_type for n in onnx.load(record["path"]).graph.node]
    assert "Erf" not in ops and ops.count("ReduceMean") == 1  # only the token pooling is left


def test_cpu_graph_parity_catches_a_graph_that_computes_something_else(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    other = onnx.load(str(path))
    weight = next(t for t in other.graph.initializer if t.name == "head.weight")
    values = numpy_helper.to_array(weight) * 1.01
    weight.CopyFrom(numpy_helper.from_array(values.astype(np.float32), weight.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(other, str(changed))
    parity = cpu_graph.cpu_graph_parity(path, changed)
    assert not parity["passed"] and parity["max_abs_diff"] > parity["bound"]


def test_cpu_graph_never_replaces_the_exported_graph(tiny_onnx):
    path, _ = tiny_onnx
    with pytest.raises(FocalinferError, match="must not replace"):
        cpu_graph.build_cpu_graph(path, out=path)
