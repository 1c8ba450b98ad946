"""Upsampling / resize to a given output shape (bilinear: 4 taps per element)."""

from __future__ import annotations

import math

import numpy as np

from autotune.ir.ops.base import OpSpec, register

_MODES = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}


@register
class Resize(OpSpec):
    name = "resize"
    vector_ops_per_elem = 4.0

    def infer(self, in_shapes, a, name):
        return (tuple(a.shape),) if a.shape else (tuple(in_shapes[0]),)

    def to_onnx(self, lyr, ex, y):
        a, xs, out, n = lyr.attrs, lyr.in_shape, lyr.out_shape, lyr.name
        if a.mode not in _MODES or len(out) != len(xs) or len(lyr.inputs) != 1:  # a grid sample: a custom node
            return False
        scales = np.array([o / i for o, i in zip(out, xs)], np.float32)
        if all(math.floor(np.float32(i) * s) == o for i, s, o in zip(xs, scales, out)):
            ins = [lyr.inputs[0], "", ex.const(f"{n}/scales", scales)]  # scales follow a batch override
        else:
            ins = [lyr.inputs[0], "", "", ex.const(f"{n}/sizes", np.array(out, np.int64))]
        ex.node("Resize", ins, [y], n, mode=_MODES[a.mode])
        return True
