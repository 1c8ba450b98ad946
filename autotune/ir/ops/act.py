"""A standalone activation (relu, sigmoid, gelu, ...)."""

from __future__ import annotations

from autotune.ir.ops.base import OpSpec, register


@register
class Act(OpSpec):
    name = "act"
    vector_ops_per_elem = 1.0

    def to_onnx(self, lyr, ex, y):
        if not ex.can_act(lyr.attrs.mode):
            return False
        ex.act(lyr.attrs.mode, lyr.inputs[0], y, lyr.name, lyr.out_shape)
        return True
