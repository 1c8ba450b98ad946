"""Layer / RMS / instance / group norm, an unfolded batch norm, LRN: mean, var, sub, mul, add per element."""

from __future__ import annotations

from autotune.ir.ops.base import OpSpec, register


@register
class Norm(OpSpec):
    name = "norm"
    vector_ops_per_elem = 5.0

    def weight_elems(self, lyr):
        mode = lyr.attrs.mode
        return 2 * lyr.out_channels if mode in ("layer", "batch", "instance", "group") else \
            lyr.out_channels if mode == "rms" else 0  # RMSNorm scales, it does not shift

    def to_onnx(self, lyr, ex, y):
        mode, x, xs, n = lyr.attrs.mode, list(lyr.inputs), lyr.in_shape, lyr.name
        if mode == "layer":
            ws = [ex.weight(f"{n}.{k}", (xs[-1],)) for k in ("weight", "bias")]
            ex.node("LayerNormalization", [x[0], *ws], [y], n, axis=-1)
            return True
        if mode == "batch" and len(xs) >= 2:
            ws = [ex.weight(f"{n}.{k}", (xs[1],)) for k in ("weight", "bias", "mean", "var")]
            ex.node("BatchNormalization", [x[0], *ws], [y], n)
            return True
        if mode == "instance" and len(xs) >= 3:
            ws = [ex.weight(f"{n}.{k}", (xs[1],)) for k in ("weight", "bias")]
            ex.node("InstanceNormalization", [x[0], *ws], [y], n)
            return True
        if mode == "rms":  # RMSNormalization is opset 23: written out, as Llama exports it
            import numpy as np

            c = {k: ex.const(f"{n}/{k}", np.array(v, np.float32)) for k, v in (("two", 2.0), ("eps", 1e-6))}
            sq, ms, ad, rt, inv, xn = (ex.fresh(f"{n}/{k}") for k in ("pow", "mean", "add", "sqrt", "inv", "xn"))
            ex.node("Pow", [x[0], c["two"]], [sq], f"{n}/pow")
            ex.node("ReduceMean", [sq], [ms], f"{n}/mean", axes=[-1])
            ex.node("Add", [ms, c["eps"]], [ad], f"{n}/add")
            ex.node("Sqrt", [ad], [rt], f"{n}/sqrt")
            ex.node("Reciprocal", [rt], [inv], f"{n}/inv")
            ex.node("Mul", [x[0], inv], [xn], f"{n}/mul")
            ex.node("Mul", [xn, ex.weight(f"{n}.weight", (xs[-1],))], [y], n)
            return True
        if mode == "lrn" and len(xs) == 4:
            ex.node("LRN", x, [y], n, size=5)
            return True
        return False
