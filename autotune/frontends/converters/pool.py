"""MaxPool / AveragePool (1-3 spatial axes), global pools, reductions, and the selections (TopK, ArgMax)."""

from __future__ import annotations

from autotune.frontends.converters import converter
from autotune.frontends.converters.common import text, window_pads


@converter("MaxPool", "AveragePool")
def pool(imp, n):
    a = n.attrs
    x = imp.ir_shape[imp.src(n.inputs[0])]
    nd = len(x) - 2
    k = list(a.get("kernel_shape", []))
    if not 1 <= nd <= 3 or len(k) != nd:
        return imp.opaque(n)
    s, d = list(a.get("strides", [1] * nd)), list(a.get("dilations", [1] * nd))
    pads = window_pads(text(a.get("auto_pad"), "NOTSET"), x[2:], k, s, d, a.get("pads", []))
    imp.emit(n, "pool", [n.inputs[0]], kernel=k, stride=s, pads=pads, dilation=d,
             ceil_mode=bool(a.get("ceil_mode", 0)), mode="max" if n.op == "MaxPool" else "avg")


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(imp, n):
    """Over a 4-D map: a gpool layer. Over a 1-D or 3-D one (audio, video): the reduction's form, a
    vector pass over the input then the small result as a layout layer."""
    if len(imp.ir_shape[imp.src(n.inputs[0])]) != 4:
        return _reduce_pass(imp, n)
    imp.emit(n, "gpool", [n.inputs[0]], mode="avg" if n.op == "GlobalAveragePool" else "max")


def _reduce_pass(imp, n):
    tmp = n.outputs[0] + "/reduce"
    imp.emit(n, "act", [n.inputs[0]], [tmp], mode=n.op.lower())
    shape = imp.shape_of(n.outputs[0]) or (1,) * len(imp.ir_shape[imp.src(tmp)])  # a scalar: all axes kept
    imp.layout(n, tmp, n.outputs[0], shape, kind="reduce")


@converter("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceL2", "ReduceProd", "ReduceSumSquare")
def reduce(imp, n):
    """Over H and W of a 4-D map: a global pool. Any other reduction: a vector pass over the input
    (an `act` layer reading it) then the smaller result as a layout layer."""
    x = imp.ir_shape[imp.src(n.inputs[0])]
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1] in imp.values:
        axes = imp.values[n.inputs[1]].tolist()
    if n.op in ("ReduceMean", "ReduceMax") and len(x) == 4 and axes is not None and \
            sorted(int(v) % 4 for v in axes) == [2, 3]:
        mode = "avg" if n.op == "ReduceMean" else "max"
        if n.attrs.get("keepdims", 1):
            return imp.emit(n, "gpool", [n.inputs[0]], mode=mode)
        tmp = n.outputs[0] + "/gpool"
        imp.emit(n, "gpool", [n.inputs[0]], [tmp], mode=mode)
        return imp.layout(n, tmp, n.outputs[0], imp.shape_of(n.outputs[0]))
    _reduce_pass(imp, n)


@converter("TopK", "ArgMax", "ArgMin")
def select(imp, n):
    """A selection along an axis reads its input once, as a reduction does: a vector pass, then the
    smaller result as a layout layer; TopK's indices are its values' twin (same shape, same pass)."""
    _reduce_pass(imp, n)
    if len(n.outputs) > 1 and n.outputs[1]:
        imp.alias[n.outputs[1]] = imp.src(n.outputs[0])
