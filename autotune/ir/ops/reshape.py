"""Layout-only ops (reshape, flatten, transpose, slice): data moved, no arithmetic."""

from __future__ import annotations

import numpy as np

from autotune.errors import GraphError
from autotune.ir.ops.base import OpSpec, prod, register


@register
class Reshape(OpSpec):
    name = "reshape"

    def infer(self, in_shapes, a, name):
        x = tuple(in_shapes[0])
        if not a.shape:
            return (x,)
        if prod(a.shape) != prod(x):
            raise GraphError(f"layer {name!r}: reshape {x} -> {a.shape} changes the element count")
        return (tuple(a.shape),)

    def to_onnx(self, lyr, ex, y):
        xs = lyr.in_shape
        # 0 copies the input dim, so a reshape that keeps the batch follows a batch override
        target = [0 if k == 0 and len(xs) and o == xs[0] else o for k, o in enumerate(lyr.out_shape)]
        ex.node("Reshape", [lyr.inputs[0], ex.const(f"{lyr.name}/shape", np.array(target, np.int64))], [y], lyr.name)
        return True
