"""Softmax along the last axis: max, sub, exp, sum, div per element."""

from __future__ import annotations

from autotune.ir.ops.base import OpSpec, register


@register
class Softmax(OpSpec):
    name = "softmax"
    vector_ops_per_elem = 5.0

    def to_onnx(self, lyr, ex, y):
        ex.node("Softmax", list(lyr.inputs), [y], lyr.name, axis=-1)
        return True
