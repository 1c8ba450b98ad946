"""Data movement with no arithmetic: transpose, slice, gather, split, pad, expand, an embedding lookup, a
concat with a constant. Bytes only; the output shape is given (`shape`), as ONNX inferred it, and the
compiler may fuse it with its neighbours (an address pattern of the kernel around it)."""

from __future__ import annotations

from ..errors import GraphError
from .base import OpSpec, prod, register


@register
class Layout(OpSpec):
    name = "layout"
    synth_weight = 0.03

    def infer(self, in_shapes, a, name):
        if not a.shape:
            raise GraphError(f"layer {name!r}: a layout layer needs its output shape")
        return (tuple(a.shape),)

    def synth(self, b, x, rng, channels):
        s = b.shape(x)
        kind = str(rng.choice(["transpose", "slice"]))
        if kind == "transpose":  # NCHW -> NHWC-style token layout
            return b.add("layout", [x], shape=(s[0], prod(s[2:]), s[1]), mode="transpose")
        return b.add("layout", [x], shape=(s[0], max(1, s[1] // 2), *s[2:]), mode="slice")
