"""Concatenation along `axis`: data moved, no arithmetic."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.ir.ops.base import OpSpec, register


@register
class Concat(OpSpec):
    name = "concat"

    def infer(self, in_shapes, a, name):
        x = tuple(in_shapes[0])
        ax = a.axis % len(x)
        for s in in_shapes[1:]:
            if len(s) != len(x) or any(s[i] != x[i] for i in range(len(x)) if i != ax):
                raise GraphError(f"layer {name!r}: concat inputs {list(in_shapes)} differ off axis {ax}")
        return (x[:ax] + (sum(s[ax] for s in in_shapes),) + x[ax + 1:],)

    def to_onnx(self, lyr, ex, y):
        ex.node("Concat", list(lyr.inputs), [y], lyr.name, axis=lyr.attrs.axis)
        return True
