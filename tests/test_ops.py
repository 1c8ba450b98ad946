"""Op specs (autotune/ir/ops/): the registry's invariants, every built-in op through the whole tool,
and the extension path: a new op kind is one spec, and everything else follows."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from autotune.hardware.config import load_hardware
from autotune.ir import ops
from autotune.ir.graph import OPS, GraphBuilder, graph_to_dict

HW = load_hardware("mlu100")


def test_registry_is_consistent():
    reg = ops.registry()
    assert tuple(reg) == OPS and len(set(OPS)) == len(OPS)
    assert [ops.code(op) for op in OPS] == list(range(len(OPS)))
    for name, sp in reg.items():
        assert sp.name == name and sp.count_as in ops.COUNT_BUCKETS
    assert {op for op, sp in reg.items() if not sp.fusable} == {"opaque"}
    assert {op for op, sp in reg.items() if sp.windowed} == {"conv", "deconv", "pool"}
    with pytest.raises(ValueError, match="registered twice"):
        ops.register(type(reg["conv"]))


def _every_op_graph():
    """One small graph that uses every built-in op kind."""
    b = GraphBuilder("all_ops")
    x = b.input("x", (1, 8, 8, 8))
    c = b.conv(x, 8, 3, name="conv")
    d = b.deconv(c, 8, 2, 2, name="deconv")
    p = b.pool(b.pool(d, 2, name="pool0"), 2, name="pool")
    e = b.eltwise([p, p], name="eltwise")
    a = b.add("act", [e], mode="sigmoid", name="act")
    n = b.add("norm", [a], mode="instance", name="norm")
    r = b.add("resize", [n], mode="nearest", shape=(1, 8, 8, 8), name="resize")
    cat = b.concat([r, c], name="concat")
    g = b.gpool(cat, name="gpool")
    t = b.add("reshape", [g], shape=(1, 4, 4), name="reshape")
    t = b.add("layout", [t], shape=(1, 4, 4), mode="transpose", name="layout")
    m = b.add("matmul", [t, t], name="matmul")
    s = b.add("softmax", [m], name="softmax")
    f = b.fc(s, 6, name="fc")
    b.add("rnn", [f], "rnn", outputs=["rnn_h", "rnn_y", "rnn_c"], mode="lstm", out_channels=5, groups=2)
    b.add("opaque", [f], shape=(1, 4, 6), name="opaque")
    return b.build()


def test_every_builtin_op_through_the_tool(tmp_path):
    from autotune.costmodel.features import FEATURE_NAMES, featurize
    from autotune.device.simulator import simulate
    from autotune.frontends.onnx_export import export_onnx
    from autotune.frontends.onnx_import import load_onnx
    from autotune.hardware.analytic import estimate
    from autotune.ir.tables import GroupBatch
    from autotune.planning import strategies

    g = _every_op_graph()
    assert {lyr.op for lyr in g.order} == set(OPS)
    for lyr in g.order:
        assert lyr.macs >= 0 and lyr.vector_ops >= 0 and lyr.weight_elems >= 0
        assert (lyr.macs > 0) == (lyr.op in ("conv", "deconv", "fc", "matmul", "rnn"))
    groups = [g.group(i, i + 1) for i in range(len(g))]
    X = featurize(groups, [4] * len(groups), HW)
    assert np.isfinite(X).all() and X.shape == (len(g), len(FEATURE_NAMES))
    assert (simulate(groups, [4] * len(groups), HW) > 0).all()
    e = estimate(GroupBatch.build(groups), np.arange(len(groups)), np.full(len(groups), 4), HW.datasheet)
    assert (e.total_us > 0).all()
    p = strategies.run("oracle", g, HW)
    assert any(grp.layers == ["opaque"] for grp in p.groups)  # the unfusable op runs alone
    export_onnx(g, tmp_path / "all.onnx")
    back = load_onnx(str(tmp_path / "all.onnx"))
    assert json.dumps(graph_to_dict(back), sort_keys=True) == json.dumps(graph_to_dict(g), sort_keys=True)


class _Scale(ops.OpSpec):
    """A per-channel scale: one vector op and one weight per element of the channel axis."""

    name = "scale_test"
    vector_ops_per_elem = 1.0
    synth_weight = 0.5  # the generator makes training graphs of it

    def weight_elems(self, lyr):
        return lyr.out_channels


def test_a_new_op_is_one_spec(tmp_path):
    """Registering a spec is all it takes: shapes, costs, features, simulator, planner and ONNX
    round trip work with no other change."""
    from autotune.costmodel.features import featurize
    from autotune.device.simulator import simulate
    from autotune.frontends.onnx_export import export_onnx
    from autotune.frontends.onnx_import import load_onnx
    from autotune.planning import strategies

    ops.register(_Scale)
    try:
        b = GraphBuilder("scaled")
        x = b.input("x", (1, 16, 14, 14))
        y = b.conv(x, 16, 3, name="conv")
        z = b.add("scale_test", [y], name="scale")
        b.conv(z, 16, 1, name="conv2")
        g = b.build()
        lyr = g.layers["scale"]
        assert lyr.vector_ops == math.prod(lyr.out_shape) and lyr.weight_elems == 16 and lyr.macs == 0
        grp = [g.group(0, 3)] * len(HW.core_counts)
        assert np.isfinite(featurize(grp, HW.core_counts, HW)).all()
        assert (simulate(grp, HW.core_counts, HW) > 0).all()
        p = strategies.run("oracle", g, HW)
        assert [n for gr in p.groups for n in gr.layers] == ["conv", "scale", "conv2"]
        export_onnx(g, tmp_path / "s.onnx")  # no standard ONNX form: travels as an ai.autotune node
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back = load_onnx(str(tmp_path / "s.onnx"))
        assert back.layers["scale"].op == "scale_test" and back.layers["scale"].weight_elems == 16
        from autotune.frontends.synthetic import generate

        made = generate(300, HW, seed=0)
        assert any(lyr.op == "scale_test" for g in made for lyr in g.order)  # training data covers it
    finally:
        ops.unregister("scale_test")
    assert "scale_test" not in ops.registry()
