"""Standard ONNX (opset 17, no `ai.autotune` node) for every layer: what `export-groups` writes, so any ONNX
runtime loads and runs each group file.

`write_layer` writes a layer as its op spec does (`OpSpec.to_onnx`, the one-node form the importer maps
back to the same layer) and, where that has none, as the standard nodes that compute it: a transpose whose
shapes are no plain permutation as Reshape/Transpose/Reshape, rotate-half as Slice/Neg/Concat, repeat_kv as
Reshape/Expand/Reshape, a gather as Gather with a constant index (an embedding lookup as Gather on a table
at its token ids), pad and tile as Pad and Tile, a recurrent layer as LSTM/GRU/RNN. What opset 17 cannot
express is written as the nearest standard op that moves the same bytes (`stand_in`, and README_NOTE says
which). Such a file maps back (`load_onnx`) to equivalent layers, not always the same ones: an export's
groups.parquet holds the exact IR.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from autotune.frontends.onnx_import import FUSED_MARK
from autotune.ir.ops.layout import permutation

if TYPE_CHECKING:
    from autotune.frontends.onnx_export import Exporter
    from autotune.ir.graph import Layer

Shape = tuple[int, ...]

#: What the export README says about the forms (autotune/synth/profiles.py writes it).
README_NOTE = """Every file is standard ONNX at opset 17 (no custom domain): ONNX Runtime loads and runs each one.
Layers with no one-node ONNX form are written as the nodes that compute them: a transpose that also
merges axes as Reshape/Transpose/Reshape, rotate-half as Slice/Neg/Concat, a grouped-query repeat
as Reshape/Expand/Reshape, a gather as Gather with a constant index, an embedding lookup as Gather
on a table (as many rows as lookups) at the token ids (a float input, cast to int64 and taken modulo
the rows, so any values work), pad and tile as Pad and Tile, LSTM/GRU/RNN as themselves. Where
opset 17 has no such op, the file holds the nearest standard op that moves the same bytes: an
average pool with dilation as a max pool with the same taps, a global pool or a resize of another
mode as GlobalAveragePool or a nearest Resize, a group norm or a norm of another rank as
LayerNormalization, an element-wise comparison or logic op as Add/Sum, an unknown activation as Neg,
and an op the importer did not know (opaque) or a layout with no such form as its inputs flattened,
sliced or tiled to the output's size, negated (one pass) and reshaped. A file maps back through
`autotune inspect` to the same MACs, its layers not always one for one: `groups.parquet` holds the
exact layers."""

_UNARY = {"exp": "Exp", "log": "Log", "sqrt": "Sqrt", "reciprocal": "Reciprocal", "neg": "Neg", "abs": "Abs",
          "erf": "Erf", "floor": "Floor", "ceil": "Ceil", "round": "Round", "sign": "Sign", "sin": "Sin",
          "cos": "Cos", "thresholded_relu": "ThresholdedRelu", "clip": "Clip"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "mean": "Mean",
           "pow": "Pow", "mod": "Mod"}
_RECURRENT = {"lstm": ("LSTM", 4), "gru": ("GRU", 3), "rnn": ("RNN", 1)}


def write_layer(ex: Exporter, lyr: Layer) -> None:
    """Write `lyr` (its fused activation included) with standard ONNX nodes only."""
    if len(lyr.outputs) > 1:
        if not (lyr.op == "rnn" and recurrent(ex, lyr)):
            stand_in(ex, lyr, list(zip(lyr.outputs, lyr.out_shapes)))
    else:
        act = lyr.attrs.act
        y = ex.fresh(f"{lyr.outputs[0]}/pre_act") if act else lyr.outputs[0]
        if not (ex.main(lyr, y) or _FORMS.get(lyr.op, _none)(ex, lyr, y)):
            stand_in(ex, lyr, [(y, lyr.out_shape)])
        if act:
            ex.info(y, lyr.out_shape)
            activation(ex, act, y, lyr.outputs[0], f"{lyr.name}/act", lyr.out_shape, fused=True)
    for t, s in zip(lyr.outputs, lyr.out_shapes):
        ex.info(t, s)


def _none(ex: Exporter, lyr: Layer, y: str) -> bool:
    """No form of its own: the stand-in writes it."""
    return False


# -- helpers -----------------------------------------------------------------------------------------
def _ints(ex: Exporter, name: str, values: Sequence[int]) -> str:
    """An int64 constant (an initializer)."""
    return ex.const(name, np.array(list(values), np.int64))


def _reshape(ex: Exporter, x: str, shape: Sequence[int], name: str, y: str | None = None) -> str:
    """Reshape `x` to `shape`; returns the output tensor (`y`, or a fresh one)."""
    y = y or ex.fresh(name)
    ex.node("Reshape", [x, _ints(ex, f"{name}/shape", shape)], [y], name)
    return y


def _slice(ex: Exporter, x: str, start: int, end: int, axis: int, name: str) -> str:
    """x[start:end] along `axis`."""
    y = ex.fresh(name)
    ex.node("Slice", [x, _ints(ex, f"{name}/starts", [start]), _ints(ex, f"{name}/ends", [end]),
                      _ints(ex, f"{name}/axes", [axis])], [y], name)
    return y


def broadcastable(xs: Shape, ys: Shape) -> bool:
    """Whether numpy broadcasting takes shape `xs` to exactly `ys` (what ONNX Expand does)."""
    if len(xs) > len(ys):
        return False
    return all(a in (1, b) for a, b in zip(xs[::-1], ys[::-1]))


def moving_permutation(xs: Shape, ys: Shape) -> list[int] | None:
    """A perm with ys == [xs[p] for p in perm] that moves data if one does (equal sizes swapped rather
    than the identity), or None if ys is no permutation of xs."""
    perm = permutation(xs, ys)
    if perm is None:
        return None
    if perm == sorted(perm):  # a pair of equal sizes swapped (sizes over 1 first: those move data)
        same = sorted(((xs[i] > 1, i, j) for i, j in itertools.combinations(range(len(xs)), 2) if xs[i] == xs[j]))
        if same:
            _, i, j = same[-1]
            perm[i], perm[j] = j, i
    return perm


def _groupings(shape: Shape) -> list[tuple[int, ...]]:
    """`shape` with each run of adjacent axes merged, every way (finest first)."""
    n = len(shape)
    out = []
    for cuts in itertools.product((True, False), repeat=max(0, n - 1)):
        dims, acc = [], shape[0] if n else 1
        for k, cut in enumerate(cuts, start=1):
            if cut:
                dims.append(acc)
                acc = shape[k]
            else:
                acc *= shape[k]
        out.append(tuple(dims + [acc]))
    return out


def regrouped_transpose(xs: Shape, ys: Shape) -> tuple[Shape, list[int], Shape] | None:
    """(merged xs, perm, merged ys): xs with adjacent axes merged, transposed by a moving perm to ys with
    adjacent axes merged (NCHW -> (N, HW, C) is (N, C, HW) by [0, 2, 1]); None if there is none."""
    if len(xs) > 6 or len(ys) > 6:
        return None
    for gx in _groupings(xs):
        for gy in _groupings(ys):
            perm = moving_permutation(gx, gy)
            if perm is not None and perm != sorted(perm):
                return gx, perm, gy
    return None


# -- activations -------------------------------------------------------------------------------------
def activation(ex: Exporter, mode: str, x: str, y: str, name: str, shape: Shape, fused: bool = False) -> None:
    """Activation `mode` of x into y (`fused`: a layer's epilogue, marked so): the exporter's form, the
    ONNX op of that name, Mish written out (opset 18), or a Neg stand-in (one pass) for a mode with no
    float form."""

    doc = FUSED_MARK if fused else ""
    if ex.can_act(mode):
        ex.act(mode, x, y, name, shape, fused=fused)
    elif mode in _UNARY:
        ex.node(_UNARY[mode], [x], [y], name, doc)
    elif mode == "trilu" and len(shape) >= 2:
        ex.node("Trilu", [x], [y], name, doc)
    elif mode == "mish":  # x * tanh(softplus(x))
        sp, th = ex.fresh(f"{name}/softplus"), ex.fresh(f"{name}/tanh")
        ex.node("Softplus", [x], [sp], f"{name}/softplus")
        ex.node("Tanh", [sp], [th], f"{name}/tanh")
        ex.node("Mul", [x, th], [y], name, doc)
    else:
        ex.node("Neg", [x], [y], name, doc)


def act_layer(ex: Exporter, lyr: Layer, y: str) -> bool:
    """A standalone activation the exporter has no form for."""
    activation(ex, lyr.attrs.mode, lyr.inputs[0], y, lyr.name, lyr.out_shape)
    return True


# -- layout ------------------------------------------------------------------------------------------
def layout(ex: Exporter, lyr: Layer, y: str) -> bool:
    """A layout layer the op spec has no one-node form for, by its mode (see module doc)."""
    if len(lyr.inputs) != 1:
        return False
    form = _LAYOUT.get(lyr.attrs.mode)
    if form is not None and form(ex, lyr, y):
        return True
    return math.prod(lyr.in_shape) == math.prod(lyr.out_shape) and transpose(ex, lyr, y)


def transpose(ex: Exporter, lyr: Layer, y: str) -> bool:
    """Transpose by a moving perm, with merged axes reshaped in and out when the shapes need it."""
    xs, ys, x, n = lyr.in_shape, lyr.out_shape, lyr.inputs[0], lyr.name
    perm = moving_permutation(xs, ys)
    if perm is not None and perm != sorted(perm):
        ex.node("Transpose", [x], [y], n, perm=perm)
        return True
    found = regrouped_transpose(xs, ys)
    if found is None:
        return False
    gx, perm, gy = found
    src = _reshape(ex, x, gx, f"{n}/merge") if gx != xs else x
    if gy == ys:
        ex.node("Transpose", [src], [y], n, perm=perm)
        return True
    t = ex.fresh(f"{n}/transposed")
    ex.node("Transpose", [src], [t], n, perm=perm)
    _reshape(ex, t, ys, f"{n}/split", y)
    return True


def rotate_half(ex: Exporter, lyr: Layer, y: str) -> bool:
    """cat(-x[..., h:], x[..., :h]) on the last axis, as Hugging Face exports RoPE's rotate_half."""
    xs, x, n = lyr.in_shape, lyr.inputs[0], lyr.name
    if xs != lyr.out_shape or not xs or xs[-1] < 2:
        return False
    h, d = xs[-1] // 2, xs[-1]
    lo, hi = _slice(ex, x, 0, h, -1, f"{n}/x1"), _slice(ex, x, h, d, -1, f"{n}/x2")
    neg = ex.fresh(f"{n}/neg")
    ex.node("Neg", [hi], [neg], f"{n}/neg")
    ex.node("Concat", [neg, lo], [y], n, axis=-1)
    return True


def expand(ex: Exporter, lyr: Layer, y: str) -> bool:
    """Expand (numpy broadcasting), or repeat_kv's repeat of each slice (Reshape/Expand/Reshape)."""
    xs, ys, x, n = lyr.in_shape, lyr.out_shape, lyr.inputs[0], lyr.name
    if broadcastable(xs, ys):
        ex.node("Expand", [x, _ints(ex, f"{n}/shape", ys)], [y], n)
        return True
    if len(xs) != len(ys) or any(b % a for a, b in zip(xs, ys)):
        return False
    mid = [d for a, b in zip(xs, ys) for d in ((a, 1) if b != a else (a,))]
    big = [d for a, b in zip(xs, ys) for d in ((a, b // a) if b != a else (a,))]
    src = _reshape(ex, x, mid, f"{n}/unsqueeze")
    wide = ex.fresh(f"{n}/expanded")
    ex.node("Expand", [src, _ints(ex, f"{n}/shape", big)], [wide], n)
    _reshape(ex, wide, ys, f"{n}/merge", y)
    return True


def gather(ex: Exporter, lyr: Layer, y: str) -> bool:
    """Gather with a constant index: one axis selected (a class token) or indexed; an embedding lookup
    (ids -> ids + (d,)) reads a table of as many rows as lookups at the ids."""
    xs, ys, x, n = lyr.in_shape, lyr.out_shape, lyr.inputs[0], lyr.name
    if len(ys) == len(xs) - 1:
        ax = next((a for a in range(len(xs)) if xs[:a] + xs[a + 1:] == ys), None)
        if ax is not None:
            ex.node("Gather", [x, ex.const(f"{n}/index", np.array(0, np.int64))], [y], n, axis=ax)
            return True
    diff = [a for a in range(len(xs)) if xs[a] != ys[a]] if len(xs) == len(ys) else []
    if len(diff) == 1:
        ax = diff[0]
        at = np.arange(ys[ax], dtype=np.int64) % xs[ax]
        ex.node("Gather", [x, ex.const(f"{n}/indices", at)], [y], n, axis=ax)
        return True
    if len(ys) == len(xs) + 1 and ys[:-1] == xs:
        from onnx import TensorProto

        rows = max(1, math.prod(xs))
        ids, idx = ex.fresh(f"{n}/ids"), ex.fresh(f"{n}/rows")
        ex.node("Cast", [x], [ids], f"{n}/cast", to=TensorProto.INT64)
        ex.node("Mod", [ids, ex.const(f"{n}/n_rows", np.array(rows, np.int64))], [idx], f"{n}/mod")
        ex.node("Gather", [ex.weight(f"{n}.table", (rows, ys[-1])), idx], [y], n, axis=0)
        return True
    return False


def pad(ex: Exporter, lyr: Layer, y: str) -> bool:
    """Pad with zeros at the end of each grown axis."""
    xs, ys, n = lyr.in_shape, lyr.out_shape, lyr.name
    if len(xs) != len(ys) or any(b < a for a, b in zip(xs, ys)):
        return False
    pads = [0] * len(xs) + [b - a for a, b in zip(xs, ys)]
    ex.node("Pad", [lyr.inputs[0], _ints(ex, f"{n}/pads", pads)], [y], n)
    return True


def tile(ex: Exporter, lyr: Layer, y: str) -> bool:
    """Tile by whole repeats."""
    xs, ys, n = lyr.in_shape, lyr.out_shape, lyr.name
    if len(xs) != len(ys) or any(b % a for a, b in zip(xs, ys)):
        return False
    ex.node("Tile", [lyr.inputs[0], _ints(ex, f"{n}/repeats", [b // a for a, b in zip(xs, ys)])], [y], n)
    return True


# -- other ops ---------------------------------------------------------------------------------------
def eltwise(ex: Exporter, lyr: Layer, y: str) -> bool:
    """Pow and Mod, a chain of binary nodes for more than two inputs, and Add/Sum (the same bytes) for a
    comparison or logic mode, whose ONNX result is boolean."""
    x, mode, n = list(lyr.inputs), lyr.attrs.mode, lyr.name
    op = _BINARY.get(mode)
    attrs: dict[str, Any] = {"fmod": 1} if op == "Mod" else {}
    if len(x) == 1:
        c = ex.const(f"{n}/const", np.array(1.0 if op in ("Mul", "Div", "Pow", "Mod") else 0.0, np.float32))
        ex.node(op or "Add", [x[0], c], [y], n, **attrs)
        return True
    if op is None:
        ex.node("Sum", x, [y], n)
        return True
    acc = x[0]
    for k, t in enumerate(x[1:], start=1):
        out = y if k == len(x) - 1 else ex.fresh(f"{n}/{k}")
        ex.node(op, [acc, t], [out], n if out == y else f"{n}/{k}", **attrs)
        acc = out
    return True


def fc(ex: Exporter, lyr: Layer, y: str) -> bool:
    """A dense layer on a 1-D input: MatMul by a (Cin, Cout) weight, then the bias."""
    a, n, x = lyr.attrs, lyr.name, lyr.inputs[0]
    w = ex.weight(f"{n}.weight", (lyr.fc_in_features, a.out_channels))
    if not a.bias:
        ex.node("MatMul", [x, w], [y], n)
        return True
    t = ex.fresh(f"{y}/matmul")
    ex.node("MatMul", [x, w], [t], n)
    ex.node("Add", [t, ex.weight(f"{n}.bias", (a.out_channels,))], [y], f"{n}/bias")
    return True


def gpool(ex: Exporter, lyr: Layer, y: str) -> bool:
    """A global pool of another mode: GlobalAveragePool (the same bytes)."""
    ex.node("GlobalAveragePool", [lyr.inputs[0]], [y], lyr.name)
    return True


def norm(ex: Exporter, lyr: Layer, y: str) -> bool:
    """A norm with no ONNX form at opset 17 (group norm; batch, instance or LRN at another rank):
    LayerNormalization over the last axis (the same bytes, a like count of element ops)."""
    xs, n = lyr.in_shape, lyr.name
    ws = [ex.weight(f"{n}.{k}", (xs[-1] if xs else 1,)) for k in ("weight", "bias")]
    ex.node("LayerNormalization", [lyr.inputs[0], *ws], [y], n, axis=-1)
    return True


def pool(ex: Exporter, lyr: Layer, y: str) -> bool:
    """A pool ONNX cannot write as is: a ceil-mode pool whose last window starts past the input (floor
    mode with the end padding that gives the same size), an average pool with dilation (a max pool
    with the same taps), another mode (a max pool)."""
    a, xs, ys, n = lyr.attrs, lyr.in_shape, lyr.out_shape, lyr.name
    nd = len(a.kernel)
    ends = []
    for k in range(nd):
        reach = (a.kernel[k] - 1) * a.dilation[k] + 1
        end = (ys[2 + k] - 1) * a.stride[k] + reach - xs[2 + k] - a.pads[k]
        if end < 0 or end >= a.kernel[k]:
            return False
        ends.append(end)
    attrs: dict[str, Any] = {"kernel_shape": list(a.kernel), "strides": list(a.stride),
                             "pads": list(a.pads[:nd]) + ends}
    if a.mode == "avg" and all(d == 1 for d in a.dilation):
        ex.node("AveragePool", [lyr.inputs[0]], [y], n, **attrs)
    else:
        ex.node("MaxPool", [lyr.inputs[0]], [y], n, dilations=list(a.dilation), **attrs)
    return True


def resize(ex: Exporter, lyr: Layer, y: str) -> bool:
    """A resize of another mode: nearest, to the output's size."""
    if len(lyr.in_shape) != len(lyr.out_shape):
        return False
    ex.node("Resize", [lyr.inputs[0], "", "", _ints(ex, f"{lyr.name}/sizes", lyr.out_shape)], [y], lyr.name,
            mode="nearest")
    return True


def recurrent(ex: Exporter, lyr: Layer) -> bool:
    """An rnn layer as ONNX LSTM/GRU/RNN: outputs (Y, Y_h[, Y_c]) are the layer's (Y, state[, cell])."""
    a, n = lyr.attrs, lyr.name
    if a.mode not in _RECURRENT or len(lyr.in_shape) != 3:
        return False
    op, gates = _RECURRENT[a.mode]
    d, h, i = a.groups, a.out_channels, lyr.in_shape[-1]
    ins = [lyr.inputs[0], ex.weight(f"{n}.W", (d, gates * h, i)), ex.weight(f"{n}.R", (d, gates * h, h))]
    if a.bias:
        ins.append(ex.weight(f"{n}.B", (d, 2 * gates * h)))
    outs = [lyr.outputs[1], lyr.outputs[0], *lyr.outputs[2:]]
    ex.node(op, ins, outs, n, hidden_size=h, direction="bidirectional" if d == 2 else "forward")
    return True


def stand_in(ex: Exporter, lyr: Layer, outs: list[tuple[str, Shape]]) -> None:
    """The same bytes as `lyr` moves, for what ONNX cannot say: the inputs flattened (joined), each output
    sliced (or tiled) from them in turn, negated (one pass over it) and reshaped."""
    n = lyr.name
    flats = [_reshape(ex, x, [-1], f"{n}/flat{k}") for k, x in enumerate(lyr.inputs)]
    flat = flats[0]
    if len(flats) > 1:
        flat = ex.fresh(f"{n}/joined")
        ex.node("Concat", flats, [flat], f"{n}/join", axis=0)
    size, off = sum(math.prod(s) for s in lyr.in_shapes), 0
    for k, (t, s) in enumerate(outs):
        want = math.prod(s)
        if off + want > size:
            off = 0
        src = flat
        if want > size:
            src = ex.fresh(f"{n}/tiled{k}")
            ex.node("Tile", [flat, _ints(ex, f"{n}/repeats{k}", [-(-want // size)])], [src], f"{n}/tile{k}")
        part = _slice(ex, src, off, off + want, 0, f"{n}/part{k}")
        off += want
        neg = ex.fresh(f"{n}/pass{k}")
        ex.node("Neg", [part], [neg], f"{n}/pass{k}")
        _reshape(ex, neg, s, f"{n}/out{k}", t)


_LAYOUT: dict[str, Callable[[Exporter, Layer, str], bool]] = {
    "transpose": transpose, "rotate_half": rotate_half, "expand": expand, "gather": gather, "pad": pad,
    "tile": tile}
_FORMS: dict[str, Callable[[Exporter, Layer, str], bool]] = {
    "layout": layout, "act": act_layer, "eltwise": eltwise, "fc": fc, "gpool": gpool, "norm": norm,
    "pool": pool, "resize": resize}
