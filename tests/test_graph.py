"""Graph IR: shape rules, costs, topological order, group boundaries, validation errors."""

import json

import pytest

from autotune.errors import GraphError
from autotune.ir.graph import (
    Attrs,
    Graph,
    GraphBuilder,
    graph_from_dict,
    graph_to_dict,
    infer_shapes,
    make_layer,
)


def _block():
    b = GraphBuilder("block")
    x = b.input("x", (1, 64, 56, 56))
    y = b.conv(x, 64, 3, name="c1")
    z = b.conv(y, 64, 3, act="", name="c2")
    s = b.eltwise([x, z], act="relu", name="add")
    p = b.pool(s, 3, 2, 1, name="pool")
    g = b.gpool(p, name="gap")
    b.fc(g, 10, name="fc")
    return b.build()


def test_conv_shape_and_costs_match_hand_computation():
    lyr = make_layer("c", "conv", ["x"], [(2, 3, 224, 224)], out_channels=64, kernel=7, stride=2, pads=3)
    assert lyr.out_shape == (2, 64, 112, 112)
    assert lyr.macs == 2 * 64 * 112 * 112 * 3 * 7 * 7
    assert lyr.weight_elems == 64 * 3 * 49 + 64
    assert lyr.weight_bytes(2) == 2 * lyr.weight_elems


def test_depthwise_grouped_dilated_and_pool_ceil_mode():
    dw = make_layer("dw", "conv", ["x"], [(1, 32, 112, 112)], out_channels=32, kernel=3, stride=2, pads=1, groups=32)
    assert dw.depthwise and dw.out_shape == (1, 32, 56, 56) and dw.macs == 32 * 56 * 56 * 9
    g = make_layer("g", "conv", ["x"], [(1, 64, 8, 8)], out_channels=128, kernel=3, pads=1, groups=4)
    assert not g.depthwise and g.macs == 128 * 64 * 16 * 9
    d = make_layer("d", "conv", ["x"], [(1, 8, 32, 32)], out_channels=8, kernel=3, pads=2, dilation=2)
    assert d.out_shape == (1, 8, 32, 32)
    # GoogLeNet's 3x3/2 ceil-mode pool: 112 -> 56
    p = make_layer("p", "pool", ["x"], [(1, 64, 112, 112)], kernel=3, stride=2, ceil_mode=True, mode="max")
    assert p.out_shape == (1, 64, 56, 56)
    with pytest.raises(GraphError, match="'bad'.*groups"):
        make_layer("bad", "conv", ["x"], [(1, 30, 8, 8)], out_channels=8, groups=4)


def test_fc_matmul_concat_broadcast_rules():
    fc = make_layer("fc", "fc", ["x"], [(1, 512, 7, 7)], out_channels=4096)
    assert fc.out_shape == (1, 4096) and fc.macs == 512 * 49 * 4096
    tok = make_layer("q", "fc", ["x"], [(1, 197, 768)], out_channels=768)
    assert tok.out_shape == (1, 197, 768) and tok.macs == 197 * 768 * 768
    mm = make_layer("mm", "matmul", ["a", "b"], [(1, 12, 197, 64), (1, 12, 64, 197)])
    assert mm.out_shape == (1, 12, 197, 197) and mm.macs == 12 * 197 * 197 * 64
    cat = make_layer("cat", "concat", ["a", "b"], [(1, 64, 28, 28), (1, 32, 28, 28)])
    assert cat.out_shape == (1, 96, 28, 28)
    se = make_layer("se", "eltwise", ["a", "b"], [(1, 64, 28, 28), (1, 64, 1, 1)], mode="mul")
    assert se.out_shape == (1, 64, 28, 28)
    with pytest.raises(GraphError, match="'mm2'.*do not agree"):
        make_layer("mm2", "matmul", ["a", "b"], [(1, 4, 8), (1, 9, 4)])
    with pytest.raises(GraphError, match="'cat2'"):
        make_layer("cat2", "concat", ["a", "b"], [(1, 64, 28, 28), (1, 32, 14, 14)])
    with pytest.raises(GraphError, match="do not broadcast"):
        infer_shapes("eltwise", [(1, 3, 4), (1, 5, 4)], Attrs(), "e")


def test_order_is_topological_and_deterministic():
    g = _block()
    names = [lyr.name for lyr in g.order]
    assert names == ["c1", "c2", "add", "pool", "gap", "fc"]
    # layers given out of order still sort topologically, the same way every time
    shuffled = Graph("s", list(reversed(list(g.layers.values()))), g.inputs)
    assert [lyr.name for lyr in shuffled.order] == names
    assert g.outputs == ["fc"]


def test_group_boundaries():
    g = _block()
    grp = g.group(1, 3)  # c2, add
    assert grp.names == ["c2", "add"]
    assert set(grp.inputs) == {"c1", "x"}  # c1 feeds c2, x is the residual
    assert set(grp.outputs) == {"add"}
    assert set(grp.internal) == {"c2"}
    whole = g.group(0, len(g))
    assert set(whole.inputs) == {"x"} and set(whole.outputs) == {"fc"}
    assert whole.macs == g.total_macs
    # a tensor read after the group is a boundary output even if also used inside
    first = g.group(0, 1)
    assert set(first.outputs) == {"c1"}
    with pytest.raises(IndexError):
        g.group(3, 3)


def test_validate_rejects_cycles_dangling_and_bad_shapes():
    a = make_layer("a", "act", ["b"], [(1, 4)], mode="relu")
    b = make_layer("b", "act", ["a"], [(1, 4)], mode="relu")
    with pytest.raises(GraphError, match="cycle"):
        Graph("cyc", [a, b], {}).validate()
    c = make_layer("c", "act", ["nowhere"], [(1, 4)])
    with pytest.raises(GraphError, match="'c'.*dangling"):
        Graph("d", [c], {}).validate()
    d = make_layer("d", "act", ["x"], [(1, 4)])
    with pytest.raises(GraphError, match="'d'.*expects"):
        Graph("m", [d], {"x": (1, 5)}).validate()
    with pytest.raises(GraphError, match="non-positive"):
        Graph("z", [make_layer("e", "act", ["x"], [(1, 0)])], {"x": (1, 0)}).validate()
    with pytest.raises(GraphError, match="duplicate"):
        Graph("dup", [d, d], {"x": (1, 4)})


def test_json_roundtrip_keeps_everything():
    g = _block()
    back = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert back.order == g.order and back.inputs == g.inputs and back.outputs == g.outputs
    with pytest.raises(GraphError, match="malformed"):
        graph_from_dict({"layers": []})


def test_a_groups_json_with_shared_layers_is_its_plain_json_and_reads_back_valid():
    """graph_json with a layer cache (the zoo table's path) gives the bytes json.dumps of
    graph_to_dict gives, and every group graph (made without rerunning the op rules) reads back
    through graph_from_dict, which does run them."""
    from autotune.frontends import zoo
    from autotune.frontends.synthetic import extract
    from autotune.ir.graph import graph_from_dict, graph_json, graph_to_dict

    g = zoo.build("googlenet")
    cache: dict[int, str] = {}
    spans = [(i, j) for i in range(0, len(g) - 1, 3) for j in range(i + 1, min(i + 12, len(g) + 1))]
    for i, j in spans:
        sub = extract(g, i, j)
        text = graph_json(sub, cache)
        assert text == json.dumps(graph_to_dict(sub), separators=(",", ":"))
        assert [lyr.name for lyr in graph_from_dict(json.loads(text)).order] == [lyr.name for lyr in g.order[i:j]]
    assert len(cache) == len({lyr.name for i, j in spans for lyr in g.order[i:j]})
