"""ONNX import coverage: Gemm with an activation as B, quantized graphs (QLinear*, Quantize/DequantizeLinear,
integer matmul and conv, com.microsoft contrib ops), LSTM/GRU/RNN, and Einsum products with no summed
axis. Each model is built with onnx.helper, imported under --strict, and its MACs checked against a
count written out by hand; where onnxruntime runs the model, its output shapes are checked too."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autotune.cli import main as cli_main
from autotune.errors import GraphError
from autotune.frontends.onnx_import import load_onnx

F, U8, I8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
MS = "com.microsoft"


# -- helpers -----------------------------------------------------------------------------------------
def _save(path, nodes, inputs, outputs, inits=(), opset: int = 17, ms: bool = False) -> str:
    """A model of `nodes`; inputs/outputs are (name, elem type, shape or None)."""
    g = helper.make_graph(list(nodes), "m", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], initializer=list(inits))
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if ms else [])
    onnx.save(helper.make_model(g, opset_imports=ops), str(path))
    return str(path)


def _init(name: str, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _layer(g, node: str, op: str):
    """The layer of kind `op` that ONNX node `node` became (its layers are named node, node_2, ...)."""
    got = [lyr for lyr in g.order if (lyr.name == node or lyr.name.startswith(node + "_")) and lyr.op == op]
    assert len(got) == 1, [(lyr.name, lyr.op) for lyr in g.order]
    return got[0]


def _ort_shapes(path: str, feeds: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """Output shapes of the model run by onnxruntime (the test skips where it is not installed)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: no runtime cross-check")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [tuple(o.shape) for o in sess.run(None, feeds)]


# -- Gemm with an activation as B -------------------------------------------------------------------
def test_gemm_with_an_activation_b_is_a_matmul(tmp_path):
    """A^T (3 x 5) times B^T (5 x 4), B an activation, C a constant: a matmul of M*N*K MACs."""
    M, K, N = 3, 5, 4
    nodes = [helper.make_node("Relu", ["b_in"], ["b"], name="relu"),
             helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm", transA=1, transB=1, alpha=0.5)]
    path = _save(tmp_path / "gemm.onnx", nodes, [("a", F, [K, M]), ("b_in", F, [N, K])], [("y", F, None)],
                 [_init("c", np.zeros(N))])
    g = load_onnx(path, strict=True)
    assert g.total_macs == M * N * K  # 60
    mm = [lyr for lyr in g.order if lyr.op == "matmul"]
    assert len(mm) == 1 and mm[0].in_shapes == ((M, K), (K, N)) and mm[0].out_shape == (M, N)
    assert [lyr.op for lyr in g.order].count("layout") == 2  # transA and transB
    assert g.shape_of(g.outputs[0]) == (M, N)
    feeds = {"a": np.ones((K, M), np.float32), "b_in": np.ones((N, K), np.float32)}
    assert _ort_shapes(path, feeds) == [(M, N)]


def test_gemm_with_an_activation_c_and_a_constant_a(tmp_path):
    """Plain Gemm of two activations with an activation C; then a constant A times an activation B
    (an fc on B^T, as MatMul with a weight on the left)."""
    M, K, N = 6, 8, 7
    nodes = [helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm")]
    g = load_onnx(_save(tmp_path / "g1.onnx", nodes, [("a", F, [M, K]), ("b", F, [K, N]), ("c", F, [M, N])],
                        [("y", F, None)]), strict=True)
    assert g.total_macs == M * N * K and [lyr.op for lyr in g.order] == ["matmul", "eltwise"]
    nodes = [helper.make_node("Gemm", ["w", "b"], ["y"], name="gemm", transA=1)]
    path = _save(tmp_path / "g2.onnx", nodes, [("b", F, [K, N])], [("y", F, None)], [_init("w", np.zeros((K, M)))])
    g = load_onnx(path, strict=True)
    assert g.total_macs == M * N * K and g.shape_of(g.outputs[0]) == (M, N)
    assert [lyr.op for lyr in g.order] == ["layout", "fc", "layout"]
    assert _ort_shapes(path, {"b": np.ones((K, N), np.float32)}) == [(M, N)]


# -- quantized graphs --------------------------------------------------------------------------------
def _qparams(prefix: str, zp_type=np.uint8) -> tuple[list[str], list]:
    """(scale, zero point) initializer names and tensors."""
    zp = 128 if zp_type == np.uint8 else 0
    return [f"{prefix}_s", f"{prefix}_zp"], [_init(f"{prefix}_s", 0.05), _init(f"{prefix}_zp", zp, zp_type)]


def _qlinear_model(tmp_path) -> str:
    """Quantize -> QLinearConv (3x3, 3 -> 8) -> QLinearAdd (itself) -> QLinearGlobalAveragePool ->
    Reshape -> QLinearMatMul (8 -> 4) -> Dequantize, on a 1x3x8x8 float input."""
    q, qi = _qparams("q")
    inits = qi + [_init("w", np.full((8, 3, 3, 3), 130), np.uint8), _init("bias", np.zeros(8), np.int32),
                  _init("w2", np.full((8, 4), 129), np.uint8), _init("shape", [1, 8], np.int64)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", *q], ["xq"], name="quant"),
        helper.make_node("QLinearConv", ["xq", *q, "w", *q, *q, "bias"], ["c"], name="qconv", pads=[1] * 4,
                         kernel_shape=[3, 3]),
        helper.make_node("QLinearAdd", ["c", *q, "c", *q, *q], ["s"], name="qadd", domain=MS),
        helper.make_node("QLinearGlobalAveragePool", ["s", *q, *q], ["p"], name="qgap", domain=MS,
                         channels_last=0),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat"),
        helper.make_node("QLinearMatMul", ["f", *q, "w2", *q, *q], ["m"], name="qmm"),
        helper.make_node("DequantizeLinear", ["m", *q], ["y"], name="dequant"),
    ]
    return _save(tmp_path / "q.onnx", nodes, [("x", F, [1, 3, 8, 8])], [("y", F, None)], inits, ms=True)


def test_qlinear_model_imports_with_macs_and_int8_bytes(tmp_path):
    path = _qlinear_model(tmp_path)
    g = load_onnx(path, strict=True)
    conv_macs = (1 * 8 * 8 * 8) * (3 * 3 * 3)  # every output element of the 3x3 conv reduces 3 * 9 inputs
    mm_macs = 1 * 4 * 8
    assert g.total_macs == conv_macs + mm_macs == 13856
    by = {lyr.name: lyr for lyr in g.order}
    assert [by[k].op for k in ("quant", "qconv", "qadd", "qgap", "qmm", "dequant")] == \
        ["act", "conv", "eltwise", "gpool", "fc", "act"]
    assert by["qconv"].out_shape == (1, 8, 8, 8) and by["qgap"].out_shape == (1, 8, 1, 1)
    assert g.shape_of(g.outputs[0]) == (1, 4)
    # int8 data is 1 byte an element whatever the datasheet's type (2 bytes here); float stays at it
    conv = by["qconv"]
    assert (conv.attrs.in_elem_bytes, conv.attrs.out_elem_bytes) == (1, 1)
    assert conv.act_bytes(2) == 3 * 64 + 8 * 64 and conv.weight_bytes(2) == 8 * 27 + 8
    assert by["quant"].act_bytes(2) == 3 * 64 * 2 + 3 * 64 * 1  # float in, uint8 out
    assert by["dequant"].act_bytes(2) == 4 * 1 + 4 * 2  # uint8 in, float out
    assert by["qadd"].act_bytes(2) == 2 * 512 + 512 and by["qmm"].weight_bytes(4) == 8 * 4
    assert all(lyr.attrs.in_elem_bytes == 1 for lyr in g.order if lyr.name not in ("quant",))
    assert _ort_shapes(path, {"x": np.ones((1, 3, 8, 8), np.float32)}) == [(1, 4)]


def test_more_quantized_ops(tmp_path):
    """ConvInteger and MatMulInteger (int32 results, 4 bytes), QLinearMul with a constant,
    QLinearAveragePool, QLinearSigmoid, QLinearLeakyRelu, QLinearConcat and a channels_last
    QLinearGlobalAveragePool."""
    q, qi = _qparams("q")
    inits = qi + [_init("w", np.ones((4, 4, 1, 1)), np.uint8), _init("k", np.ones((1, 2, 6, 6)), np.uint8),
                  _init("w2", np.ones((6, 5)), np.uint8), _init("zp", 0, np.uint8)]
    nodes = [
        helper.make_node("QLinearMul", ["x", *q, "k", *q, *q], ["m"], name="qmul", domain=MS),
        helper.make_node("QLinearAveragePool", ["m", *q, *q], ["ap"], name="qavg", domain=MS, kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("QLinearSigmoid", ["ap", *q, *q], ["sg"], name="qsig", domain=MS),
        helper.make_node("QLinearLeakyRelu", ["ap", *q, *q], ["lr"], name="qleaky", domain=MS, alpha=0.1),
        helper.make_node("QLinearConcat", [*q, "sg", *q, "lr", *q], ["cat"], name="qcat", domain=MS, axis=1),
        helper.make_node("ConvInteger", ["cat", "w", "zp", "zp"], ["ci"], name="convint"),
        helper.make_node("QLinearGlobalAveragePool", ["x", *q, *q], ["gl"], name="qgap_nhwc", domain=MS,
                         channels_last=1),  # x read as NHWC (1, 2, 6, 6): 6 channels
        helper.make_node("Reshape", ["gl", "shape"], ["gf"], name="flat"),
        helper.make_node("MatMulInteger", ["gf", "w2", "zp", "zp"], ["mi"], name="mmint"),
    ]
    inits.append(_init("shape", [1, 6], np.int64))
    path = _save(tmp_path / "q2.onnx", nodes, [("x", U8, [1, 2, 6, 6])], [("ci", I32, None), ("mi", I32, None)],
                 inits, ms=True)
    g = load_onnx(path, strict=True)
    conv_macs = (1 * 4 * 3 * 3) * 4  # 1x1 conv, 2 + 2 concatenated channels in, 4 out, on a 3x3 map
    mm_macs = 1 * 5 * 6
    assert g.total_macs == conv_macs + mm_macs == 174
    by = {lyr.name: lyr for lyr in g.order}
    assert by["qavg"].out_shape == (1, 2, 3, 3) and by["qcat"].out_shape == (1, 4, 3, 3)
    assert by["convint"].out_shape == (1, 4, 3, 3) and by["mmint"].out_shape == (1, 5)
    assert (by["convint"].attrs.in_elem_bytes, by["convint"].attrs.out_elem_bytes) == (1, 4)
    assert by["mmint"].act_bytes(2) == 6 * 1 + 5 * 4
    assert _layer(g, "qgap_nhwc", "gpool").in_shape == (1, 6, 2, 6)  # NHWC (1, 2, 6, 6) moved channels-first
    assert g.shape_of("gl") == (1, 1, 1, 6)
    assert sorted(g.shape_of(t) for t in g.outputs) == [(1, 4, 3, 3), (1, 5)]
    assert sorted(_ort_shapes(path, {"x": np.ones((1, 2, 6, 6), np.uint8)})) == [(1, 4, 3, 3), (1, 5)]


def test_contrib_qgemm_softmax_and_quantize(tmp_path):
    """com.microsoft QuantizeLinear -> QGemm (transB, a constant B and C) -> QLinearSoftmax ->
    com.microsoft DequantizeLinear: an fc of M*N*K MACs, the rest element-wise."""
    M, K, N = 4, 16, 10
    q, qi = _qparams("q")
    qs, qsi = _qparams("qs", np.int8)
    inits = qi + qsi + [_init("b", np.ones((N, K)), np.int8), _init("c", np.zeros(N), np.int32)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", *q], ["xq"], name="quant", domain=MS),
        helper.make_node("QGemm", ["xq", *q, "b", "qs_s", "qs_zp", "c", *q], ["g"], name="qgemm", domain=MS,
                         transB=1),
        helper.make_node("QLinearSoftmax", ["g", *q, *q], ["sm"], name="qsoftmax", domain=MS, axis=-1, opset=13),
        helper.make_node("DequantizeLinear", ["sm", *q], ["y"], name="dequant", domain=MS),
    ]
    path = _save(tmp_path / "qg.onnx", nodes, [("x", F, [M, K])], [("y", F, None)], inits, ms=True)
    g = load_onnx(path, strict=True)
    assert g.total_macs == M * N * K  # 640
    assert [lyr.op for lyr in g.order] == ["act", "fc", "softmax", "act"]
    assert g.layers["qgemm"].act_bytes(2) == M * K + M * N and g.layers["dequant"].act_bytes(4) == M * N * (1 + 4)
    assert g.shape_of("y") == (M, N)
    assert _ort_shapes(path, {"x": np.ones((M, K), np.float32)}) == [(M, N)]


# -- recurrent layers ----------------------------------------------------------------------------------
def _recurrent(tmp_path, op: str, seq: int, batch: int, inp: int, hidden: int, direction: str = "forward",
               layout: int = 0, outputs: tuple[str, ...] = ("Y", "Y_h")) -> str:
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    dirs = 2 if direction == "bidirectional" else 1
    inits = [_init("W", np.zeros((dirs, gates * hidden, inp))), _init("R", np.zeros((dirs, gates * hidden, hidden))),
             _init("B", np.zeros((dirs, 2 * gates * hidden)))]
    node = helper.make_node(op, ["X", "W", "R", "B"], list(outputs), name="cell", hidden_size=hidden,
                            direction=direction, layout=layout)
    x = [batch, seq, inp] if layout else [seq, batch, inp]
    return _save(tmp_path / f"{op}.onnx", [node], [("X", F, x)], [(o, F, None) for o in outputs if o], inits)


def _check_recurrent(path, macs: int, ort: bool = True) -> None:
    """One rnn layer of `macs` MACs; the outputs' shapes as onnxruntime gives them (`ort`)."""
    g = load_onnx(path, strict=True)
    assert g.total_macs == macs
    cell = [lyr for lyr in g.order if lyr.op == "rnn"]
    assert len(cell) == 1 and cell[0].macs == macs
    if not ort:
        return
    model = onnx.load(path)
    x = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    want = _ort_shapes(path, {"X": np.ones(x, np.float32)})
    assert [g.shape_of(o.name) for o in model.graph.output] == want


def test_gru(tmp_path):
    seq, batch, inp, hidden = 5, 2, 3, 4
    path = _recurrent(tmp_path, "GRU", seq, batch, inp, hidden)
    _check_recurrent(path, seq * batch * 3 * hidden * (inp + hidden))  # 840
    g = load_onnx(path, strict=True)
    assert g.shape_of("Y") == (seq, 1, batch, hidden) and g.shape_of("Y_h") == (1, batch, hidden)
    cell = g.layers["cell"]
    assert cell.in_channels == inp and cell.out_channels == hidden
    assert cell.weight_elems == 3 * hidden * (inp + hidden) + 2 * 3 * hidden


@pytest.mark.parametrize("direction,dirs", [("forward", 1), ("bidirectional", 2), ("reverse", 1)])
def test_lstm(tmp_path, direction, dirs):
    seq, batch, inp, hidden = 7, 3, 10, 6
    path = _recurrent(tmp_path, "LSTM", seq, batch, inp, hidden, direction, outputs=("Y", "Y_h", "Y_c"))
    macs = dirs * seq * batch * 4 * hidden * (inp + hidden)  # forward: 8064, bidirectional: 16128
    _check_recurrent(path, macs)
    g = load_onnx(path, strict=True)
    assert g.shape_of("Y") == (seq, dirs, batch, hidden) and g.shape_of("Y_c") == (dirs, batch, hidden)


def test_lstm_batch_first_and_only_the_final_state(tmp_path):
    """layout=1: X is (batch, seq, input), Y (batch, seq, dirs, hidden); an LSTM whose only output is Y_h."""
    seq, batch, inp, hidden = 4, 2, 5, 3
    path = _recurrent(tmp_path, "LSTM", seq, batch, inp, hidden, "bidirectional", layout=1,
                      outputs=("Y", "Y_h"))
    # onnxruntime refuses layout=1: the shapes are checked against the ONNX spec below instead
    _check_recurrent(path, 2 * seq * batch * 4 * hidden * (inp + hidden), ort=False)  # 1536
    g = load_onnx(path, strict=True)
    assert g.shape_of("Y") == (batch, seq, 2, hidden) and g.shape_of("Y_h") == (batch, 2, hidden)
    path = _recurrent(tmp_path, "LSTM", seq, batch, inp, hidden, outputs=("", "Y_h"))
    g = load_onnx(path, strict=True)
    assert g.total_macs == seq * batch * 4 * hidden * (inp + hidden) and g.outputs == ["Y_h"]


def test_rnn(tmp_path):
    seq, batch, inp, hidden = 9, 1, 16, 8
    path = _recurrent(tmp_path, "RNN", seq, batch, inp, hidden)
    _check_recurrent(path, seq * batch * 1 * hidden * (inp + hidden))  # 1728


def test_recurrent_with_a_wrong_weight_is_one_clear_error(tmp_path, capsys):
    node = helper.make_node("GRU", ["X", "W", "R"], ["Y"], name="cell", hidden_size=4)
    path = _save(tmp_path / "bad.onnx", [node], [("X", F, [5, 2, 3])], [("Y", F, None)],
                 [_init("W", np.zeros((1, 12, 7))), _init("R", np.zeros((1, 12, 4)))])
    with pytest.raises(GraphError, match=r"bad\.onnx: .*cell.*GRU.*do not fit") as info:
        load_onnx(path)
    assert "\n" not in str(info.value)
    assert cli_main(["inspect", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


# -- Einsum products ------------------------------------------------------------------------------------
def test_einsum_outer_product_is_elementwise(tmp_path):
    """blh,bln->blhn (a state-space model's outer product): an element-wise multiply of (b, L, h, 1) by
    (b, L, 1, n), no MACs; a batched element-wise product and a transposed one likewise."""
    b, L, h, n = 2, 3, 4, 5
    nodes = [helper.make_node("Einsum", ["u", "v"], ["o"], name="outer", equation="blh,bln->blhn"),
             helper.make_node("Einsum", ["u", "u"], ["sq"], name="square", equation="blh,blh->blh"),
             helper.make_node("Einsum", ["u", "w"], ["t"], name="transposed", equation="blh,hl->bhl")]
    path = _save(tmp_path / "e.onnx", nodes, [("u", F, [b, L, h]), ("v", F, [b, L, n]), ("w", F, [h, L])],
                 [("o", F, None), ("sq", F, None), ("t", F, None)])
    g = load_onnx(path, strict=True)
    assert g.total_macs == 0
    outer = _layer(g, "outer", "eltwise")
    assert outer.out_shape == g.shape_of("o") == (b, L, h, n) and outer.in_shapes == ((b, L, h, 1), (b, L, 1, n))
    assert outer.vector_ops == b * L * h * n  # one multiply per output element
    assert [lyr.op for lyr in g.order if lyr.name.startswith("outer")] == ["reshape", "reshape", "eltwise"]
    assert _layer(g, "square", "eltwise").in_shapes == ((b, L, h), (b, L, h))
    assert _layer(g, "transposed", "eltwise").in_shapes == ((b, h, L), (h, L)) and g.shape_of("t") == (b, h, L)
    assert [lyr.op for lyr in g.order if lyr.name.startswith("transposed")] == ["layout", "eltwise"]
    feeds = {"u": np.ones((b, L, h), np.float32), "v": np.ones((b, L, n), np.float32),
             "w": np.ones((h, L), np.float32)}
    assert [g.shape_of(t) for t in ("o", "sq", "t")] == _ort_shapes(path, feeds)


def test_einsum_contractions_still_map(tmp_path):
    nodes = [helper.make_node("Einsum", ["q", "k"], ["s"], name="qk", equation="bhid,bhjd->bhij")]
    g = load_onnx(_save(tmp_path / "c.onnx", nodes, [("q", F, [2, 4, 10, 16]), ("k", F, [2, 4, 12, 16])],
                        [("s", F, None)]), strict=True)
    assert g.total_macs == 2 * 4 * 10 * 12 * 16


# -- through the command line ------------------------------------------------------------------------
def test_cli_inspect_strict_shows_the_quantized_model(tmp_path, capsys):
    path = _qlinear_model(tmp_path)
    out_json = tmp_path / "q.json"
    assert cli_main(["inspect", path, "--strict", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "qconv" in out and "13,824" in out and "qmm" in out
    doc = json.loads(out_json.read_text())
    assert doc["total_macs"] == 13856
    assert math.prod(next(r for r in doc["layers"] if r["name"] == "qgap")["output_shape"]) == 8


@pytest.mark.parametrize("layout", [0, 1])
def test_batch_of_a_recurrent_model_scales_its_batch_axis_not_its_sequence(tmp_path, layout):
    """X is [seq, batch, input] (layout 0) or [batch, seq, input]: --batch scales the batch axis, so
    the MACs scale by the batch and the sequence length stays."""
    seq, batch, inp, hidden = 7, 3, 16, 6
    path = _recurrent(tmp_path, "LSTM", seq, batch, inp, hidden, layout=layout)
    base = seq * batch * 4 * hidden * (inp + hidden)
    assert load_onnx(path).total_macs == base
    g = load_onnx(path, batch=6)
    assert g.batch == 6 and g.total_macs == 2 * base
    assert g.shape_of("Y") == ((6, seq, 1, hidden) if layout else (seq, 1, 6, hidden))


# -- a constant operand that broadcasts the activation up ---------------------------------------------
@pytest.mark.parametrize("op, dtype, const", [
    ("And", TensorProto.BOOL, np.tril(np.ones((1, 1, 6, 6), bool))),  # GPT-2's causal mask And-ed
    ("Or", TensorProto.BOOL, np.eye(6, dtype=bool)[None, None]),
    ("Where", F, None),
])
def test_a_constant_operand_that_broadcasts_any_eltwise_op_up(tmp_path, op, dtype, const):
    """An attention mask (1, 1, 1, 6) combined with a constant (1, 1, 6, 6) gives (1, 1, 6, 6): an
    eltwise layer after an expand, not an opaque layer from a shape rule mismatch."""
    if op == "Where":
        inits = [numpy_helper.from_array(np.tril(np.ones((1, 1, 6, 6), bool)), "c"), _init("neg", -1e9)]
        nodes = [helper.make_node("Where", ["c", "m", "neg"], ["y"], name="w")]
    else:
        inits = [numpy_helper.from_array(const, "c")]
        nodes = [helper.make_node(op, ["c", "m"], ["y"], name="w")]
    path = _save(tmp_path / "mask.onnx", nodes, [("m", dtype, [1, 1, 1, 6])], [("y", dtype, None)], inits)
    g = load_onnx(path, strict=True)
    assert _layer(g, "w", "eltwise").out_shape == (1, 1, 6, 6)
    feed = np.ones((1, 1, 1, 6), bool if dtype == TensorProto.BOOL else np.float32)
    assert _ort_shapes(path, {"m": feed}) == [(1, 1, 6, 6)]


# -- opset 23's Attention and RotaryEmbedding -----------------------------------------------------------
@pytest.mark.parametrize("layout, hq, hkv, mask, causal", [
    ("4d", 4, 4, "float", 0),  # torch's dynamo exporter at opset 23 (BERT, ViT)
    ("4d", 4, 2, "bool", 0),   # grouped-query attention (Llama)
    ("3d", 4, 2, None, 1),     # heads in the last axis, a causal mask of its own
])
def test_opset_23_attention_is_the_spelled_out_attention(tmp_path, layout, hq, hkv, mask, causal):
    """Q @ K^T and P @ V: 2 * B * Hq * Sq * Skv * D MACs, a softmax, and the output ONNX Runtime gives."""
    B, S, D = 1, 6, 8
    shape = {"q": [B, hq, S, D], "k": [B, hkv, S, D], "v": [B, hkv, S, D]} if layout == "4d" else \
        {"q": [B, S, hq * D], "k": [B, S, hkv * D], "v": [B, S, hkv * D]}
    ins = [(t, F, s) for t, s in shape.items()]
    feeds = {t: np.ones(s, np.float32) for t, s in shape.items()}
    names = ["q", "k", "v"]
    if mask:
        mt = TensorProto.BOOL if mask == "bool" else F
        ins.append(("m", mt, [1, 1, S, S]))
        feeds["m"] = np.ones((1, 1, S, S), bool if mask == "bool" else np.float32)
        names.append("m")
    heads = {"q_num_heads": hq, "kv_num_heads": hkv} if layout == "3d" else {}
    nodes = [helper.make_node("Attention", names, ["y"], name="attn", is_causal=causal, **heads)]
    path = _save(tmp_path / "attn.onnx", nodes, ins, [("y", F, None)], opset=23)
    g = load_onnx(path, strict=True)
    mm = [lyr for lyr in g.order if lyr.op == "matmul"]
    assert len(mm) == 2 and sum(lyr.macs for lyr in mm) == 2 * B * hq * S * S * D
    assert [lyr.op for lyr in g.order].count("softmax") == 1
    assert g.order[-1].out_shape == _ort_shapes(path, feeds)[0]


def test_rotary_embedding_is_one_eltwise_pass(tmp_path):
    B, H, S, D = 1, 2, 6, 8
    nodes = [helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], name="rope")]
    path = _save(tmp_path / "rope.onnx", nodes, [("x", F, [B, H, S, D]), ("pos", TensorProto.INT64, [B, S])],
                 [("y", F, None)], [_init("cos", np.ones((S, D // 2))), _init("sin", np.zeros((S, D // 2)))],
                 opset=23)
    g = load_onnx(path, strict=True)
    assert [(lyr.op, lyr.out_shape) for lyr in g.order] == [("eltwise", (B, H, S, D))]


@pytest.mark.parametrize("shape", [[1, 8, 4, 6, 6], [1, 8, 20]])
def test_a_global_pool_over_a_video_or_audio_map(tmp_path, shape):
    """GlobalAveragePool over a 3-D (video) or 1-D (audio) map: the input read once, (1, 8, 1, ...) out."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")]
    path = _save(tmp_path / "gap.onnx", nodes, [("x", F, shape)], [("y", F, None)])
    g = load_onnx(path, strict=True)
    want = _ort_shapes(path, {"x": np.ones(shape, np.float32)})[0]
    assert g.order[-1].out_shape == want == (1, 8) + (1,) * (len(shape) - 2)
    assert g.order[0].in_shapes[0] == tuple(shape)


def test_local_functions_are_inlined_unless_a_converter_knows_them(tmp_path):
    """torch's export_modules_as_functions: a module is a function the file defines; its body is what
    plans (two conv blocks here). A local function named like a known op (Gelu) stays that op."""
    block = helper.make_function("mods", "Block", ["x", "w"], ["y"], [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"])], [helper.make_opsetid("", 17)])
    gelu = helper.make_function("mods", "Gelu", ["x"], ["y"], [
        helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
        [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Block", ["x", "w1"], ["a"], name="b1", domain="mods"),
             helper.make_node("Block", ["a", "w2"], ["b"], name="b2", domain="mods"),
             helper.make_node("Gelu", ["b"], ["y"], name="g", domain="mods")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", F, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", F, None)],
                          initializer=[_init("w1", np.ones((4, 4, 3, 3))), _init("w2", np.ones((4, 4, 3, 3)))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("mods", 1)],
                              functions=[block, gelu])
    onnx.save(model, str(tmp_path / "f.onnx"))
    graph = load_onnx(str(tmp_path / "f.onnx"), strict=True)
    assert [lyr.op for lyr in graph.order] == ["conv", "conv", "act"]
    assert sum(lyr.macs for lyr in graph.order) == 2 * 4 * 4 * 9 * 64
    assert _ort_shapes(str(tmp_path / "f.onnx"), {"x": np.ones((1, 4, 8, 8), np.float32)}) == [(1, 4, 8, 8)]


def test_dynamic_quantization_of_onnx_runtime(tmp_path):
    """quantize_dynamic's pattern: DynamicQuantizeLinear, MatMulInteger, the scales multiplied at run
    time. The matmul is an int8 fc of M*K*N MACs; the run-time scale is a scalar, no layer."""
    M, K, N = 4, 16, 8
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "qs", "qz"], name="dq"),
             helper.make_node("MatMulInteger", ["q", "w", "qz", "wz"], ["acc"], name="mm"),
             helper.make_node("Cast", ["acc"], ["accf"], to=F),
             helper.make_node("Mul", ["qs", "ws"], ["scale"]),
             helper.make_node("Mul", ["accf", "scale"], ["y"], name="rescale")]
    inits = [_init("w", np.ones((K, N)), np.uint8), _init("wz", 0, np.uint8), _init("ws", 0.1)]
    path = _save(tmp_path / "dyn.onnx", nodes, [("x", F, [1, M, K])], [("y", F, None)], inits)
    g = load_onnx(path, strict=True)
    fc = _layer(g, "mm", "fc")
    assert fc.macs == M * K * N and fc.attrs.in_elem_bytes == 1
    assert g.order[-1].out_shape == _ort_shapes(path, {"x": np.ones((1, M, K), np.float32)})[0] == (1, M, N)


def test_opset_9_upsample_with_scales_from_the_shape(tmp_path):
    """torch's opset-9 export of F.interpolate(size=...): the scales are the target size divided by a
    Slice (bounds as attributes before opset 10) of the input's Shape; folded, they size the output."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s"], ["hw"], starts=[2], ends=[4]),
             helper.make_node("Cast", ["hw"], ["hwf"], to=F),
             helper.make_node("Div", ["size", "hwf"], ["sc"]),
             helper.make_node("Concat", ["ones", "sc"], ["scales"], axis=0),
             helper.make_node("Upsample", ["x", "scales"], ["y"], name="up", mode="linear")]
    path = _save(tmp_path / "up9.onnx", nodes, [("x", F, [1, 2, 5, 5])], [("y", F, None)],
                 [_init("size", [10, 10]), _init("ones", [1, 1])], opset=9)
    g = load_onnx(path, strict=True)
    assert _layer(g, "up", "resize").out_shape == (1, 2, 10, 10)


def test_a_scalar_input_is_a_run_time_constant(tmp_path):
    """A rank-0 graph input (a diffusion timestep) scales a conv's output: one conv and one eltwise
    with a constant-like operand, not an internal shape error."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Mul", ["c", "t"], ["y"], name="scale")]
    path = _save(tmp_path / "t.onnx", nodes, [("x", F, [1, 3, 8, 8]), ("t", F, [])], [("y", F, None)],
                 [_init("w", np.ones((4, 3, 1, 1)))])
    g = load_onnx(path, strict=True)
    assert [(lyr.op, lyr.out_shape) for lyr in g.order] == [("conv", (1, 4, 8, 8)), ("eltwise", (1, 4, 8, 8))]
    assert list(g.inputs) == ["x"]


@pytest.mark.parametrize("opset", [17, 18])  # axes an attribute, then an input
def test_a_reduction_of_constants_folds_into_the_sizes_it_computes(tmp_path, opset):
    """torchvision's detection transform: the target size is a ReduceMax/ReduceMin of constants."""
    axes = {"axes": [0]} if opset < 18 else {}
    extra = [] if opset < 18 else ["ax"]
    nodes = [helper.make_node("ReduceMax", ["c"] + extra, ["m"], keepdims=0, **axes),
             helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
             helper.make_node("Concat", ["nc", "mi"], ["sizes"], axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="rs", mode="nearest")]
    inits = [_init("c", [[8, 6], [4, 8]]), _init("nc", [1, 2], np.int64), _init("ax", [0], np.int64)]
    path = _save(tmp_path / "r.onnx", nodes, [("x", F, [1, 2, 4, 4])], [("y", F, None)], inits, opset=opset)
    assert _layer(load_onnx(path, strict=True), "rs", "resize").out_shape == (1, 2, 8, 8)


def test_a_qdq_models_quantize_dequantize_pairs_fold_into_int8_layers(tmp_path):
    """ONNX Runtime's QDQ format: every activation passes Quantize -> Dequantize, every weight is a
    Dequantize of int8. The pairs after a layer fold into it (it writes int8, its readers read int8);
    the network input's pair, which no layer makes, and the output's Dequantize stay."""
    q = lambda x, y: helper.make_node("QuantizeLinear", [x, "s", "z"], [y])  # noqa: E731
    dq = lambda x, y, s="s", z="z": helper.make_node("DequantizeLinear", [x, s, z], [y])  # noqa: E731
    nodes = [q("x", "xq"), dq("xq", "xd"), dq("w1q", "w1", "ws", "wz"), dq("w2q", "w2", "ws", "wz"),
             helper.make_node("Conv", ["xd", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]), q("r1", "r1q"), dq("r1q", "r1d"),
             helper.make_node("Conv", ["r1d", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             q("c2", "c2q"), dq("c2q", "y")]
    inits = [_init("s", 0.1), _init("z", 0, np.uint8), _init("ws", 0.05), _init("wz", 0, np.int8),
             _init("w1q", np.ones((8, 4, 3, 3)), np.int8), _init("w2q", np.ones((8, 8, 3, 3)), np.int8)]
    path = _save(tmp_path / "qdq.onnx", nodes, [("x", F, [1, 4, 6, 6])], [("y", F, None)], inits, opset=13)
    g = load_onnx(path, strict=True)
    assert [(lyr.op, lyr.attrs.mode) for lyr in g.order] == [
        ("act", "quantize"), ("act", "dequantize"), ("conv", ""), ("conv", ""), ("act", "dequantize")]
    c1, c2 = g.order[2], g.order[3]
    assert (c1.attrs.act, c1.attrs.out_elem_bytes) == ("relu", 1)
    assert (c2.attrs.in_elem_bytes, c2.attrs.out_elem_bytes) == (1, 1)
    assert g.total_macs == 36 * 8 * 4 * 9 + 36 * 8 * 8 * 9
    assert _ort_shapes(path, {"x": np.ones((1, 4, 6, 6), np.float32)}) == [(1, 8, 6, 6)]


def test_a_qdq_silu_folds_into_its_conv_as_in_the_float_model(tmp_path):
    """EfficientNet in QDQ form: conv -> Q -> DQ -> Sigmoid -> Q -> DQ -> Mul(x, sigmoid) -> Q -> DQ.
    The SiLU is one activation and an epilogue of its conv, as in the float model."""
    q = lambda x, y: helper.make_node("QuantizeLinear", [x, "s", "z"], [y])  # noqa: E731
    dq = lambda x, y, s="s", z="z": helper.make_node("DequantizeLinear", [x, s, z], [y])  # noqa: E731
    nodes = [dq("wq", "w", "ws", "wz"), helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             q("c", "cq"), dq("cq", "cd"), helper.make_node("Sigmoid", ["cd"], ["sg"]), q("sg", "sgq"),
             dq("sgq", "sgd"), helper.make_node("Mul", ["cd", "sgd"], ["m"]), q("m", "mq"), dq("mq", "y")]
    inits = [_init("s", 0.1), _init("z", 0, np.uint8), _init("ws", 0.05), _init("wz", 0, np.int8),
             _init("wq", np.ones((8, 4, 3, 3)), np.int8)]
    path = _save(tmp_path / "silu.onnx", nodes, [("x", F, [1, 4, 6, 6])], [("y", F, None)], inits, opset=13)
    g = load_onnx(path, strict=True)
    assert [(lyr.op, lyr.attrs.act or lyr.attrs.mode, lyr.attrs.out_elem_bytes) for lyr in g.order] == [
        ("conv", "silu", 1), ("act", "dequantize", 0)]  # the graph's float output: a dequantize pass
    assert _ort_shapes(path, {"x": np.ones((1, 4, 6, 6), np.float32)}) == [(1, 8, 6, 6)]


@pytest.mark.parametrize("tail, want", [
    ("relu_out", [("conv", "relu", 0)]),  # Conv -> Q -> DQ -> Relu -> output: relu's output is float
    ("dq_out", [("conv", "", 1), ("act", "dequantize", 0)]),  # the Dequantize output is the graph's
])
def test_a_folded_qdq_pair_never_leaves_a_float_tensor_marked_int8(tmp_path, tail, want):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"])]
    out = "cd"
    if tail == "relu_out":
        nodes.append(helper.make_node("Relu", ["cd"], ["r"]))
        out = "r"
    inits = [_init("s", 0.1), _init("z", 0, np.uint8), _init("w", np.ones((8, 4, 3, 3)))]
    path = _save(tmp_path / "q.onnx", nodes, [("x", F, [1, 4, 6, 6])], [(out, F, None)], inits, opset=13)
    g = load_onnx(path, strict=True)
    assert [(lyr.op, lyr.attrs.act or lyr.attrs.mode, lyr.attrs.out_elem_bytes) for lyr in g.order] == want


def test_attention_that_starts_a_kv_cache_and_one_that_reads_it(tmp_path):
    """A prefill export also outputs present_key/value: with no past they are K and V. A decoding
    step reads past_key/value: one clear error."""
    B, H, S, D = 1, 2, 4, 8
    ins = [(t, F, [B, H, S, D]) for t in ("q", "k", "v")]
    nodes = [helper.make_node("Attention", ["q", "k", "v"], ["y", "pk", "pv"], name="attn")]
    path = _save(tmp_path / "prefill.onnx", nodes, ins, [("y", F, None), ("pk", F, None), ("pv", F, None)], opset=23)
    g = load_onnx(path, strict=True)
    assert sum(lyr.macs for lyr in g.order) == 2 * B * H * S * S * D
    nodes = [helper.make_node("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "nk", "nv"], name="attn")]
    path = _save(tmp_path / "decode.onnx", nodes, ins + [("pk", F, [B, H, 3, D]), ("pv", F, [B, H, 3, D])],
                 [("y", F, None)], opset=23)
    with pytest.raises(GraphError, match="KV cache"):
        load_onnx(path)


def test_a_reduction_to_a_scalar_on_the_activation_path(tmp_path):
    """x / max(x) over every axis (keepdims 0: a rank-0 result): the pass over x, then the scalar as a
    (1, 1, 1, 1) layout that broadcasts; at another batch the scalar rightly keeps its size."""
    nodes = [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0), helper.make_node("Div", ["x", "m"], ["y"])]
    path = _save(tmp_path / "norm.onnx", nodes, [("x", F, [1, 8, 4, 4])], [("y", F, None)])
    for batch in (1, 4):
        g = load_onnx(path, batch=batch, strict=True)
        assert [(lyr.op, lyr.out_shape) for lyr in g.order] == [
            ("act", (batch, 8, 4, 4)), ("layout", (1, 1, 1, 1)), ("eltwise", (batch, 8, 4, 4))]


# -- data-dependent shapes: the host's tail ------------------------------------------------------------
def _detector_tail(tmp_path, k_from_data: bool = False) -> str:
    """conv -> relu -> (score = conv); NonZero(score) and what reads it (a GatherND of the features, a
    TopK whose k is a count of boxes) are the host's post-processing."""
    I64 = TensorProto.INT64
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["score"], name="head", kernel_shape=[1, 1])]
    if k_from_data:  # k = how many scores are positive: TopK itself is the first data-dependent shape
        nodes += [helper.make_node("Greater", ["score", "zero"], ["pos"], name="gt"),
                  helper.make_node("Cast", ["pos"], ["posf"], name="cast", to=I64),
                  helper.make_node("ReduceSum", ["posf"], ["k"], name="count", keepdims=1),
                  helper.make_node("Reshape", ["score", "flat"], ["s1"], name="flatten"),
                  helper.make_node("TopK", ["s1", "k"], ["top", "idx"], name="topk")]
        out = "top"
    else:
        nodes += [helper.make_node("NonZero", ["score"], ["nz"], name="nonzero"),
                  helper.make_node("Transpose", ["nz"], ["nzt"], name="tr", perm=[1, 0]),
                  helper.make_node("GatherND", ["r", "nzt"], ["boxes"], name="gather")]
        out = "boxes"
    inits = [_init("w1", np.zeros((8, 3, 3, 3))), _init("w2", np.zeros((1, 8, 1, 1))), _init("zero", 0.0),
             _init("flat", [1, -1], np.int64)]
    return _save(tmp_path / "det.onnx", nodes, [("x", F, [1, 3, 16, 16])], [(out, F, None)], inits)


@pytest.mark.parametrize("k_from_data", [False, True])
def test_a_data_dependent_shape_leaves_the_rest_to_the_host(tmp_path, k_from_data):
    """The backbone is planned; the nodes from the first data-dependent shape on are named in one
    warning and leave the graph, whose outputs become the tensors they read; strict mode refuses."""
    path = _detector_tail(tmp_path, k_from_data)
    root = "topk' (TopK)" if k_from_data else "nonzero' (NonZero)"
    with pytest.warns(UserWarning, match=rf"from node '{re.escape(root)} on have shapes that depend on the data"):
        g = load_onnx(path)
    assert [lyr.op for lyr in g.order][:2] == ["conv", "conv"]
    assert sum(lyr.macs for lyr in g.order) == 16 * 16 * (8 * 27 + 8)
    want = {"s1", "k"} if k_from_data else {"r", "score"}  # what the host reads from the accelerator
    assert want <= set(g.outputs)
    with pytest.warns(UserWarning):
        assert load_onnx(path, batch=4).total_macs == 4 * g.total_macs
    with pytest.raises(GraphError, match=rf"{re.escape(root)}: its output's shape depends on the data.*strict"):
        load_onnx(path, strict=True)


def test_a_data_dependent_shape_on_the_input_leaves_nothing_to_plan(tmp_path, capsys):
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
             helper.make_node("Cast", ["nz"], ["y"], name="cast", to=F)]
    path = _save(tmp_path / "nz.onnx", nodes, [("x", F, [1, 3, 4, 4])], [("y", F, None)])
    with pytest.raises(GraphError, match="nothing is left to plan"):
        load_onnx(path)
    assert cli_main(["inspect", path]) != 0
    err = capsys.readouterr().err
    assert "nothing is left to plan" in err and "Traceback" not in err


def test_the_host_tail_counts_subgraph_reads_skips_inputs_and_names_its_heavy_ops(tmp_path):
    """An If whose branch reads a host tensor is the host's; a graph input the host reads is no
    output of the plan; a k given as a run-time scalar input sizes TopK from the data; a Gemm left
    to the host is named in the warning."""
    I64 = TensorProto.INT64
    branch = helper.make_graph([helper.make_node("Identity", ["nz"], ["b"])], "then", [],
                               [helper.make_tensor_value_info("b", I64, None)])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("NonZero", ["c"], ["nz"], name="nonzero"),
             helper.make_node("If", ["cond"], ["picked"], name="if", then_branch=branch, else_branch=branch),
             helper.make_node("Cast", ["picked"], ["pf"], name="cast", to=F),
             helper.make_node("Gemm", ["pf", "wg"], ["box"], name="box_head", transB=1),
             helper.make_node("Reshape", ["kin", "one"], ["k1"], name="k1"),
             helper.make_node("TopK", ["flat", "k1"], ["v", "i"], name="topk"),
             helper.make_node("Reshape", ["c", "flat_to"], ["flat"], name="flatten"),
             helper.make_node("Add", ["c", "thr"], ["side"], name="side")]
    inits = [_init("w1", np.zeros((4, 3, 1, 1))), _init("one", [1], np.int64),
             _init("flat_to", [1, -1], np.int64), _init("wg", np.zeros((8, 4)))]
    path = _save(tmp_path / "h.onnx", nodes, [("x", F, [1, 3, 8, 8]), ("kin", I64, []), ("thr", F, [1]),
                                              ("cond", TensorProto.BOOL, [])],  # a run-time condition: no branch known
                 [("box", F, None), ("v", F, None), ("side", F, None)], inits)
    with pytest.warns(UserWarning, match=r"5 nodes from node 'nonzero' \(NonZero\) and 1 other data-dependent "
                                         r"node on .*among them Gemm x1 \(the plan ends at the 2 tensors they read\)"):
        g = load_onnx(path)
    assert [lyr.name for lyr in g.order if lyr.op == "conv"] == ["conv"]
    assert set(g.outputs) == {"c", "flat", "side"}  # the If went with NonZero; kin is an input, not an output


def test_a_selection_over_the_batch_axis_keeps_its_size_at_another_batch(tmp_path):
    nodes = [helper.make_node("ArgMax", ["x"], ["y"], name="sel", axis=0, keepdims=1)]
    path = _save(tmp_path / "a.onnx", nodes, [("x", F, [1, 8, 16])], [("y", TensorProto.INT64, None)])
    g = load_onnx(path, batch=4, strict=True)
    assert [lyr.out_shape for lyr in g.order] == [(4, 8, 16), (1, 8, 16)]


def test_a_comparison_of_a_scalar_reduction(tmp_path):
    """max(conv(x)) > 0 over every axis (keepdims 0, a rank-0 result): the comparison is an eltwise
    layer on the (1, 1, 1, 1) scalar, not an internal error or an opaque layer."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("ReduceMax", ["c"], ["m"], name="mx", keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["y"], name="gt")]
    path = _save(tmp_path / "s.onnx", nodes, [("x", F, [1, 3, 8, 8])], [("y", TensorProto.BOOL, None)],
                 [_init("w", np.zeros((4, 3, 1, 1))), _init("zero", 0.0)])
    g = load_onnx(path, strict=True)
    assert [(lyr.op, lyr.out_shape) for lyr in g.order][-1] == ("eltwise", (1, 1, 1, 1))


def test_a_batched_nms_in_an_if_goes_to_the_host_with_what_its_body_reads(tmp_path):
    """torchvision's batched NMS: If(no boxes) {empty} else {NonMaxSuppression(boxes, scores)}, the
    condition a constant of shapes, the body reading the boxes from outside. The condition folds, so
    the If is its else branch; the NMS's output size is the data's: it and the Gather of the kept
    boxes go to the host, and the boxes and scores it reads are the plan's outputs."""
    I64 = TensorProto.INT64
    empty = helper.make_graph([helper.make_node("Constant", [], ["k_t"], value=numpy_helper.from_array(
        np.zeros((0,), np.int64)))], "then", [], [helper.make_tensor_value_info("k_t", I64, None)])
    nms = helper.make_graph([helper.make_node("NonMaxSuppression", ["bx", "sc", "maxo", "iou"], ["sel"]),
                             helper.make_node("Gather", ["sel", "two"], ["k_e"], axis=1)], "else", [],
                            [helper.make_tensor_value_info("k_e", I64, None)])
    nodes = [helper.make_node("Conv", ["x", "wb"], ["cb"], name="convb", kernel_shape=[1, 1]),
             helper.make_node("Reshape", ["cb", "s1"], ["bx"], name="rb"),
             helper.make_node("Conv", ["x", "ws"], ["cs"], name="convs", kernel_shape=[1, 1]),
             helper.make_node("Reshape", ["cs", "s2"], ["sc"], name="rs"),
             helper.make_node("Size", ["bx"], ["nb"], name="size"),
             helper.make_node("Equal", ["nb", "zero"], ["none"], name="eq"),
             helper.make_node("If", ["none"], ["keep"], name="if", then_branch=empty, else_branch=nms),
             helper.make_node("Reshape", ["bx", "s3"], ["b2"], name="rb2"),
             helper.make_node("Gather", ["b2", "keep"], ["kept"], name="keep_boxes", axis=0),
             helper.make_node("Conv", ["x", "wo"], ["other"], name="convo", kernel_shape=[1, 1])]
    inits = [_init("wb", np.zeros((4, 3, 1, 1))), _init("ws", np.zeros((1, 3, 1, 1))),
             _init("wo", np.zeros((5, 3, 1, 1))), _init("s1", [1, 64, 4], np.int64),
             _init("s2", [1, 1, 64], np.int64), _init("s3", [64, 4], np.int64), _init("maxo", [10], np.int64),
             _init("iou", [0.5]), _init("zero", 0, np.int64), _init("two", 2, np.int64)]
    path = _save(tmp_path / "nms.onnx", nodes, [("x", F, [1, 3, 8, 8])], [("kept", F, None), ("other", F, None)],
                 inits)
    with pytest.warns(UserWarning, match=r"4 nodes from node 'if/NonMaxSuppression' \(NonMaxSuppression\) on "
                                         r".*the 3 tensors they read"):
        g = load_onnx(path)
    assert {lyr.name for lyr in g.order if lyr.op == "conv"} == {"convb", "convs", "convo"}
    assert set(g.outputs) == {"other", "bx", "sc", "b2"}
    with pytest.raises(GraphError, match=r"'if/NonMaxSuppression' \(NonMaxSuppression\): its output's shape "
                                         "depends on the data"):
        load_onnx(path, strict=True)


def _loop_model(tmp_path, kind: str) -> str:
    """conv -> relu, then a Loop whose scan output stacks relu once an iteration: run as many times
    as the data says (`count`: M = the count of positive activations), or a while loop as torch
    exports one (`while`: M = INT64_MAX, the body computing its exit from the activations)."""
    I64, B = TensorProto.INT64, TensorProto.BOOL
    step = [helper.make_node("Identity", ["r"], ["step"])]
    if kind == "while":
        step += [helper.make_node("Greater", ["r", "zero"], ["pb"]), helper.make_node("Cast", ["pb"], ["pi"], to=I64),
                 helper.make_node("ReduceSum", ["pi"], ["cnt"], keepdims=0),
                 helper.make_node("Less", ["i", "cnt"], ["cout"])]
    else:
        step.append(helper.make_node("Identity", ["cin"], ["cout"]))
    body = helper.make_graph(step, "body", [helper.make_tensor_value_info("i", I64, []),
                                            helper.make_tensor_value_info("cin", B, [])],
                             [helper.make_tensor_value_info("cout", B, []),
                              helper.make_tensor_value_info("step", F, None)])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu")]
    inits = [_init("w1", np.zeros((4, 3, 1, 1))), _init("zero", 0.0), _init("go", True, np.bool_)]
    if kind == "count":
        nodes += [helper.make_node("Greater", ["r", "zero"], ["pos"], name="gt"),
                  helper.make_node("Cast", ["pos"], ["posi"], name="cast", to=I64),
                  helper.make_node("ReduceSum", ["posi"], ["m"], name="count", keepdims=0)]
    else:
        inits.append(_init("m", np.iinfo(np.int64).max, np.int64))
    nodes.append(helper.make_node("Loop", ["m", "go"], ["steps"], name="loop", body=body))
    return _save(tmp_path / f"{kind}.onnx", nodes, [("x", F, [1, 3, 8, 8])], [("steps", F, None)], inits)


@pytest.mark.parametrize("kind", ["count", "while"])
def test_a_loop_run_as_often_as_the_data_says_goes_to_the_host(tmp_path, kind):
    """A Loop whose trip count is computed from activations, or a while loop whose body computes
    its exit from them, with no data-dependent op in its body: its scan output's length is the
    data's, so it goes to the host (both used to stop the import at 'shape unknown')."""
    path = _loop_model(tmp_path, kind)
    with pytest.warns(UserWarning, match=r"from node 'loop' \(Loop\) on have shapes or trip counts that depend"):
        g = load_onnx(path)
    assert [lyr.name for lyr in g.order if lyr.op == "conv"] == ["conv"]
    assert {"r"} | ({"m"} if kind == "count" else set()) <= set(g.outputs)
    with pytest.raises(GraphError, match=r"'loop' \(Loop\): its trip count or output's shape depends on the data"):
        load_onnx(path, strict=True)


@pytest.mark.parametrize("axes", ["attribute", "initializer", "constant value_ints"])
def test_an_image_the_graph_batches_itself_has_no_batch_axis(tmp_path, axes):
    """torchvision's detection exports take one [C, H, W] image, normalise it and unsqueeze it to
    [1, C, H, W]: the graph's batch is 1, not the 3 channels, and --batch says why it has none."""
    nodes = [helper.make_node("Sub", ["images", "mean"], ["s"], name="sub"),
             helper.make_node("Div", ["s", "std"], ["n"], name="div"),
             helper.make_node("Conv", ["u", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    inits = [_init("mean", np.zeros((3, 1, 1))), _init("std", np.ones((3, 1, 1))), _init("w", np.zeros((8, 3, 3, 3)))]
    if axes == "attribute":
        nodes.append(helper.make_node("Unsqueeze", ["n"], ["u"], name="unsq", axes=[0]))
    else:
        nodes.append(helper.make_node("Unsqueeze", ["n", "ax"], ["u"], name="unsq"))
        if axes == "initializer":
            inits.append(_init("ax", [-4], np.int64))
        else:
            nodes.append(helper.make_node("Constant", [], ["ax"], value_ints=[0]))
    path = _save(tmp_path / "det.onnx", nodes, [("images", F, [3, 32, 32])], [("y", F, None)], inits,
                 opset=11 if axes == "attribute" else 13)
    g = load_onnx(path, strict=True)
    assert g.batch == 1 and [lyr.out_shape for lyr in g.order if lyr.op == "conv"] == [(1, 8, 30, 30)]
    with pytest.raises(GraphError, match="'images' is one image the graph batches itself"):
        load_onnx(path, batch=2)


def test_a_sequence_that_is_also_stacked_keeps_its_batch(tmp_path):
    """A [B, T, F] input read by a MatMul and also stacked (Unsqueeze at 0, then Concat) is no
    single image: its dim 0 stays the batch, and --batch scales it."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
             helper.make_node("Unsqueeze", ["x", "ax"], ["u"], name="unsq"),
             helper.make_node("Concat", ["u", "u"], ["z"], name="stack", axis=0)]
    path = _save(tmp_path / "seq.onnx", nodes, [("x", F, [2, 16, 8])], [("y", F, None), ("z", F, None)],
                 [_init("w", np.ones((8, 4))), _init("ax", [0], np.int64)], opset=13)
    assert load_onnx(path).batch == 2
    g = load_onnx(path, batch=4)
    assert g.batch == 4 and [lyr.out_shape for lyr in g.order if lyr.name == "mm"] == [(4, 16, 4)]


def test_a_grid_sample_is_a_resize_that_reads_its_grid(tmp_path):
    """GridSample (optical flow's warps, deformable attention) samples its input at positions an
    activation gives: a resize to the grid's size, reading the grid too (a dependency the plan keeps),
    and written back as a node the importer maps to the same layer."""
    from autotune.frontends.onnx_export import export_onnx

    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["off"], name="offsets", kernel_shape=[1, 1]),
             helper.make_node("Transpose", ["off"], ["grid"], name="to_grid", perm=[0, 2, 3, 1]),
             helper.make_node("GridSample", ["c", "grid"], ["s"], name="warp", mode="bilinear"),
             helper.make_node("Conv", ["s", "w3"], ["y"], name="head", kernel_shape=[1, 1])]
    inits = [_init("w1", np.ones((16, 8, 1, 1))), _init("w2", np.ones((2, 8, 1, 1))),
             _init("w3", np.ones((4, 16, 1, 1)))]
    path = _save(tmp_path / "gs.onnx", nodes, [("x", F, [1, 8, 12, 12])], [("y", F, None)], inits)
    g = load_onnx(path, strict=True)
    warp = g.producer["s"]
    assert warp.op == "resize" and warp.out_shape == (1, 16, 12, 12) and warp.attrs.mode == "bilinear"
    assert [g.producer[t].name for t in warp.inputs] == ["conv", "to_grid"]
    export_onnx(g, str(tmp_path / "back.onnx"))
    back = load_onnx(str(tmp_path / "back.onnx"), strict=True)
    assert [(lyr.op, lyr.inputs, lyr.out_shape) for lyr in back.order] == \
        [(lyr.op, lyr.inputs, lyr.out_shape) for lyr in g.order]


def test_every_model_onnx_ships_as_test_data_imports_or_is_refused_in_one_line():
    """The models the onnx package ships as backend test data (ImageNet classifiers without weights,
    PyTorch-converted ops, small graphs of sequences and strings) import, or are refused with one
    GraphError line naming the file: never another exception. The classifiers' MACs match the
    published counts (torchvision: ResNet-50 4.09 G, VGG-19 19.63 G, DenseNet-121 2.83 G)."""
    import warnings
    from pathlib import Path

    files = sorted((Path(onnx.__file__).parent / "backend" / "test" / "data").glob("**/*.onnx"))
    if not files:
        pytest.skip("this onnx package ships no backend test data")
    macs: dict[str, int] = {}
    refused: list[str] = []
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                macs[str(f.relative_to(f.parents[1]))] = load_onnx(str(f)).total_macs
            except GraphError as err:
                assert "\n" not in str(err) and str(err).startswith(str(f)), str(err)
                refused.append(f.name)
    assert len(macs) >= len(files) // 2, refused
    for name, want in (("resnet50", 4.09e9), ("vgg19", 19.63e9), ("densenet121", 2.83e9)):
        if f"light/light_{name}.onnx" in macs:
            assert macs[f"light/light_{name}.onnx"] == pytest.approx(want, rel=0.01), name
