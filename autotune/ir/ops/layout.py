"""Data movement with no arithmetic: transpose, slice, gather, split, pad, expand, an embedding lookup, a
concat with a constant. Bytes only; the output shape is given (`shape`), as ONNX inferred it, and the
compiler may fuse it with its neighbours (an address pattern of the kernel around it)."""

from __future__ import annotations

import numpy as np

from autotune.errors import GraphError
from autotune.ir.ops.base import OpSpec, prod, register


def permutation(src, dst) -> list[int] | None:
    """A perm with dst == [src[p] for p in perm] (None if dst is not a permutation of src)."""
    if len(src) != len(dst) or sorted(src) != sorted(dst):
        return None
    free = list(range(len(src)))
    perm = []
    for d in dst:
        k = next(i for i in free if src[i] == d)
        free.remove(k)
        perm.append(k)
    return perm


@register
class Layout(OpSpec):
    name = "layout"
    synth_weight = 0.03

    def infer(self, in_shapes, a, name):
        if not a.shape:
            raise GraphError(f"layer {name!r}: a layout layer needs its output shape")
        return (tuple(a.shape),)

    def to_onnx(self, lyr, ex, y):
        """The standard node the importer maps back to this layer: Transpose, Expand, Slice, or a
        Concat with a constant; other layouts (a rotate-half, an embedding lookup) travel as custom nodes."""
        x, xs, ys, mode, n = lyr.inputs, lyr.in_shape, lyr.out_shape, lyr.attrs.mode, lyr.name
        if len(x) != 1:
            return False
        perm = permutation(xs, ys)
        if mode == "transpose" and perm is not None and perm != sorted(perm):
            ex.node("Transpose", [x[0]], [y], n, perm=perm)
            return True
        same_rank = len(xs) == len(ys)
        if mode == "expand" and same_rank and all(a in (b, 1) for a, b in zip(xs, ys)) and xs != ys:
            ex.node("Expand", [x[0], ex.const(f"{n}/shape", np.array(ys, np.int64))], [y], n)
            return True
        if mode == "slice" and same_rank and all(b <= a for a, b in zip(xs, ys)) and xs != ys:
            axes = [i for i, (a, b) in enumerate(zip(xs, ys)) if b < a]
            ex.node("Slice", [x[0], ex.const(f"{n}/starts", np.zeros(len(axes), np.int64)),
                              ex.const(f"{n}/ends", np.array([ys[i] for i in axes], np.int64)),
                              ex.const(f"{n}/axes", np.array(axes, np.int64))], [y], n)
            return True
        diff = [i for i, (a, b) in enumerate(zip(xs, ys)) if a != b] if same_rank else []
        if mode == "concat" and len(diff) == 1 and ys[diff[0]] > xs[diff[0]]:
            ax = diff[0]
            pad = list(ys)
            pad[ax] = ys[ax] - xs[ax]
            ex.node("Concat", [ex.const(f"{n}/const", np.zeros(pad, np.float32)), x[0]], [y], n, axis=ax)
            return True
        return False

    def synth(self, b, x, rng, channels):
        s = b.shape(x)
        kind = str(rng.choice(["transpose", "slice"]))
        if kind == "transpose":  # NCHW -> NHWC-style token layout
            return b.add("layout", [x], shape=(s[0], prod(s[2:]), s[1]), mode="transpose")
        return b.add("layout", [x], shape=(s[0], max(1, s[1] // 2), *s[2:]), mode="slice")
