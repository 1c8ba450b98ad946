"""Convolution over 1-3 spatial axes: dense, grouped or depthwise (groups == in_channels); optional fused activation."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.ir.ops.base import SlidingWindow, prod, register


@register
class Conv(SlidingWindow):
    name = "conv"
    count_as = "conv"

    def infer(self, in_shapes, a, name):
        shape = self.window_shape(in_shapes, a, name, a.out_channels)
        c = in_shapes[0][1]
        if a.groups < 1 or c % a.groups or a.out_channels % a.groups:
            raise GraphError(f"layer {name!r}: groups={a.groups} does not divide channels {c}->{a.out_channels}")
        return (shape,)

    def macs(self, lyr):
        return prod(lyr.out_shape) * (lyr.in_channels // lyr.attrs.groups) * prod(lyr.attrs.kernel)

    def weight_elems(self, lyr):
        a = lyr.attrs
        return a.out_channels * (lyr.in_channels // a.groups) * prod(a.kernel) + (a.out_channels if a.bias else 0)

    def groups(self, lyr):
        return lyr.attrs.groups

    def to_onnx(self, lyr, ex, y):
        a, n = lyr.attrs, lyr.name
        w = ex.weight(f"{n}.weight", (a.out_channels, lyr.in_shape[1] // a.groups, *a.kernel))
        ins = [lyr.inputs[0], w] + ([ex.weight(f"{n}.bias", (a.out_channels,))] if a.bias else [])
        ex.node("Conv", ins, [y], n, kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads),
                dilations=list(a.dilation), group=a.groups)
        return True
