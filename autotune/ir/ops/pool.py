"""Max / average pooling over a window."""

from __future__ import annotations

from typing import Any

from autotune.ir.ops.base import SlidingWindow, prod, register


def onnx_ceil_pool_shape(lyr) -> tuple[int, ...]:
    """Output shape ONNX shape inference gives a ceil-mode pool (no 'last window starts inside' rule)."""
    a, x = lyr.attrs, lyr.in_shape
    nd = len(a.kernel)
    dims = [-(-(size + p0 + p1 - (k - 1) * d - 1) // s) + 1 for size, k, s, p0, p1, d in
            zip(x[2:], a.kernel, a.stride, a.pads[:nd], a.pads[nd:], a.dilation)]
    return (x[0], x[1], *dims)


@register
class Pool(SlidingWindow):
    name = "pool"
    count_as = "pool"

    def infer(self, in_shapes, a, name):
        return (self.window_shape(in_shapes, a, name),)

    def vector_ops(self, lyr):
        return prod(lyr.out_shape) * prod(lyr.attrs.kernel)

    def to_onnx(self, lyr, ex, y):
        a, x, n = lyr.attrs, list(lyr.inputs), lyr.name
        if a.ceil_mode and onnx_ceil_pool_shape(lyr) != lyr.out_shape:
            return False  # ONNX's formula lacks the last-window rule: a standard node would lie about shape
        common: dict[str, Any] = dict(kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads),
                                      ceil_mode=int(a.ceil_mode))
        if a.mode == "max":
            if any(d != 1 for d in a.dilation):
                common["dilations"] = list(a.dilation)
            ex.node("MaxPool", x, [y], n, **common)
            return True
        if a.mode == "avg" and all(d == 1 for d in a.dilation):
            ex.node("AveragePool", x, [y], n, **common)
            return True
        return False
