"""Global pooling of a feature map to 1x1."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.ir.ops.base import OpSpec, prod, register


@register
class GlobalPool(OpSpec):
    name = "gpool"
    count_as = "pool"

    def infer(self, in_shapes, a, name):
        x = tuple(in_shapes[0])
        if len(x) != 4:
            raise GraphError(f"layer {name!r}: gpool needs a 4-D NCHW input, got {x}")
        return ((x[0], x[1], 1, 1),)

    def vector_ops(self, lyr):
        return prod(lyr.in_shape)  # every input element is read once

    def to_onnx(self, lyr, ex, y):
        if lyr.attrs.mode not in ("avg", "max"):
            return False
        ex.node("GlobalAveragePool" if lyr.attrs.mode == "avg" else "GlobalMaxPool", list(lyr.inputs), [y], lyr.name)
        return True
