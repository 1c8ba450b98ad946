"""Conv (1-D, 2-D, 3-D; dense, grouped, depthwise) and ConvTranspose."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.frontends.converters import converter
from autotune.frontends.converters.common import text, window_pads


def _window(imp, n, w):
    """(x shape, kernel, strides, dilations, groups, auto_pad) of a Conv/ConvTranspose node."""
    a = n.attrs
    x = imp.ir_shape[imp.src(n.inputs[0])]
    nd = len(x) - 2
    if not 1 <= nd <= 3 or len(w) != len(x):
        return None
    k = list(a.get("kernel_shape", w[2:]))
    if list(k) != list(w[2:]):
        raise GraphError(f"kernel_shape {k} disagrees with the weight's window {list(w[2:])}")
    return (x, k, list(a.get("strides", [1] * nd)), list(a.get("dilations", [1] * nd)), int(a.get("group", 1)),
            text(a.get("auto_pad"), "NOTSET"))


@converter("Conv")
def conv(imp, n):
    w = imp.shape_of(n.inputs[1])
    got = _window(imp, n, w)
    if got is None:
        return imp.opaque(n)
    x, k, s, d, groups, ap = got
    if groups < 1 or w[1] * groups != x[1]:
        raise GraphError(f"weight {n.inputs[1]!r} {tuple(w)} with group={groups} expects {w[1] * groups} "
                         f"input channels, the input has {x[1]}")
    pads = window_pads(ap, x[2:], k, s, d, n.attrs.get("pads", []))
    bias = len(n.inputs) > 2 and bool(n.inputs[2])
    imp.emit(n, "conv", [n.inputs[0]], out_channels=w[0], kernel=k, stride=s, pads=pads, dilation=d,
             groups=groups, bias=bias, act="")


@converter("ConvTranspose")
def conv_transpose(imp, n):
    w = imp.shape_of(n.inputs[1])  # (C_in, C_out / group, *k)
    got = _window(imp, n, w)
    if got is None:
        return imp.opaque(n)
    x, k, s, d, groups, ap = got
    nd = len(k)
    if groups < 1 or w[0] != x[1]:
        raise GraphError(f"weight {n.inputs[1]!r} {tuple(w)} expects {w[0]} input channels, the input has {x[1]}")
    op = list(n.attrs.get("output_padding", [0] * nd))
    want = n.attrs.get("output_shape")
    if want is not None or ap in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX: total padding from the requested size; SAME_UPPER puts the odd one at the end
        outs = list(want)[-nd:] if want is not None else [size * st for size, st in zip(x[2:], s)]
        total = [st * (size - 1) + o + (kk - 1) * dd + 1 - out
                 for st, size, o, kk, dd, out in zip(s, x[2:], op, k, d, outs)]
        if min(total) < 0:
            raise GraphError(f"output_shape {outs} is larger than the transposed convolution can give")
        begin = [t // 2 if ap == "SAME_UPPER" else t - t // 2 for t in total]
        pads = tuple(begin + [t - b for t, b in zip(total, begin)])
    else:
        pads = window_pads("NOTSET" if ap == "VALID" else ap, x[2:], k, s, d, n.attrs.get("pads", []))
    bias = len(n.inputs) > 2 and bool(n.inputs[2])
    imp.emit(n, "deconv", [n.inputs[0]], out_channels=w[1] * groups, kernel=k, stride=s, pads=pads, dilation=d,
             output_padding=op, groups=groups, bias=bias, act="")
