"""Binary element-wise ops (with bias folding into a bias-less fc/conv), comparisons and Where."""

from __future__ import annotations

import math

from autotune.frontends.converters import converter
from autotune.frontends.converters.common import same_shape

ELTWISE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min", "Sum": "add",
           "Mean": "mean", "Pow": "pow", "Mod": "mod", "Equal": "equal", "Less": "less", "Greater": "greater",
           "LessOrEqual": "less_equal", "GreaterOrEqual": "greater_equal", "And": "and", "Or": "or", "Xor": "xor",
           "Where": "where", "BitShift": "bitshift"}


@converter(*ELTWISE)
def eltwise(imp, n):
    dyn = imp.dyn(n)
    if n.op == "Add" and len(dyn) == 1 and len(n.inputs) == 2:  # a bias after a MatMul or bias-less Conv
        c = n.inputs[1] if n.inputs[0] == dyn[0] else n.inputs[0]
        p = imp.fusable(dyn[0], ("fc", "conv"))
        cs = imp.shapes.get(c)
        if p is not None and not p.attrs.get("bias") and cs is not None:
            cout = p.attrs["out_channels"]
            # the constant must run along the channel axis: (C,) / (1, C) for fc, (C, 1, 1) for conv
            lead = cs[: len(cs) - (3 if p.op == "conv" else 1)]
            if (math.prod(cs) == cout and len(cs) >= (3 if p.op == "conv" else 1)
                    and all(d == 1 for d in lead) and cs[len(lead)] == cout):
                p.attrs["bias"] = True
                imp.retarget(p, n.outputs[0])
                return
    out = imp.shapes.get(n.outputs[0])
    if len(dyn) == 1 and (out is None or not same_shape(out, imp.ir_shape[imp.src(dyn[0])])):
        # a constant operand broadcasts the activation up (a causal mask And-ed with an attention
        # mask, a position table): still one pass, but the result has the constant's extra axes
        tmp = n.outputs[0] + "/b"
        imp.layout(n, dyn[0], tmp, imp.shape_of(n.outputs[0]), kind="expand")
        dyn = [tmp]
    imp.emit(n, "eltwise", dyn, mode=ELTWISE[n.op], act="")
