"""A standalone activation (relu, sigmoid, gelu, ...)."""

from __future__ import annotations

from autotune.ir.ops.base import OpSpec, register

#: Element operations per output element of an activation function, by its textbook formula (a
#: compare, a multiply-add, an exponential, a reciprocal or a log counting one each): what a vector
#: unit does for the function, fused as an epilogue or standalone. A name not listed counts one.
ELEMENT_OPS = {"relu": 1, "relu6": 2, "clip": 2, "leaky_relu": 2, "prelu": 2, "thresholded_relu": 2,
               "hsigmoid": 3, "hswish": 4, "softsign": 3, "sigmoid": 4, "elu": 4, "softplus": 3,
               "silu": 5, "tanh": 5, "selu": 5, "celu": 5, "gelu": 8, "mish": 9}


def element_ops(mode: str) -> float:
    """Element operations per output element of activation `mode` (ELEMENT_OPS; 0 for none)."""
    return float(ELEMENT_OPS.get(mode, 1)) if mode else 0.0


@register
class Act(OpSpec):
    name = "act"
    vector_ops_per_elem = 1.0

    def activation(self, lyr):
        return lyr.attrs.mode

    def to_onnx(self, lyr, ex, y):
        if not ex.can_act(lyr.attrs.mode):
            return False
        ex.act(lyr.attrs.mode, lyr.inputs[0], y, lyr.name, lyr.out_shape)
        return True
