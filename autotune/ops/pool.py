"""Max / average pooling over a window."""

from __future__ import annotations

from typing import Any

from .base import SlidingWindow, prod, register


def onnx_ceil_pool_shape(lyr) -> tuple[int, ...]:
    """Output shape ONNX shape inference gives a ceil-mode pool (no 'last window starts inside' rule)."""
    a, (n, c, h, w) = lyr.attrs, lyr.in_shape
    dims = [-(-(size + p0 + p1 - (k - 1) * d - 1) // s) + 1 for size, k, s, p0, p1, d in
            zip((h, w), a.kernel, a.stride, a.pads[:2], a.pads[2:], a.dilation)]
    return (n, c, *dims)


@register
class Pool(SlidingWindow):
    name = "pool"
    count_as = "pool"

    def infer(self, in_shapes, a, name):
        return (self.window_shape(in_shapes, a, name),)

    def vector_ops(self, lyr):
        return prod(lyr.out_shape) * lyr.attrs.kernel[0] * lyr.attrs.kernel[1]

    def to_onnx(self, lyr, ex, y):
        a, x, n = lyr.attrs, list(lyr.inputs), lyr.name
        if a.ceil_mode and onnx_ceil_pool_shape(lyr) != lyr.out_shape:
            return False  # ONNX's formula lacks the last-window rule: a standard node would lie about shape
        common: dict[str, Any] = dict(kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads),
                                      ceil_mode=int(a.ceil_mode))
        if a.mode == "max":
            if a.dilation != (1, 1):
                common["dilations"] = list(a.dilation)
            ex.node("MaxPool", x, [y], n, **common)
            return True
        if a.mode == "avg" and a.dilation == (1, 1):
            ex.node("AveragePool", x, [y], n, **common)
            return True
        return False
