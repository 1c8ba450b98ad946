"""Quantized ops: QLinearConv/ConvInteger, QLinearMatMul/MatMulInteger, Quantize/DequantizeLinear, and
com.microsoft's QLinear element-wise, pooling, activation and concat ops. Each maps like its float op on
its data inputs (scales and zero points are constants); the importer gives the layers the element
widths of their ONNX types (int8: 1 byte). ONNX shape inference does not know the com.microsoft ops, so
their output shapes come from the rules here."""

from __future__ import annotations

from dataclasses import replace

from autotune.errors import GraphError
from autotune.frontends.converters import converter, shape_rule
from autotune.frontends.converters.act import activation
from autotune.frontends.converters.common import text, window_pads
from autotune.frontends.converters.conv import conv
from autotune.frontends.converters.eltwise import eltwise
from autotune.frontends.converters.gemm import gemm, matmul
from autotune.frontends.converters.layout import concat
from autotune.frontends.converters.pool import global_pool, pool
from autotune.ir.ops.base import broadcast, window_out

MS = "com.microsoft"
Shape = tuple[int, ...]


# -- shape rules of com.microsoft ops ---------------------------------------------------------------
@shape_rule("QLinearAdd", "QLinearMul", domain=MS)
def _binary_shape(n, s: list[Shape | None]) -> list[Shape] | None:
    """A, A_scale, A_zero_point, B, ...: numpy broadcasting of A and B."""
    a, b = s[0], s[3] if len(s) > 3 else None
    return None if a is None or b is None else [broadcast([a, b], n.name or n.op)]


@shape_rule("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", domain=MS)
def _same_shape(n, s: list[Shape | None]) -> list[Shape] | None:
    """The output has the input's shape."""
    return None if s[0] is None else [s[0]]


shape_rule("QuantizeLinear", domain=MS, dtype_from=2)(_same_shape)  # as its zero point
shape_rule("DequantizeLinear", domain=MS, dtype_from=1)(_same_shape)  # float, as its scale


def _channels_last(n) -> bool:
    return bool(n.attrs.get("channels_last", 0))


@shape_rule("QLinearGlobalAveragePool", domain=MS)
def _global_pool_shape(n, s: list[Shape | None]) -> list[Shape] | None:
    """(N, C, 1, ...), or (N, 1, ..., C) with channels_last."""
    x = s[0]
    if x is None or len(x) < 3:
        return None
    ones = (1,) * (len(x) - 2)
    return [(x[0], *ones, x[-1]) if _channels_last(n) else (x[0], x[1], *ones)]


@shape_rule("QLinearAveragePool", domain=MS)
def _avg_pool_shape(n, s: list[Shape | None]) -> list[Shape] | None:
    """AveragePool's window rule over the spatial axes (after C, or before it with channels_last)."""
    x, a = s[0], n.attrs
    if x is None or len(x) < 3:
        return None
    cl = _channels_last(n)
    spatial = x[1:-1] if cl else x[2:]
    k = [int(v) for v in a.get("kernel_shape", [])]
    nd = len(k)
    if nd != len(spatial):
        raise GraphError(f"kernel_shape {k} does not fit an input of shape {x}")
    st, d = list(a.get("strides", [1] * nd)), [1] * nd
    pads = window_pads(text(a.get("auto_pad"), "NOTSET"), spatial, k, st, d, a.get("pads", []))
    ceil = bool(a.get("ceil_mode", 0))
    out = tuple(window_out(size, k[i], st[i], pads[i], pads[nd + i], 1, ceil) for i, size in enumerate(spatial))
    return [(x[0], *out, x[-1]) if cl else (x[0], x[1], *out)]


@shape_rule("QLinearConcat", domain=MS, dtype_from=1)
def _concat_shape(n, s: list[Shape | None]) -> list[Shape] | None:
    """Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per input: joined on `axis`."""
    got = s[2::3]
    xs = [x for x in got if x is not None]
    if not xs or len(xs) != len(got):
        return None
    ax = int(n.attrs.get("axis", 0)) % len(xs[0])
    if any(len(x) != len(xs[0]) or x[:ax] + x[ax + 1:] != xs[0][:ax] + xs[0][ax + 1:] for x in xs):
        raise GraphError(f"inputs of shapes {list(xs)} do not join on axis {ax}")
    return [xs[0][:ax] + (sum(x[ax] for x in xs),) + xs[0][ax + 1:]]


@shape_rule("QGemm", domain=MS, dtype_from=8)  # as y_zero_point; float without one
def _qgemm_shape(n, s: list[Shape | None]) -> list[Shape] | None:
    """A, a_scale, a_zero_point, B, ...: (M, N) after transA/transB."""
    a, b = s[0], s[3] if len(s) > 3 else None
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m = a[1] if n.attrs.get("transA", 0) else a[0]
    nn = b[0] if n.attrs.get("transB", 0) else b[1]
    return [(m, nn)]


# -- converters ---------------------------------------------------------------------------------------
def _data(n, *idx: int) -> list[str]:
    """The node's inputs at positions `idx` (the data; the others are scales and zero points)."""
    return [n.inputs[i] if i < len(n.inputs) else "" for i in idx]


@converter("QLinearConv")
def qlinear_conv(imp, n):
    """x, w and the int32 bias are inputs 0, 3 and 8."""
    x, w, b = _data(n, 0, 3, 8)
    conv(imp, replace(n, inputs=[x, w] + ([b] if b else [])))


@converter("ConvInteger")
def conv_integer(imp, n):
    """x and w are inputs 0 and 1; the result is int32."""
    conv(imp, replace(n, inputs=_data(n, 0, 1)))


@converter("QLinearMatMul")
def qlinear_matmul(imp, n):
    """a and b are inputs 0 and 3."""
    matmul(imp, replace(n, inputs=_data(n, 0, 3)))


@converter("MatMulInteger")
def matmul_integer(imp, n):
    """a and b are inputs 0 and 1; the result is int32."""
    matmul(imp, replace(n, inputs=_data(n, 0, 1)))


@converter("QGemm", domain=MS)
def qgemm(imp, n):
    """A, B and C are inputs 0, 3 and 6."""
    a, b, c = _data(n, 0, 3, 6)
    gemm(imp, replace(n, inputs=[a, b] + ([c] if c else [])))


@converter("QuantizeLinear", "DequantizeLinear")
@converter("QuantizeLinear", "DequantizeLinear", domain=MS)
def quantize(imp, n):
    """An element-wise layer: round(x / scale) + zero point, saturated; or (x - zero point) * scale.
    In a QDQ model an activation's Quantize -> Dequantize pair is how the file says "this tensor is
    int8": a compiler fuses the Quantize into the layer before and the Dequantize into the layers
    after, so the pair folds away and that layer writes (and its readers read) the narrow type."""
    if n.op == "QuantizeLinear" and _fold_quantize(imp, n):
        return
    if n.op == "DequantizeLinear" and n.inputs[0] in imp.folded_quant and n.outputs[0] not in imp.graph_outputs:
        imp.folded_dq[n.outputs[0]] = n.inputs[0]
        return imp.alias_of(n, n.inputs[0])
    imp.emit(n, "act", [n.inputs[0]], mode="quantize" if n.op == "QuantizeLinear" else "dequantize")


def _fold_quantize(imp, n) -> bool:
    """Fold an activation's Quantize whose every reader is a Dequantize into the layer that made the
    activation (its sole use), which then writes the quantized width."""
    x, q = n.inputs[0], n.outputs[0]
    readers = imp.users.get(q, [])
    if imp.explicit or x in imp.static or x in imp.alias or imp.uses(x) != 1 or q in imp.graph_outputs:
        return False
    if not readers or any(r.op != "DequantizeLinear" or r.inputs[0] != q for r in readers):
        return False
    p = imp.producer.get(imp.src(x))
    width = imp.width(q)  # the Quantize output's ONNX type: no layer makes it
    if p is None or not width or p.op == "opaque":
        return False
    p.attrs["out_elem_bytes"] = width
    imp.alias_of(n, x)
    imp.folded_quant.add(q)
    return True


@converter("DynamicQuantizeLinear")
def dynamic_quantize(imp, n):
    """ONNX Runtime's dynamic quantization: x to uint8 by its own range, a reduction and an element-wise
    pass (the scale and zero point it also gives are scalars the importer treats as constants)."""
    imp.emit(n, "act", [n.inputs[0]], mode="quantize")


@converter("QLinearAdd", "QLinearMul", domain=MS)
def qlinear_binary(imp, n):
    """A and B are inputs 0 and 3: Add or Mul, a constant operand folding as the float op's does."""
    eltwise(imp, replace(n, op=n.op.removeprefix("QLinear"), inputs=_data(n, 0, 3)))


@converter("QLinearSigmoid", "QLinearLeakyRelu", domain=MS)
def qlinear_act(imp, n):
    """An activation: folds into its producer as the float op's does."""
    activation(imp, replace(n, op=n.op.removeprefix("QLinear"), inputs=n.inputs[:1]))


@converter("QLinearSoftmax", domain=MS)
def qlinear_softmax(imp, n):
    imp.emit(n, "softmax", [n.inputs[0]])


@converter("QLinearConcat", domain=MS)
def qlinear_concat(imp, n):
    concat(imp, replace(n, inputs=n.inputs[2::3]))


def _channels_first(imp, n, convert) -> None:
    """`convert` (a float pool's converter) on the input moved to channels-first, the result moved back:
    a node with channels_last=1. Without it, `convert` runs on the node's data input as it is."""
    x, y = n.inputs[0], n.outputs[0]
    if not _channels_last(n):
        return convert(imp, replace(n, inputs=[x]))
    xs = imp.ir_shape[imp.src(x)]
    if len(xs) < 3:
        return imp.opaque(n)
    nchw, out = y + "/nchw", y + "/nchw_out"
    imp.layout(n, x, nchw, (xs[0], xs[-1], *xs[1:-1]), kind="transpose")
    convert(imp, replace(n, inputs=[nchw], outputs=[out]))
    ys = imp.ir_shape[imp.src(out)]
    imp.layout(n, out, y, (ys[0], *ys[2:], ys[1]), kind=None if all(d == 1 for d in ys[2:]) else "transpose")


@converter("QLinearGlobalAveragePool", domain=MS)
def qlinear_global_pool(imp, n):
    _channels_first(imp, n, lambda i, m: global_pool(i, replace(m, op="GlobalAveragePool")))


@converter("QLinearAveragePool", domain=MS)
def qlinear_avg_pool(imp, n):
    _channels_first(imp, n, lambda i, m: pool(i, replace(m, op="AveragePool", attrs={
        k: v for k, v in m.attrs.items() if k != "channels_last"})))
