"""Batched matmul of two activations: (..., M, K) @ (..., K, N)."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.ir.ops.base import OpSpec, broadcast, prod, register


@register
class MatMul(OpSpec):
    name = "matmul"
    count_as = "matmul"

    def infer(self, in_shapes, a, name):
        if len(in_shapes) != 2:
            raise GraphError(f"layer {name!r}: matmul needs two inputs")
        x, y = tuple(in_shapes[0]), tuple(in_shapes[1])
        if len(x) < 2 or len(y) < 2 or x[-1] != y[-2]:
            raise GraphError(f"layer {name!r}: matmul shapes {x} and {y} do not agree")
        batch = broadcast([x[:-2] or (1,), y[:-2] or (1,)], name) if (x[:-2] or y[:-2]) else ()
        return (batch + (x[-2], y[-1]),)

    def macs(self, lyr):
        return prod(lyr.out_shape) * lyr.in_shape[-1]

    def to_onnx(self, lyr, ex, y):
        ex.node("MatMul", list(lyr.inputs), [y], lyr.name)
        return True
