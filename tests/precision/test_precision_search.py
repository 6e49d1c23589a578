"""The search's graph rules: bridges between kept nodes, the known groups."""

from __future__ import annotations

import planted
from focalinfer.precision.emulate import analyse
from focalinfer.precision.search import bridges, known_groups, layernorm_nodes


def test_moves_between_kept_nodes_are_bridges_and_others_are_not():
    info = analyse(planted.attention_overflow_net())
    index = {n.name: n.index for n in info.nodes}
    # k/MatMul → k/Transpose → qk/MatMul: a one-move path
    assert bridges(info, {index["attn/k/MatMul"], index["attn/qk/MatMul"]}) == {index["attn/k/Transpose"]}
    # image → Reshape → Transpose → embed/MatMul: the moves come from the graph input, not a kept node
    assert bridges(info, {index["embed/MatMul"]}) == set()
    # a kept node with no kept reader downstream of the move
    assert bridges(info, {index["attn/k/MatMul"]}) == set()


def test_a_chain_of_moves_bridges_as_a_whole():
    g = planted.Graph()
    h = g.op("MatMul", [g.features(), g.weight("fc1.weight", (planted.FEATURES, 32))], "fc1/MatMul")
    h = g.op("Reshape", [h, g.int64("shape1", [0, 4, 8])], "move/Reshape")
    h = g.op("Transpose", [h], "move/Transpose", perm=[0, 2, 1])
    h = g.op("Reshape", [h, g.int64("shape2", [0, 32])], "move/Reshape_1")
    h = g.op("Mul", [h, g.const("scale", 2.0)], "scale/Mul")
    g.head(h, 32)
    info = analyse(g.model())
    index = {n.name: n.index for n in info.nodes}
    moves = {index["move/Reshape"], index["move/Transpose"], index["move/Reshape_1"]}
    assert bridges(info, {index["fc1/MatMul"], index["scale/Mul"]}) == moves
    assert bridges(info, {index["fc1/MatMul"]}) == set()


def test_known_groups_in_order():
    info = analyse(planted.clean_net())
    names = {n.index: n.name for n in info.nodes}
    groups = dict(known_groups(info))
    assert list(groups) == ["LayerNorm", "Erf", "Div"]
    assert {names[i] for i in groups["LayerNorm"]} == {
        "norm/ReduceMean", "norm/Sub", "norm/Pow", "norm/ReduceMean_1", "norm/Add", "norm/Sqrt", "norm/Div"}
    assert {names[i] for i in groups["Div"]} == {"norm/Div", "gelu/Div"}
    assert layernorm_nodes(analyse(planted.attention_overflow_net())) == set()
