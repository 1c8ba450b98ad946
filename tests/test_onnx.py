"""ONNX import/export: round trips, exporter-style files checked against hand-computed MACs, huge and
external weights that must never be read, and bad files that must give one clear error line."""

from __future__ import annotations

import math
import os
import sys
import time
import tracemalloc
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autotune.cli import main as cli_main
from autotune.errors import GraphError
from autotune.frontends.onnx_export import export_onnx, graph_to_onnx
from autotune.frontends.onnx_import import OnnxImportWarning, load_onnx
from autotune.ir.graph import GraphBuilder, graph_to_dict

F = TensorProto.FLOAT


# -- helpers -----------------------------------------------------------------------------------------
class Net:
    """Build an ONNX graph the way PyTorch's exporter lays it out: weights as initializers, named nodes."""

    def __init__(self, x_shape, opset: int = 17):
        self.nodes, self.inits, self.opset, self.k = [], [], opset, 0
        self.x_shape = x_shape

    def t(self, base: str) -> str:
        self.k += 1
        return f"/{base}_{self.k}"

    def w(self, shape, value=None, dtype=np.float32) -> str:
        name = self.t("w")
        arr = np.zeros(shape, dtype) if value is None else np.asarray(value, dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self.t(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"/{op_type}_{self.k}", **attrs))
        return outs[0] if n_out == 1 else outs

    def conv_bn(self, x, cin, cout, k, s=1, p=None, groups=1, act="Relu"):
        p = k // 2 if p is None else p
        y = self.op("Conv", [x, self.w((cout, cin // groups, k, k))], kernel_shape=[k, k], strides=[s, s],
                    pads=[p] * 4, group=groups)
        y = self.op("BatchNormalization", [y] + [self.w((cout,)) for _ in range(4)])
        if act == "Relu":
            y = self.op("Relu", [y])
        elif act == "Relu6":
            y = self.op("Clip", [y, self.w((), 0.0), self.w((), 6.0)])
        return y

    def linear(self, x, cin, cout):
        y = self.op("MatMul", [x, self.w((cin, cout))])
        return self.op("Add", [y, self.w((cout,))])

    def save(self, path, outputs, x_dims=None, shuffle=False, value_info=()):
        nodes = list(reversed(self.nodes)) if shuffle else self.nodes
        x = helper.make_tensor_value_info("input", F, x_dims or self.x_shape)
        outs = [helper.make_tensor_value_info(o, F, None) for o in outputs]
        g = helper.make_graph(nodes, "net", [x], outs, initializer=self.inits, value_info=list(value_info))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        onnx.save(m, str(path))
        return str(path)


def _layers(g):
    return [(lyr.op, lyr.attrs.act) for lyr in g.order]


def _same_graph(a, b):
    da, db = graph_to_dict(a), graph_to_dict(b)
    da.pop("batch"), db.pop("batch")
    assert da["layers"] == db["layers"]
    assert da == db
    assert a.total_macs == b.total_macs and a.params == b.params


def _builder_graphs(batch: int = 1):
    """IR graphs covering every op kind, fused activations and layers with no standard ONNX form."""
    b = GraphBuilder("cnn", batch)
    x = b.input("x", (batch, 3, 32, 32))
    y = b.conv(x, 16, 3, 2, act="relu6", name="c1")
    y = b.dwconv(y, act="silu", name="dw")
    z = b.conv(y, 16, 1, act="gelu", name="pw")
    s = b.eltwise([y, z], act="relu", name="add")
    c = b.conv(s, 8, 1, act="", name="pre")  # a standalone act and BN after a single-consumer conv
    c = b.add("norm", [c], name="bn", mode="batch")
    c = b.add("act", [c], name="relu", mode="relu")
    c2 = b.conv(s, 8, 5, pad=(2, 1), stride=(1, 2), dilation=1, act="leaky_relu", name="asym")
    c2 = b.add("resize", [b.pool(c2, 2, (1, 1), 0, mode="avg", name="avg")], name="up", shape=(batch, 8, 16, 16),
               mode="nearest")
    b.pool(c2, 2, 3, 1, ceil_mode=True, name="edge")  # 16 -> 6: ONNX inference says 7 (no last-window rule)
    d = b.add("act", [b.conv(s, 8, 1, act="", name="pre2")], name="sig", mode="sigmoid")  # not re-fused
    cat = b.concat([c, c2, s, d], name="cat")
    p = b.pool(cat, 3, 2, 1, ceil_mode=True, name="pool")
    p = b.add("norm", [p], name="lrn", mode="lrn")
    p = b.add("norm", [b.add("norm", [p], name="gn", mode="group")], name="inorm", mode="instance")
    three = b.eltwise([p, p, p], mode="max", name="max3")
    g = b.gpool(three, mode="max", name="gmp")
    f = b.fc(g, 10, act="hswish", name="fc")
    r = b.add("reshape", [f], name="rs", shape=(batch, 2, 5))
    f2 = b.fc(r, 7, act="mish_like", bias=False, name="fc2")  # an activation ONNX has no op for
    sm = b.add("softmax", [f2], name="sm")
    n = b.add("norm", [sm], name="ln", mode="layer")
    b.add("opaque", [n], name="topk", shape=(batch, 3), mode="topk")
    cnn = b.build()

    b = GraphBuilder("vit", batch)
    t = b.input("tokens", (batch, 17, 32))
    h = b.add("norm", [t], name="ln1", mode="layer")
    q, k, v = (b.fc(h, 32, name=n) for n in ("q", "k", "v"))
    q, v = (b.add("reshape", [a], name=f"{a}_heads", shape=(batch, 4, 17, 8)) for a in (q, v))
    kt = b.add("reshape", [k], name="k_t", shape=(batch, 4, 8, 17))
    att = b.add("matmul", [q, kt], name="qk")
    att = b.add("softmax", [att], name="attn")
    o = b.add("matmul", [att, v], name="av")
    o = b.add("reshape", [o], name="merge", shape=(batch, 17, 32))
    o = b.fc(o, 32, name="proj")
    r1 = b.eltwise([t, o], name="res1")
    h = b.fc(b.add("norm", [r1], name="ln2", mode="layer"), 64, act="gelu", name="fc1")
    h = b.fc(h, 32, name="fc2")
    r2 = b.eltwise([r1, h], name="res2")
    vit = b.build([r2])
    return [cnn, vit]


# -- round trips ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 1])
def test_roundtrip_of_built_graphs_is_exact_and_follows_batch(tmp_path, k):
    g = _builder_graphs(1)[k]
    model = graph_to_onnx(g)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "g.onnx"
    export_onnx(g, path)
    assert os.listdir(tmp_path) == ["g.onnx"]  # atomic write leaves no temp file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own custom nodes are not "unsupported"
        back = load_onnx(str(path))
    _same_graph(g, back)
    # a batch override gives the graph built at that batch (shapes, MACs), not just a relabelled one
    _same_graph(_builder_graphs(3)[k], load_onnx(str(path), batch=3))
    assert load_onnx(str(path), batch=3).total_macs == 3 * g.total_macs


def test_export_writes_no_weight_data_and_lists_weights(tmp_path):
    b = GraphBuilder("big")
    x = b.input("x", (1, 512, 14, 14))
    b.fc(b.conv(x, 2048, 3, name="c"), 4096, name="fc")
    g = b.build()
    path = tmp_path / "big.onnx"
    export_onnx(g, path)
    assert g.params > 50_000_000 and path.stat().st_size < 4096
    m = onnx.load(str(path))  # loads with stock onnx: no external data, nothing missing
    weights = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in m.graph.input}
    assert weights["c.weight"] == [2048, 512, 3, 3] and weights["fc.weight"] == [4096, 2048 * 14 * 14]
    assert load_onnx(str(path)).params == g.params


def _zoo_names():
    try:
        from autotune.frontends import zoo
    except ImportError:
        return []
    return zoo.names()


@pytest.mark.parametrize("name", _zoo_names())
def test_zoo_roundtrip(tmp_path, name):
    from autotune.frontends import zoo

    g = zoo.build(name)
    path = tmp_path / f"{name}.onnx"
    export_onnx(g, path)
    onnx.checker.check_model(onnx.load(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_onnx(str(path))
    _same_graph(g, back)
    assert back.batch == g.batch
    assert load_onnx(str(path), batch=2).total_macs == zoo.build(name, batch=2).total_macs


def test_zoo_is_present():
    assert _zoo_names(), "autotune.frontends.zoo is missing: the zoo round trip did not run"


# -- files laid out like PyTorch exports ---------------------------------------------------------------
def _resnet_file(path, shuffle=False):
    """Stem conv7x7+BN+ReLU, maxpool, one basic residual block, GAP, Flatten, Gemm; batch dim 'N'."""
    n = Net(["N", 3, 224, 224])
    y = n.conv_bn("input", 3, 64, 7, 2, 3)
    y = n.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    z = n.conv_bn(y, 64, 64, 3)
    z = n.conv_bn(z, 64, 64, 3, act=None)
    y = n.op("Relu", [n.op("Add", [z, y])])
    y = n.op("Flatten", [n.op("GlobalAveragePool", [y])], axis=1)
    y = n.op("Gemm", [y, n.w((1000, 64)), n.w((1000,))], transB=1)
    return n.save(path, [y], shuffle=shuffle)


@pytest.mark.parametrize("shuffle", [False, True])
def test_resnet_style_file_folds_bn_and_relu(tmp_path, shuffle):
    g = load_onnx(_resnet_file(tmp_path / "r.onnx", shuffle))
    assert _layers(g) == [("conv", "relu"), ("pool", ""), ("conv", "relu"), ("conv", ""), ("eltwise", "relu"),
                          ("gpool", ""), ("fc", "")]
    assert g.batch == 1 and g.order[0].out_shape == (1, 64, 112, 112) and g.order[1].out_shape == (1, 64, 56, 56)
    macs = 64 * 112 * 112 * 3 * 49 + 2 * (64 * 56 * 56 * 64 * 9) + 64 * 1000
    assert g.total_macs == macs
    # BN folded: every conv gains a bias; params = conv weights + biases + fc
    assert g.params == (64 * 3 * 49 + 64) + 2 * (64 * 64 * 9 + 64) + (64 * 1000 + 1000)
    g8 = load_onnx(str(tmp_path / "r.onnx"), batch=8)
    assert g8.batch == 8 and g8.total_macs == 8 * macs and g8.order[-1].out_shape == (8, 1000)


def test_mobilenet_block_with_squeeze_excite(tmp_path):
    n = Net([1, 16, 56, 56])
    x = "input"
    y = n.conv_bn(x, 16, 96, 1, act="Relu6")
    y = n.conv_bn(y, 96, 96, 3, 2, groups=96, act="Relu6")
    s = n.op("GlobalAveragePool", [y])
    s = n.op("Relu", [n.op("Conv", [s, n.w((24, 96, 1, 1)), n.w((24,))], kernel_shape=[1, 1])])
    s = n.op("HardSigmoid", [n.op("Conv", [s, n.w((96, 24, 1, 1)), n.w((96,))], kernel_shape=[1, 1])],
             alpha=1 / 6, beta=0.5)
    y = n.op("Mul", [y, s])  # broadcast (1,96,28,28) * (1,96,1,1)
    y = n.conv_bn(y, 96, 24, 1, act=None)
    g = load_onnx(n.save(tmp_path / "mb.onnx", [y]))
    assert _layers(g) == [("conv", "relu6"), ("conv", "relu6"), ("gpool", ""), ("conv", "relu"),
                          ("conv", "hsigmoid"), ("eltwise", ""), ("conv", "")]
    dw = g.order[1]
    assert dw.depthwise and dw.out_shape == (1, 96, 28, 28)
    assert g.order[5].attrs.mode == "mul" and g.order[5].out_shape == (1, 96, 28, 28)
    assert g.total_macs == (96 * 56 * 56 * 16 + 96 * 28 * 28 * 9 + 96 * 24 + 24 * 96 + 24 * 28 * 28 * 96)


def test_inception_concat_and_same_padding(tmp_path):
    n = Net([1, 192, 28, 28])
    b1 = n.conv_bn("input", 192, 64, 1)
    b2 = n.conv_bn(n.conv_bn("input", 192, 96, 1), 96, 128, 3)
    b3 = n.conv_bn(n.conv_bn("input", 192, 16, 1), 16, 32, 5)
    b4 = n.conv_bn(n.op("MaxPool", ["input"], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4), 192, 32, 1)
    y = n.op("Concat", [b1, b2, b3, b4], axis=1)
    # TF-style SAME_UPPER stride 2 on an odd size: 28 -> 14, pads (0, 0, 1, 1)
    y = n.op("Conv", [y, n.w((64, 256, 3, 3))], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    g = load_onnx(n.save(tmp_path / "inc.onnx", [y]))
    cat = next(lyr for lyr in g.order if lyr.op == "concat")
    assert cat.out_shape == (1, 256, 28, 28) and len(cat.inputs) == 4
    last = g.order[-1]
    assert last.out_shape == (1, 64, 14, 14) and last.attrs.pads == (0, 0, 1, 1) and not last.attrs.bias
    hw = 28 * 28
    assert g.total_macs == (hw * (64 * 192 + 96 * 192 + 128 * 96 * 9 + 16 * 192 + 32 * 16 * 25 + 32 * 192)
                            + 14 * 14 * 64 * 256 * 9)


def _vit_file(path, gelu_op=False, batch_dim="N"):
    """A pre-norm transformer block as torch.onnx.export writes it (opset 17: Erf-form GELU)."""
    T, D, H, dh = 17, 32, 4, 8
    n = Net([batch_dim, T, D], opset=20 if gelu_op else 17)
    x = "input"
    h = n.op("LayerNormalization", [x, n.w((D,)), n.w((D,))], axis=-1)
    # dynamic reshape target from Shape -> Gather -> Unsqueeze -> Concat, dropped as a shape computation
    bdim = n.op("Unsqueeze", [n.op("Gather", [n.op("Shape", [x]), n.w((), 0, np.int64)], axis=0),
                              n.w((1,), [0], np.int64)])
    target = n.op("Concat", [bdim, n.w((3,), [T, H, dh], np.int64)], axis=0)

    def heads(t, perm):
        return n.op("Transpose", [n.op("Reshape", [t, target])], perm=perm)

    q = heads(n.linear(h, D, D), [0, 2, 1, 3])
    k = heads(n.linear(h, D, D), [0, 2, 3, 1])
    v = heads(n.linear(h, D, D), [0, 2, 1, 3])
    a = n.op("Mul", [n.op("MatMul", [q, k]), n.w((), dh ** -0.5)])
    o = n.op("MatMul", [n.op("Softmax", [a], axis=-1), v])
    o = n.op("Reshape", [n.op("Transpose", [o], perm=[0, 2, 1, 3]), n.w((3,), [0, T, D], np.int64)])
    r1 = n.op("Add", [x, n.linear(o, D, D)])
    h = n.linear(n.op("LayerNormalization", [r1, n.w((D,)), n.w((D,))], axis=-1), D, 4 * D)
    if gelu_op:
        h = n.op("Gelu", [h])
    else:
        e = n.op("Add", [n.op("Erf", [n.op("Div", [h, n.w((), math.sqrt(2))])]), n.w((), 1.0)])
        h = n.op("Mul", [n.op("Mul", [h, e]), n.w((), 0.5)])
    r2 = n.op("Add", [r1, n.linear(h, 4 * D, D)])
    return n.save(path, [r2])


@pytest.mark.parametrize("gelu_op", [False, True])
def test_transformer_block(tmp_path, gelu_op):
    B, T, D, H, dh = 2, 17, 32, 4, 8
    g = load_onnx(_vit_file(tmp_path / "vit.onnx", gelu_op), batch=B)
    ops = [(op, act) for op, act in _layers(g) if op not in ("reshape", "layout")]
    assert ops == [("norm", ""), ("fc", ""), ("fc", ""), ("fc", ""), ("matmul", ""), ("eltwise", ""),
                   ("softmax", ""), ("matmul", ""), ("fc", ""), ("eltwise", ""), ("norm", ""), ("fc", "gelu"),
                   ("fc", ""), ("eltwise", "")]
    # q, v: reshape + transpose; k: reshape + transpose; merge: transpose + reshape
    kinds = [lyr.op for lyr in g.order]
    assert kinds.count("reshape") == 4 and kinds.count("layout") == 4
    assert {lyr.attrs.mode for lyr in g.order if lyr.op == "layout"} == {"transpose"}
    assert all(lyr.attrs.bias for lyr in g.order if lyr.op == "fc")  # the Add after each MatMul is its bias
    qk = next(lyr for lyr in g.order if lyr.op == "matmul")
    assert qk.out_shape == (B, H, T, T)
    macs = B * (3 * T * D * D + 2 * H * T * T * dh + T * D * D + 2 * T * D * 4 * D)
    assert g.total_macs == macs
    assert g.params == 4 * (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D) + 2 * 2 * D
    assert load_onnx(str(tmp_path / "vit.onnx")).order[0].out_shape == (1, T, D)  # symbolic batch -> 1


def test_matmul_on_4d_activation_keeps_its_macs(tmp_path):
    n = Net([1, 8, 8, 32])  # channels-last block (Swin / ConvNeXt style Linear)
    y = n.linear("input", 32, 128)
    g = load_onnx(n.save(tmp_path / "cl.onnx", [y]))
    assert g.total_macs == 8 * 8 * 32 * 128 and g.order[-1].out_shape == (1, 8, 8, 128)


def test_exporter_style_files_raise_no_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_onnx(_resnet_file(tmp_path / "r.onnx"))
        load_onnx(_vit_file(tmp_path / "v.onnx"))


# -- weights are never read ----------------------------------------------------------------------------
def _fc_file(path, k: int, n_out: int, big: bool) -> str:
    """x(1,k) @ W(k,n_out): W is written in chunks straight into the file, never held in memory."""
    x = helper.make_tensor_value_info("input", F, [1, k])
    y = helper.make_tensor_value_info("y", F, None)
    node = helper.make_node("MatMul", ["input", "W"], ["y"], name="fc")
    small = helper.make_model(helper.make_graph([node], "fc", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    head = onnx.TensorProto(name="W", dims=[k, n_out], data_type=F).SerializeToString()
    nbytes = 4 * k * n_out if big else 0

    def varint(v):
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)

    raw = b"\x4a" + varint(nbytes)  # TensorProto.raw_data (field 9, bytes)
    tensor_len = len(head) + len(raw) + nbytes
    init = b"\x2a" + varint(tensor_len)  # GraphProto.initializer (field 5)
    # fields of an embedded message merge, so a second `graph` field adds the initializer to the graph
    with open(path, "wb") as f:
        f.write(small.SerializeToString())
        f.write(b"\x3a" + varint(len(init) + tensor_len) + init + head + raw)
        chunk = bytes(1 << 20)
        left = nbytes
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return str(path)


def test_huge_initializer_is_never_loaded(tmp_path):
    k, n_out = 10240, 5120  # 200 MiB of float32 weights
    big = _fc_file(tmp_path / "big.onnx", k, n_out, big=True)
    small = _fc_file(tmp_path / "small.onnx", k, n_out, big=False)
    assert os.path.getsize(big) > 200 * 2**20 > 1000 * os.path.getsize(small)
    t0 = time.perf_counter()
    g_small = load_onnx(small)
    t_small = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    g_big = load_onnx(big)
    t_big = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert graph_to_dict(g_big) == graph_to_dict(g_small)
    assert g_big.params == k * n_out and g_big.total_macs == k * n_out
    assert peak < 4 * 2**20  # far below the 200 MiB of weights: the payload was skipped, not copied
    assert t_big < 10 * t_small + 2.0  # loose: reading 200 MiB would take much longer than a small file


def test_external_data_is_never_followed(tmp_path):
    opened = []
    sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == "open" and args else None)
    n = Net([1, 64])
    w1 = n.w((64, 128))
    w2 = n.w((128, 10))
    for t, loc in zip(n.inits, ["../../etc/passwd", "missing_weights.bin"]):
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=loc)
        t.external_data.add(key="length", value=str(4 * math.prod(t.dims)))
    y = n.op("MatMul", [n.op("Relu", [n.op("MatMul", ["input", w1])]), w2])
    path = n.save(tmp_path / "ext.onnx", [y])
    with pytest.raises(onnx.checker.ValidationError, match="points outside"):
        onnx.load(path)  # stock onnx does try to follow the references
    opened.clear()
    g = load_onnx(path)
    assert _layers(g) == [("fc", "relu"), ("fc", "")] and g.total_macs == 64 * 128 + 128 * 10
    assert not [p for p in opened if "passwd" in p or "missing_weights" in p]


# -- unsupported ops and bad files ----------------------------------------------------------------------
def _unknown_op_file(path, with_shape=True):
    n = Net([1, 8, 16, 16])
    y = n.conv_bn("input", 8, 8, 3)
    n.nodes.append(helper.make_node("FancyOp", [y], ["fancy"], name="fancy", domain="com.vendor"))
    n.nodes.append(helper.make_node("LpNormalization", ["fancy"], ["ein"], name="ein"))
    z = n.op("Relu", ["ein"])
    vi = [helper.make_tensor_value_info("fancy", F, [1, 8, 16, 16])] if with_shape else []
    m_path = n.save(path, [z], value_info=vi)
    m = onnx.load(m_path)
    m.opset_import.append(helper.make_opsetid("com.vendor", 1))
    onnx.save(m, m_path)
    return m_path


def test_unknown_ops_become_opaque_with_one_warning_or_fail_in_strict_mode(tmp_path):
    path = _unknown_op_file(tmp_path / "u.onnx")
    with pytest.warns(OnnxImportWarning) as rec:
        g = load_onnx(path)
    msg = str(rec[0].message)
    assert len(rec) == 1 and "com.vendor.FancyOp x1" in msg and "LpNormalization x1" in msg
    assert [lyr.op for lyr in g.order] == ["conv", "opaque", "opaque", "act"]
    assert g.order[1].out_shape == (1, 8, 16, 16) and g.total_macs == 8 * 16 * 16 * 8 * 9
    with pytest.raises(GraphError, match=r"u\.onnx.*strict.*LpNormalization x1, com\.vendor\.FancyOp x1"):
        load_onnx(path, strict=True)


def _cyclic_file(path):
    n = Net([1, 4])
    n.nodes = [helper.make_node("Add", ["input", "b"], ["a"], name="add"),
               helper.make_node("Relu", ["a"], ["b"], name="relu")]
    return n.save(path, ["b"])


def _truncated_file(path):
    data = open(_resnet_file(path), "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])
    return str(path)


def _write(path, data: bytes):
    open(path, "wb").write(data)
    return str(path)


BAD = {
    "garbage": (lambda p: _write(p, np.random.default_rng(0).bytes(4000)), "not a valid ONNX file"),
    "text": (lambda p: _write(p, b"name: resnet50\nlayers: [conv, relu]\n" * 20), "not a"),
    "empty": (lambda p: _write(p, b""), "empty file"),
    "truncated": (_truncated_file, "truncated or corrupt"),
    "no_nodes": (lambda p: Net([1, 4]).save(p, ["input"]), "empty"),
    "cycle": (_cyclic_file, "cycle"),
    "no_shape": (lambda p: _unknown_op_file(p, with_shape=False), "'fancy'.*unknown"),
    "missing": (lambda p: str(p), "no such file"),
    "directory": (lambda p: (os.mkdir(p), str(p))[1], "not a file"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_files_give_one_clear_error(tmp_path, capsys, kind):
    make, pattern = BAD[kind]
    path = make(tmp_path / f"{kind}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OnnxImportWarning)
        with pytest.raises(GraphError, match=pattern) as info:
            load_onnx(path)
        assert str(info.value).startswith(path) and "\n" not in str(info.value)
        assert cli_main(["inspect", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("autotune: error: ") and path in err
    assert "Traceback" not in err


def test_cli_inspects_an_onnx_file(tmp_path, capsys):
    path = _resnet_file(tmp_path / "r.onnx")
    assert cli_main(["inspect", path, "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "conv+relu" in out and "2x1000" in out


def test_mutated_files_never_escape_as_raw_exceptions(tmp_path):
    """Random byte flips, cuts and deletions: either a graph or one GraphError line, nothing else."""
    sources = [open(_resnet_file(tmp_path / "r.onnx"), "rb").read()]
    export_onnx(_builder_graphs(1)[0], tmp_path / "c.onnx")
    sources.append((tmp_path / "c.onnx").read_bytes())
    rng = np.random.default_rng(1)
    path = str(tmp_path / "m.onnx")
    errors = 0
    for i in range(200):
        data = bytearray(sources[i % 2])
        for _ in range(rng.integers(1, 4)):
            k = int(rng.integers(len(data)))
            r = rng.random()
            if r < 0.6:
                data[k] = int(rng.integers(256))
            elif r < 0.8:
                del data[k : k + int(rng.integers(1, 20))]
            else:
                data = data[:k]
        open(path, "wb").write(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_onnx(path)
            except GraphError as err:
                errors += 1
                assert "\n" not in str(err) and str(err).startswith(path)
    assert errors > 50  # the mutations do break files, so the error path was exercised


def test_generic_fusion_rules(tmp_path):
    """An activation folds only into a sole consumer; a channel-shaped constant Add becomes the conv bias."""
    n = Net([1, 8, 16, 16])
    y = n.op("Conv", ["input", n.w((8, 8, 3, 3))], kernel_shape=[3, 3], pads=[1] * 4)
    y = n.op("Add", [y, n.w((8, 1, 1))])  # bias written as a separate Add
    r = n.op("Relu", [y])  # y has two consumers: this Relu stays a layer
    z = n.op("Add", [y, r])
    z = n.op("Mul", [z, n.w((1, 8, 1, 1), 0.5)])  # a constant scale: eltwise on one tensor
    z = n.op("Sigmoid", [z])
    z = n.op("Add", [n.op("Conv", [z, n.w((8, 8, 1, 1))], kernel_shape=[1, 1]), n.w((1, 8, 16, 16))])
    g = load_onnx(n.save(tmp_path / "f.onnx", [z]))
    assert _layers(g) == [("conv", ""), ("act", ""), ("eltwise", ""), ("eltwise", "sigmoid"), ("conv", ""),
                          ("eltwise", "")]
    assert g.order[0].attrs.bias and not g.order[4].attrs.bias  # a full-size Add is not a bias
    assert g.order[1].attrs.mode == "relu" and g.order[3].inputs == (g.order[2].outputs[0],)


def test_ceil_mode_pool_follows_the_runtime_rule(tmp_path):
    # 16 wide, k2 s3 p1, ceil: ONNX's formula gives 7, but the 7th window would start in the padding,
    # so PyTorch and ONNX Runtime produce 6; the IR rule (and the conv after it) must see 6
    n = Net([1, 4, 16, 16])
    y = n.op("MaxPool", ["input"], kernel_shape=[2, 2], strides=[3, 3], pads=[1] * 4, ceil_mode=1)
    y = n.op("Conv", [y, n.w((4, 4, 1, 1))], kernel_shape=[1, 1])
    g = load_onnx(n.save(tmp_path / "p.onnx", [y]))
    assert [lyr.out_shape for lyr in g.order] == [(1, 4, 6, 6), (1, 4, 6, 6)] and g.total_macs == 36 * 16


def _seq_file(path, dims=("N", "S", 64)):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.zeros((dims[-1], 32), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")], "seq", [x], [y], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_symbolic_non_batch_dims_must_be_set_by_name(tmp_path):
    path = _seq_file(tmp_path / "seq.onnx")
    with pytest.raises(GraphError, match=r"input 'x' dimension 1 is symbolic \('S'\): set it with --dim S=VALUE"):
        load_onnx(path, batch=2)
    g = load_onnx(path, batch=2, dims={"S": 77})
    assert g.order[0].out_shape == (2, 77, 32) and g.total_macs == 2 * 77 * 64 * 32
    assert load_onnx(path, dims={"S": 5, "N": 3}).order[0].out_shape == (3, 5, 32)  # N named like a batch
    with pytest.raises(GraphError, match=r"--dim T: no input has a symbolic dimension of that name \(it has: N, S\)"):
        load_onnx(path, dims={"S": 5, "T": 3})
    unnamed = _seq_file(tmp_path / "unnamed.onnx", ("N", None, 64))
    with pytest.raises(GraphError, match=r"set it with --dim x\.1=VALUE"):
        load_onnx(unnamed)
    assert load_onnx(unnamed, dims={"x.1": 9}).order[0].out_shape == (1, 9, 32)


def test_two_d_activations_are_tokens_not_batch(tmp_path):
    path = _seq_file(tmp_path / "tokens.onnx", (2048, 64))  # an MLP block exported as [tokens, hidden]
    assert load_onnx(path).total_macs == 2048 * 64 * 32
    with pytest.raises(GraphError, match=r"--batch 8: no input has a batch axis.*\[tokens, features\]"):
        load_onnx(path, batch=8)
    row = _seq_file(tmp_path / "row.onnx", (1, 64))  # one [1, features] row: that 1 is a batch
    assert load_onnx(row, batch=8).order[0].out_shape == (8, 32)


def _attention_file(path, B0=1, T=6, D=8, H=2):
    """torch's nn.MultiheadAttention as the TorchScript exporter writes it at a fixed batch: sequence-first,
    `view(T, B * H, d)` for the heads and `view(T * B, D)` before the output projection, targets baked."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    d = D // H
    consts = {"t_heads": [T, B0 * H, d], "t_merge": [T * B0, D], "t_back": [T, B0, D], "cls_shape": [B0, 1, D]}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in consts.items()]
    inits += [numpy_helper.from_array(np.zeros((D, D), np.float32), w) for w in ("wq", "wk", "wv", "wo")]
    inits.append(numpy_helper.from_array(np.zeros((1, 1, D), np.float32), "cls"))
    nd = [
        helper.make_node("Expand", ["cls", "cls_shape"], ["cls_b"], name="expand_cls"),
        helper.make_node("Concat", ["cls_b", "x"], ["xt"], name="cat_cls", axis=1),  # (B, T, D)
        helper.make_node("Transpose", ["xt"], ["s"], name="seq_first", perm=[1, 0, 2]),  # (T, B, D)
    ]
    for k in ("q", "k", "v"):
        nd += [helper.make_node("MatMul", ["s", f"w{k}"], [f"{k}0"], name=f"proj_{k}"),
               helper.make_node("Reshape", [f"{k}0", "t_heads"], [f"{k}1"], name=f"heads_{k}"),
               helper.make_node("Transpose", [f"{k}1"], [f"{k}2"], name=f"bh_{k}", perm=[1, 0, 2])]
    nd += [
        helper.make_node("Transpose", ["k2"], ["kT"], name="kT", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q2", "kT"], ["att"], name="qk"),
        helper.make_node("Softmax", ["att"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v2"], ["o"], name="pv"),  # (B*H, T, d)
        helper.make_node("Transpose", ["o"], ["o1"], name="o_seq", perm=[1, 0, 2]),  # (T, B*H, d)
        helper.make_node("Reshape", ["o1", "t_merge"], ["o2"], name="merge"),  # (T*B, D)
        helper.make_node("MatMul", ["o2", "wo"], ["o3"], name="proj_o"),
        helper.make_node("Reshape", ["o3", "t_back"], ["o4"], name="back"),  # (T, B, D)
        helper.make_node("Transpose", ["o4"], ["y"], name="batch_first", perm=[1, 0, 2]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [B0, T - 1, D])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    onnx.save(helper.make_model(helper.make_graph(nd, "mha", [x], [y], inits),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize("B0", [1, 2])
def test_batch_of_a_fixed_export_is_a_graph_transform(tmp_path, B0):
    T, D, H = 6, 8, 2
    path = _attention_file(tmp_path / "mha.onnx", B0, T, D, H)

    def macs(B):
        return B * (4 * T * D * D + 2 * H * T * T * (D // H))

    assert load_onnx(path).total_macs == macs(B0)
    for B in (1, 3, 8):
        g = load_onnx(path, batch=B, strict=True)
        assert g.total_macs == macs(B), B  # attention per sample: T x T, never (B T) x (B T)
        assert next(lyr for lyr in g.order if lyr.name == "qk").out_shape == (B * H, T, T)
        assert g.order[-1].out_shape == (B, T, D)


def test_the_round_based_rescale_agrees_with_the_one_pass(tmp_path, monkeypatch):
    """Files with nodes ONNX cannot infer one at a time take the round-based path: same graph."""
    from autotune.frontends import onnx_batch

    path = _attention_file(tmp_path / "mha.onnx", 1)
    fast = graph_to_dict(load_onnx(path, batch=4))
    monkeypatch.setattr(onnx_batch, "_forward_edits", lambda *a: None)
    assert graph_to_dict(load_onnx(path, batch=4)) == fast


def test_an_unsafe_batch_rewrite_names_its_node(tmp_path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    # a reshape that folds the batch into the features at batch 2: samples mix, no rewrite is right
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    t = numpy_helper.from_array(np.array([4, 16], np.int64), "t")
    w = numpy_helper.from_array(np.zeros((16, 3), np.float32), "w")
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], name="tr", perm=[1, 0, 2]),
             helper.make_node("Reshape", ["xt", "t"], ["r"], name="mix_samples"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="fc")]
    path = tmp_path / "mix.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "mix", [x], [y], [t, w]),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    assert load_onnx(str(path)).total_macs == 4 * 16 * 3
    with pytest.raises(GraphError, match=r"node 'fc' \(MatMul\)|node 'mix_samples' \(Reshape\)"):
        load_onnx(str(path), batch=8)



@pytest.mark.parametrize("case", ["resize_to_sizes", "gather_by_batch_index"])
def test_a_file_that_fixes_the_batch_in_one_branch_is_refused_at_another_batch(tmp_path, case):
    """A Resize to constant sizes (torch's dynamo export of interpolate) or a Gather by a baked batch
    index keeps batch 1 while the rest goes to batch 4; a later Add would broadcast the two into a
    graph of mixed batches that undercounts. It is one clear error naming the node, not a wrong count."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    if case == "resize_to_sizes":
        inits = [numpy_helper.from_array(np.array([1, 2, 8, 8], np.int64), "sizes")]
        nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["up"], name="baked", mode="nearest"),
                 helper.make_node("MaxPool", ["up"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                 helper.make_node("Add", ["x", "p"], ["y"])]
    else:
        inits = [numpy_helper.from_array(np.array([0], np.int64), "sample0")]
        nodes = [helper.make_node("Gather", ["x", "sample0"], ["g"], name="baked", axis=0),
                 helper.make_node("Add", ["x", "g"], ["y"])]
    path = tmp_path / "baked.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "m", [x], [y], inits),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    assert load_onnx(str(path)).batch == 1
    with pytest.raises(GraphError, match=r"node 'baked' .* keeps the export's batch 1 while its input is at batch 4"):
        load_onnx(str(path), batch=4)


def test_castlike_reads_only_the_type_of_its_second_input(tmp_path):
    """torch's unoptimised dynamo export builds a zero bias as CastLike(0, activation): a constant,
    not a layer on the activation path."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "c"),
             numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64), "shape")]
    nodes = [helper.make_node("CastLike", ["c", "x"], ["cl"]),
             helper.make_node("Expand", ["cl", "shape"], ["b"]),
             helper.make_node("Add", ["x", "b"], ["y"], name="add")]
    path = tmp_path / "castlike.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "m", [x], [y], inits),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    assert [lyr.op for lyr in load_onnx(str(path), strict=True).order] == ["eltwise"]


# -- op families of modern networks ----------------------------------------------------------------------
def test_conv1d_conv3d_and_conv_transpose_count_like_pytorch(tmp_path):
    n = Net([1, 80, 100])  # Whisper-style: Conv1d 80 -> 64, k3 p1, then k3 s2 p1
    y = n.op("Conv", ["input", n.w((64, 80, 3))], kernel_shape=[3], pads=[1, 1])
    y = n.op("Conv", [y, n.w((64, 64, 3))], kernel_shape=[3], strides=[2], pads=[1, 1])
    g = load_onnx(n.save(tmp_path / "c1.onnx", [y]), strict=True)
    assert [lyr.out_shape for lyr in g.order] == [(1, 64, 100), (1, 64, 50)]
    assert g.total_macs == 100 * 64 * 80 * 3 + 50 * 64 * 64 * 3
    assert g.order[1].spec.plane(g.order[1]) == (50, 1) and g.order[1].in_channels == 64

    n = Net([2, 4, 8, 16, 16])  # Conv3d k3 p1 then ConvTranspose3d k2 s2
    y = n.op("Conv", ["input", n.w((8, 4, 3, 3, 3))], kernel_shape=[3, 3, 3], pads=[1] * 6)
    y = n.op("ConvTranspose", [y, n.w((8, 4, 2, 2, 2))], kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    g = load_onnx(n.save(tmp_path / "c3.onnx", [y]), strict=True)
    assert [lyr.out_shape for lyr in g.order] == [(2, 8, 8, 16, 16), (2, 4, 16, 32, 32)]
    # torch's FlopCounter: conv = out elements x C_in x k^3; transposed = in elements x C_out x k^3
    assert g.order[0].macs == 2 * 8 * 8 * 16 * 16 * 4 * 27 and g.order[1].macs == 2 * 8 * 8 * 16 * 16 * 4 * 8

    n = Net([1, 16, 7, 7])  # ConvTranspose2d k3 s2 p1 output_padding 1 (7 -> 14), grouped; then output_shape
    y = n.op("ConvTranspose", ["input", n.w((16, 4, 3, 3))], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4,
             output_padding=[1, 1], group=2)
    z = n.op("ConvTranspose", [y, n.w((8, 8, 4, 4))], kernel_shape=[4, 4], strides=[2, 2], output_shape=[28, 28])
    g = load_onnx(n.save(tmp_path / "ct.onnx", [z]), strict=True)
    assert [lyr.out_shape for lyr in g.order] == [(1, 8, 14, 14), (1, 8, 28, 28)]
    assert g.order[0].macs == 16 * 49 * (8 // 2) * 9


def test_einsum_contractions_map_to_matmul_or_fc_and_others_are_named(tmp_path):
    n = Net([2, 4, 10, 16])  # q (b h i d)
    k = n.op("Einsum", ["input", n.w((16, 16))], equation="bhid,de->bhie")  # an fc on the last axis
    s = n.op("Einsum", ["input", k], equation="bhid,bhjd->bhij")  # q k^T
    o = n.op("Einsum", [s, k], equation="bhij,bhjd->bhid")
    g = load_onnx(n.save(tmp_path / "e.onnx", [o]), strict=True)
    mm = [lyr for lyr in g.order if lyr.op in ("fc", "matmul")]
    assert [lyr.op for lyr in mm] == ["fc", "matmul", "matmul"]
    assert g.total_macs == 2 * 4 * 10 * 16 * 16 + 2 * (2 * 4 * 10 * 10 * 16)
    assert g.order[-1].out_shape == (2, 4, 10, 16)
    bad = Net([2, 10, 16])
    y = bad.op("Einsum", ["input", "input"], equation="bid,bjd->bi")  # j summed in one operand only
    with pytest.raises(GraphError, match=r"einsum 'bid,bjd->bi' is not a matmul or fc contraction"):
        load_onnx(bad.save(tmp_path / "bad.onnx", [y]))


def test_matmul_with_a_constant_left_operand_is_an_fc(tmp_path):
    n = Net([1, 64, 49])  # W (32 x 64) @ X (64 x 49): a token-mixing / 1x1 projection written on the left
    y = n.op("MatMul", [n.w((32, 64)), "input"])
    g = load_onnx(n.save(tmp_path / "l.onnx", [y]), strict=True)
    assert g.total_macs == 32 * 64 * 49 and g.order[-1].out_shape == (1, 32, 49)
    assert [lyr.op for lyr in g.order] == ["layout", "fc", "layout"]


def test_decomposed_norms_and_activations_fold(tmp_path):
    D = 32
    n = Net([1, 8, D])
    x = "input"
    # RMSNorm as Llama exports it: a float32 cast shared with the residual, pow, mean, add eps, sqrt, 1/x, mul, mul
    c = n.op("Cast", [x], to=1)
    ms = n.op("ReduceMean", [n.op("Pow", [c, n.w((), 2.0)]), n.w((1,), [-1], np.int64)])
    r = n.op("Div", [n.w((), 1.0), n.op("Sqrt", [n.op("Add", [ms, n.w((), 1e-6)])])])
    h = n.op("Mul", [n.w((D,)), n.op("Mul", [c, r])])
    h = n.op("Add", [n.op("MatMul", [h, n.w((D, D))]), n.w((D,))])  # fc with bias
    # GELU, tanh form (GPT-2's gelu_new)
    cube = n.op("Mul", [n.w((), 0.044715), n.op("Pow", [h, n.w((), 3.0)])])
    t = n.op("Tanh", [n.op("Mul", [n.w((), 0.79788456), n.op("Add", [h, cube])])])
    h = n.op("Mul", [n.op("Mul", [n.w((), 0.5), h]), n.op("Add", [n.w((), 1.0), t])])
    # LayerNorm decomposed (older exporters)
    mu = n.op("ReduceMean", [h], axes=[-1])
    d = n.op("Sub", [h, mu])
    var = n.op("ReduceMean", [n.op("Pow", [d, n.w((), 2.0)])], axes=[-1])
    h = n.op("Add", [n.op("Mul", [n.op("Div", [d, n.op("Sqrt", [n.op("Add", [var, n.w((), 1e-5)])])]), n.w((D,))]),
                     n.w((D,))])
    # SiLU in another domain, then a residual add with the cast input
    n.nodes.append(helper.make_node("Silu", [h], ["silu_out"], name="silu", domain="com.vendor"))
    y = n.op("Add", ["silu_out", c])
    path = n.save(tmp_path / "d.onnx", [y])
    m = onnx.load(path)
    m.opset_import.append(helper.make_opsetid("com.vendor", 1))
    m.opset_import[0].version = 17
    onnx.save(m, path)
    g = load_onnx(path, strict=True)
    assert [(lyr.op, lyr.attrs.mode, lyr.attrs.act) for lyr in g.order] == [
        ("norm", "rms", ""), ("fc", "", "gelu"), ("norm", "layer", "silu"), ("eltwise", "add", "")]
    assert g.order[1].attrs.bias and g.total_macs == 8 * D * D


def test_layout_ops_are_fusable_layers_and_opaque_ones_are_named(tmp_path):
    n = Net([1, 8, 16])
    parts = n.op("Split", ["input", n.w((2,), [8, 8], np.int64)], n_out=2, axis=2)
    a = n.op("Transpose", [parts[0]], perm=[0, 2, 1])
    b = n.op("Slice", [parts[1], n.w((1,), [0], np.int64), n.w((1,), [4], np.int64), n.w((1,), [2], np.int64)])
    c = n.op("Concat", [n.w((1, 8, 2)), b], axis=2)  # a constant joined in (a class token)
    z = n.op("TopK", [a, n.w((1,), [2], np.int64)], n_out=2, axis=-1)[0]
    w = n.op("Hardmax", [c])  # no IR mapping: an opaque layer, named
    g0 = n.save(tmp_path / "l.onnx", [w, z])
    with pytest.warns(OnnxImportWarning, match=r"Hardmax x1"):
        g = load_onnx(g0)
    kinds = [(lyr.op, lyr.attrs.mode) for lyr in g.order]
    assert kinds == [("layout", "slice"), ("layout", "slice"), ("layout", "transpose"), ("layout", "slice"),
                     ("layout", "concat"), ("act", "topk"), ("layout", "reduce"), ("opaque", "hardmax")]
    assert g.order[6].out_shape == (1, 8, 2)  # TopK's k along the last axis
    assert all(lyr.spec.fusable and lyr.macs == 0 for lyr in g.order if lyr.op == "layout")
    with pytest.raises(GraphError, match=r"strict.*Hardmax x1"):
        load_onnx(g0, strict=True)


def test_generated_groups_round_trip_exactly(tmp_path):
    """What `export-groups` writes for a device to measure maps back to the same layers and batch."""
    from autotune.frontends.synthetic import generate
    from autotune.hardware.config import load_hardware

    path = tmp_path / "g.onnx"
    for g in generate(200, load_hardware("mlu100"), 3):
        export_onnx(g, path)
        assert graph_to_dict(load_onnx(str(path))) == graph_to_dict(g), g.name


def _one_node_file(path, node, x_shape, inits):
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y],
                                                  [numpy_helper.from_array(v, k) for k, v in inits.items()]),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize("op, attrs, x_shape, inits, words", [
    ("MatMul", {}, (1, 16, 64), {"w": np.zeros((32, 64), np.float32)}, "(?i)incompatible|mismatch"),
    ("Gemm", {"transB": 1}, (1, 64), {"w": np.zeros((10, 32), np.float32)}, "(?i)incompatible|mismatch"),
    ("Concat", {"axis": 9}, (2, 16, 64), {}, "axis must be in"),
    ("Softmax", {"axis": 10}, (2, 16), {}, "'axis' must be in"),
    ("BatchNormalization", {}, (1, 3, 8, 8), {k: np.ones(7, np.float32) for k in ("s", "b", "m", "v")},
     "Dimension mismatch"),
])
def test_a_node_whose_shapes_contradict_each_other_is_an_error(tmp_path, op, attrs, x_shape, inits, words):
    """Not a guess that imports: the weight's reduction axis, an axis past the rank, parameters of
    another channel count are each one clear error naming the node's type."""
    from onnx import helper

    ins = ["x", *inits] if op != "Concat" else ["x", "x"]
    path = _one_node_file(tmp_path / "bad.onnx", helper.make_node(op, ins, ["y"], name="n", **attrs), x_shape, inits)
    with pytest.raises(GraphError, match=words):
        load_onnx(path)


def test_the_mapping_checks_a_weights_reduction_axis_where_onnx_inference_does_not_reach(tmp_path, monkeypatch):
    from onnx import helper

    from autotune.frontends import onnx_import

    monkeypatch.setattr(onnx_import.Importer, "_refuse_shape_errors", lambda self: None)
    for op, attrs, x_shape, w in [("MatMul", {}, (1, 16, 64), (32, 64)), ("Gemm", {"transB": 1}, (1, 64), (10, 32))]:
        inits = {"w": np.zeros(w, np.float32)}
        path = _one_node_file(tmp_path / f"{op}.onnx", helper.make_node(op, ["x", "w"], ["y"], **attrs), x_shape,
                              inits)
        with pytest.raises(GraphError, match="reduces over 32 values, the activation"):
            load_onnx(path)


def test_an_op_onnx_does_not_know_is_opaque_with_its_declared_shape_or_named(tmp_path):
    """An op of no ONNX opset (even in the default domain) maps to an opaque layer when the file
    declares its output's shape, at any batch; without one, the error names the op, not a tensor."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("FooBar", ["r"], ["z"], name="foo"),
             helper.make_node("Relu", ["z"], ["y"])]
    for declared in (True, False):
        vi = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5, 8, 8])] if declared else []
        path = tmp_path / f"foo{declared}.onnx"
        onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], value_info=vi),
                                    opset_imports=[helper.make_opsetid("", 17)]), path)
        if declared:
            with pytest.warns(UserWarning, match="FooBar x1"):
                g = load_onnx(str(path), batch=4)
            assert g.order[-1].out_shape == (4, 5, 8, 8)
        else:
            with pytest.raises(GraphError, match="op 'FooBar' .* is no ONNX op this autotune knows"):
                load_onnx(str(path))


@pytest.mark.parametrize("flatten", ["Flatten", "Reshape"])
def test_a_dense_layer_after_a_flatten_is_an_fc_over_every_feature(tmp_path, flatten):
    """Conv -> Flatten (or Reshape to 2-D) -> MatMul, as Keras exports a Dense head: one fc of
    C*H*W inputs, not an fc over the last axis."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "cw"),
             numpy_helper.from_array(np.zeros((512, 10), np.float32), "fw"),
             numpy_helper.from_array(np.array([1, 512], np.int64), "to")]
    flat = (helper.make_node("Flatten", ["c"], ["f"], axis=1) if flatten == "Flatten"
            else helper.make_node("Reshape", ["c", "to"], ["f"]))
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], pads=[1, 1, 1, 1]), flat,
             helper.make_node("MatMul", ["f", "fw"], ["y"], name="dense")]
    path = tmp_path / "dense.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    g = load_onnx(str(path))
    fc = [lyr for lyr in g.order if lyr.op == "fc"]
    assert len(fc) == 1 and fc[0].out_shape == (1, 10) and fc[0].macs == 512 * 10


def test_a_stale_declared_shape_is_no_error(tmp_path):
    """A file whose value_info or output still says batch 1 after its input was resized (as
    onnx.tools.update_model_dims leaves it) imports at the input's size."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    vi = [helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 3, 4, 4])]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["r"], ["y"])]
    path = tmp_path / "stale.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], value_info=vi),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    assert load_onnx(str(path)).order[-1].out_shape == (8, 3, 4, 4)


def test_a_dim_that_sizes_the_batch_axis_is_the_batch_and_may_not_contradict_batch(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    path = tmp_path / "b.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    g = load_onnx(str(path), dims={"batch": 3})
    assert g.batch == 3 and g.order[0].out_shape == (3, 3, 8, 8)
    assert load_onnx(str(path), batch=3, dims={"batch": 3}).batch == 3
    with pytest.raises(GraphError, match="--batch 2 and --dim batch=3 both size"):
        load_onnx(str(path), batch=2, dims={"batch": 3})


def test_a_whole_tensor_reduction_may_keep_its_size_at_another_batch(tmp_path):
    """x - mean(x) over every axis (a centring): the mean keeps size 1 at any batch, rightly."""
    import numpy as np
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=1), helper.make_node("Sub", ["x", "m"], ["y"])]
    path = tmp_path / "centre.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "m", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]),
              path)
    assert load_onnx(str(path), batch=2).order[-1].out_shape == (2, 8, 4, 4)
    assert np.prod(load_onnx(str(path)).order[-1].out_shape) == 128
