"""Element-wise add / mul / sub / div / max / min / mean of two or more inputs, numpy broadcasting."""

from __future__ import annotations

from autotune.ir.ops.base import OpSpec, broadcast, register

_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "mean": "Mean"}
_VARIADIC = {"add": "Sum", "max": "Max", "min": "Min", "mean": "Mean"}


@register
class Eltwise(OpSpec):
    name = "eltwise"
    count_as = "eltwise"
    vector_ops_per_elem = 1.0

    def infer(self, in_shapes, a, name):
        return (broadcast(in_shapes, name),)

    def vector_ops(self, lyr):
        return int(self.vector_ops_per_elem * max(1, len(lyr.inputs) - 1) * lyr.out_elems)

    def to_onnx(self, lyr, ex, y):
        x, mode = list(lyr.inputs), lyr.attrs.mode
        if len(x) == 1 and mode in _BINARY:  # with a constant (a scale, a mask, a position table)
            import numpy as np

            c = ex.const(f"{lyr.name}/const", np.array(1.0 if mode in ("mul", "div") else 0.0, np.float32))
            ex.node(_BINARY[mode], [x[0], c], [y], lyr.name)
            return True
        if len(x) == 2 and mode in _BINARY:
            ex.node(_BINARY[mode], x, [y], lyr.name)
            return True
        if len(x) > 2 and mode in _VARIADIC:
            ex.node(_VARIADIC[mode], x, [y], lyr.name)
            return True
        return False
