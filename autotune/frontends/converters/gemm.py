"""Gemm and MatMul (weights on either side, or two activations), Einsum contractions that are one, and
Einsum products with no summed axis (element-wise)."""

from __future__ import annotations

import math
import re

from autotune.errors import GraphError
from autotune.frontends.converters import converter
from autotune.frontends.converters.common import text
from autotune.ir.graph import fc_in_features_of
from autotune.ir.ops.base import broadcast


def fc_last_axis(imp, n, x: str, cout: int, out: str) -> None:
    """fc over the last axis of `x` writing `out`: the IR fc flattens a 4-D input, so ranks above 3
    fold their leading axes around it."""
    xs = imp.ir_shape[imp.src(x)]
    if len(xs) <= 3:
        imp.emit(n, "fc", [x], [out], out_channels=cout, bias=False, act="")
        return
    mid = out + "/in3d"
    imp.layout(n, x, mid, (math.prod(xs[:-2]), xs[-2], xs[-1]))
    tmp = out + "/fc"
    imp.emit(n, "fc", [mid], [tmp], out_channels=cout, bias=False, act="")
    imp.layout(n, tmp, out, xs[:-1] + (cout,))


def _transpose_last(imp, n, x: str, out: str) -> None:
    xs = imp.ir_shape[imp.src(x)]
    imp.layout(n, x, out, xs[:-2] + (xs[-1], xs[-2]), kind="transpose")


def _transpose_2d(imp, n, x: str, out: str) -> str:
    """`x` (rows, cols) as (cols, rows): a transpose layout layer writing `out`; returns `out`."""
    xs = imp.ir_shape[imp.src(x)] if x not in imp.static else imp.shape_of(x)
    imp.layout(n, x, out, (xs[1], xs[0]), kind="transpose")
    return out


def _gemm_c(imp, n, tmp: str, c: str) -> None:
    """Gemm's C added to the product `tmp`: an element-wise add (of a constant: one input)."""
    imp.emit(n, "eltwise", [tmp] if c in imp.static else [tmp, c], suffix="/add", mode="add", act="")


def _gemm_dynamic_b(imp, n, ta: bool, tb: bool) -> None:
    """Gemm whose B is an activation: a matmul of (M, K) by (K, N) after transposing what transA/transB
    say, or, for a constant A, an fc on B^T (as MatMul does with a weight on the left); then C."""
    x, b, y = n.inputs[0], n.inputs[1], n.outputs[0]
    c = n.inputs[2] if len(n.inputs) > 2 else ""
    xs = imp.shape_of(x) if x in imp.static else imp.ir_shape[imp.src(x)]
    if len(imp.ir_shape[imp.src(b)]) != 2 or len(xs) != 2:
        return imp.opaque(n)
    out = y + "/mm" if c else y
    if x in imp.static:  # (A B)^T = B^T A^T: an fc with A as its weight on B^T, transposed back
        w = xs
        bt = b if tb else _transpose_2d(imp, n, b, y + "/bT")
        mid = y + "/fcT"
        imp.emit(n, "fc", [bt], [mid], out_channels=w[1] if ta else w[0], bias=False, act="")
        _transpose_2d(imp, n, mid, out)
    else:
        a2 = _transpose_2d(imp, n, x, y + "/aT") if ta else x
        b2 = _transpose_2d(imp, n, b, y + "/bT") if tb else b
        imp.emit(n, "matmul", [a2, b2], [out])
    if c:
        _gemm_c(imp, n, out, c)


@converter("Gemm")
def gemm(imp, n):
    a = n.attrs
    x, wt = n.inputs[0], n.inputs[1]
    ta, tb = bool(a.get("transA", 0)), bool(a.get("transB", 0))
    if wt not in imp.static:
        return _gemm_dynamic_b(imp, n, ta, tb)
    w = imp.shape_of(wt)
    if x in imp.static or len(w) != 2:
        return imp.opaque(n)
    if ta:
        if len(imp.ir_shape[imp.src(x)]) != 2:
            return imp.opaque(n)
        x = _transpose_2d(imp, n, x, n.outputs[0] + "/aT")
    xs = imp.ir_shape[imp.src(x)]  # the IR fc flattens a 4-D input, as an implicit Flatten would
    _same_k(xs, fc_in_features_of(xs), w[1] if tb else w[0], wt, tuple(w))
    cout = w[0] if tb else w[1]
    c = n.inputs[2] if len(n.inputs) > 2 else ""
    if c and c not in imp.static:  # an activation as C: fc then an eltwise add
        tmp = n.outputs[0] + "/fc"
        imp.emit(n, "fc", [x], [tmp], out_channels=cout, bias=False, act="")
        _gemm_c(imp, n, tmp, c)
        return
    imp.emit(n, "fc", [x], out_channels=cout, bias=bool(c), act="")


def _same_k(xs, have: int, k: int, weight: str, w: tuple) -> None:
    """The activation's reduced size (`have`) is the weight's reduction axis (k), or one clear line."""
    if have != k:
        raise GraphError(f"weight {weight!r} {w} reduces over {k} values, the activation {tuple(xs)} gives {have}")


def grouped_fc(imp, n, x: str, canon_shape: tuple[int, int, int], transposed: bool, cout: int, out: str) -> None:
    """A weight per group (`canon_shape` = groups, rows, K): `x` brought to (1, groups * K, rows, 1),
    a grouped 1x1 conv with `cout` outputs a group, written to `out` as (1, groups * cout, rows, 1)."""
    g, rows, k = canon_shape
    canon = out + "/in"
    imp.layout(n, x, canon, (1, g * k, rows, 1), kind="transpose" if transposed else None)
    imp.emit(n, "conv", [canon], [out], out_channels=g * cout, kernel=[1, 1], stride=[1, 1], pads=[0, 0, 0, 0],
             dilation=[1, 1], groups=g, bias=False, act="")


def _matmul_batched_weight(imp, n, x: str, w: tuple, left: bool = False) -> None:
    """Activation (L..., B..., M, K) @ a constant (B..., K, N) with a matrix per batch index (a
    relative-position table), or a constant (B..., M, K) @ an activation (L..., B..., K, N) (`left`:
    a decoder's first queries, constants): a grouped 1x1 conv, one group per B index over the
    activation's other rows; a weight batch the activation broadcasts (a 1 against B) is opaque."""
    xs, y = imp.ir_shape[imp.src(x)], n.outputs[0]
    lead = len(xs) - len(w)
    if lead < 0 or tuple(xs[lead:-2]) != tuple(w[:-2]):
        return imp.opaque(n)
    k, rows, cout = (xs[-2], xs[-1], w[-2]) if left else (xs[-1], xs[-2], w[-1])
    if k != (w[-1] if left else w[-2]):
        raise GraphError(f"weight {n.inputs[0 if left else 1]!r} {tuple(w)} and the activation {tuple(xs)} do not "
                         "share a summed axis")
    grouped_fc(imp, n, x, (math.prod(w[:-2]), math.prod(xs[:lead]) * rows, k), True, cout, y + "/mm")
    imp.layout(n, y + "/mm", y, imp.shape_of(y), kind="transpose")


@converter("MatMul")
def matmul(imp, n):
    x, wt = n.inputs[0], n.inputs[1]
    if x not in imp.static and wt not in imp.static:
        xs, ys = imp.ir_shape[imp.src(x)], imp.ir_shape[imp.src(wt)]
        if len(xs) >= 2 and len(ys) >= 2:
            return imp.emit(n, "matmul", [x, wt])
        return imp.opaque(n)
    if x not in imp.static:  # activation @ weight: an fc
        w = imp.shape_of(wt)
        if len(w) > 2 and math.prod(w[:-2]) > 1:
            return _matmul_batched_weight(imp, n, x, w)
        if len(w) > len(imp.ir_shape[imp.src(x)]):  # leading ones that raise the output's rank
            return imp.opaque(n)
        w = tuple(w[-2:])
        if len(w) != 2 or len(imp.ir_shape[imp.src(x)]) < 2:
            return imp.opaque(n)
        xs = imp.ir_shape[imp.src(x)]
        flat = len(xs) == 4 and len(imp.shapes.get(x) or ()) == 2  # a Flatten merged into this fc (layout)
        _same_k(xs, fc_in_features_of(xs) if flat else xs[-1], w[0], wt, tuple(w))
        if len(xs) == 4 and not flat:
            return fc_last_axis(imp, n, x, w[1], n.outputs[0])
        return imp.emit(n, "fc", [x], out_channels=w[1], bias=False, act="")
    # weight @ activation: (W X)^T = X^T W^T, an fc on the transposed activation
    w, xs = imp.shape_of(x), imp.ir_shape[imp.src(wt)]
    if len(w) > 2 and math.prod(w[:-2]) > 1:
        return _matmul_batched_weight(imp, n, wt, w, left=True)
    if len(w) > 2 and len(w) <= len(xs):  # leading ones the activation's rank already has
        w = tuple(w[-2:])
    if len(w) != 2 or len(xs) < 2:
        return imp.opaque(n)
    if w[1] != xs[-2]:
        raise GraphError(f"weight {x!r} {tuple(w)} has {w[1]} columns, the activation {tuple(xs)} {xs[-2]} rows")
    t_in, t_out = n.outputs[0] + "/xT", n.outputs[0] + "/fcT"
    _transpose_last(imp, n, wt, t_in)
    fc_last_axis(imp, n, t_in, w[0], t_out)
    _transpose_last(imp, n, t_out, n.outputs[0])


def _parse_einsum(eq: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand and output subscripts with '...' expanded to capital letters, one per broadcast axis."""
    eq = eq.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(ranks):
        raise GraphError(f"einsum {eq!r} names {len(subs)} operands, the node has {len(ranks)}")
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    n_ell = max((r - (len(s) - 3) for s, r in zip(subs, ranks) if "..." in s), default=0)
    ell = "".join(free[:n_ell])
    subs = [s.replace("...", ell[len(ell) - (r - (len(s) - 3)):] if r - (len(s) - 3) > 0 else "") for s, r in
            zip(subs, ranks)]
    if not arrow:  # implicit output: the letters used once, in order, after the broadcast axes
        letters = "".join(subs)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    out = out.replace("...", ell)
    for s, r in zip(subs, ranks):
        if len(s) != r or not re.fullmatch(r"[A-Za-z]*", s):
            raise GraphError(f"einsum {eq!r}: subscripts {s!r} do not fit an operand of rank {r}")
    return subs, out


def _einsum_product(imp, n, ins: list[str], subs: list[str], out: str, size: dict[str, int]) -> None:
    """No summed axis (an outer product, a batched element-wise product): each activation operand's axes
    in the output's order (a transpose where they are not), with size-1 axes for the letters it lacks (a
    reshape), then one element-wise multiply that broadcasts them to the output; constants fold into it."""
    y = n.outputs[0]
    canon = []
    for k, (t, s) in enumerate(zip(ins, subs)):
        if t in imp.static:
            continue
        order = "".join(c for c in out if c in s)
        if s != order:
            imp.layout(n, t, f"{y}/op{k}T", tuple(size[c] for c in order), kind="transpose")
            t = f"{y}/op{k}T"
        first = min(out.index(c) for c in s)
        if any(c not in s for c in out[first:]):  # size-1 axes inside (leading ones broadcast anyway)
            imp.layout(n, t, f"{y}/op{k}", tuple(size[c] if c in s else 1 for c in out[first:]))
            t = f"{y}/op{k}"
        canon.append(t)
    if not canon:
        raise GraphError("has no activation input")
    target = tuple(size[c] for c in out)
    if broadcast([imp.ir_shape[imp.src(t)] for t in canon], n.name or n.op) != target:
        imp.layout(n, canon[0], f"{y}/expand", target, kind="expand")  # an axis only a constant has
        canon[0] = f"{y}/expand"
    imp.emit(n, "eltwise", canon, mode="mul", act="")


@converter("Einsum")
def einsum(imp, n):
    """A contraction that is a (batched) matmul or an fc: one matmul/fc layer, with layout layers that
    bring the operands to (batch, M, K) @ (batch, K, N) and the result to the output's order; an
    equation with no summed axis (an outer product) is an element-wise multiply."""
    eq = text(n.attrs.get("equation"))
    ins = [t for t in n.inputs if t]
    shapes = [imp.ir_shape[imp.src(t)] if t not in imp.static else imp.shape_of(t) for t in ins]
    subs, out = _parse_einsum(eq, [len(s) for s in shapes])
    if len(ins) == 1:
        if sorted(subs[0]) == sorted(out):  # a permutation: layout only
            return imp.layout(n, ins[0], n.outputs[0], imp.shape_of(n.outputs[0]), kind="transpose")
        raise GraphError(f"einsum {eq!r} is a reduction, not a matmul or fc contraction")
    size = {c: d for s, shp in zip(subs, shapes) for c, d in zip(s, shp)}
    if any(size[c] != d for s, shp in zip(subs, shapes) for c, d in zip(s, shp)):
        return imp.opaque(n)  # an axis one operand broadcasts (size 1 against n)
    if all(c in out for s in subs for c in s) and all(s.count(c) == 1 for s in subs + [out] for c in s) \
            and set(out) <= set("".join(subs)):
        return _einsum_product(imp, n, ins, subs, out, size)
    if len(ins) != 2:
        raise GraphError(f"einsum {eq!r} has {len(ins)} operands; only two-operand matmul/fc contractions and "
                         "element-wise products map")
    sa, sb = subs
    batch = [c for c in out if c in sa and c in sb]
    m = [c for c in sa if c in out and c not in sb]
    nn = [c for c in sb if c in out and c not in sa]
    k = [c for c in sa if c in sb and c not in out]
    stray = [c for c in sa + sb if c not in out and not (c in sa and c in sb)] + [c for c in out if c not in sa + sb]
    if not k or stray or any(sa.count(c) > 1 or sb.count(c) > 1 for c in sa + sb):
        raise GraphError(f"einsum {eq!r} is not a matmul or fc contraction nor an element-wise product (no shared "
                         "summed axis, or an axis summed in one operand only, or a repeated axis)")
    M, N, K, Bt = (math.prod(size[c] for c in g) for g in (m, nn, k, batch))
    a_static, b_static = ins[0] in imp.static, ins[1] in imp.static
    y = n.outputs[0]
    mid = y + "/mm"
    if a_static or b_static:
        x, sx, rows, cout = (ins[1], sb, nn, M) if a_static else (ins[0], sa, m, N)
        if batch:  # a weight per batch index (relative-position tables): a grouped 1x1 conv
            grouped_fc(imp, n, x, (Bt, math.prod(size[c] for c in rows), K), sx != "".join(batch + k + rows), cout,
                       mid)
            got = "".join(batch + (m if a_static else nn) + rows)
        else:
            canon = y + "/in"
            imp.layout(n, x, canon, (1, math.prod(size[c] for c in rows), K),
                       kind=None if sx == "".join(rows + k) else "transpose")
            imp.emit(n, "fc", [canon], [mid], out_channels=cout, bias=False, act="")
            got = "".join(rows + (m if a_static else nn))
    else:
        ca, cb = y + "/a", y + "/b"
        imp.layout(n, ins[0], ca, (Bt, M, K), kind=None if sa == "".join(batch + m + k) else "transpose")
        imp.layout(n, ins[1], cb, (Bt, K, N), kind=None if sb == "".join(batch + k + nn) else "transpose")
        imp.emit(n, "matmul", [ca, cb], [mid])
        got = "".join(batch + m + nn)
    imp.layout(n, mid, y, imp.shape_of(y), kind=None if got == out else "transpose")
