"""Layer / RMS / instance / group norm, an unfolded batch norm, LRN: mean, var, sub, mul, add per element."""

from __future__ import annotations

from .base import OpSpec, register


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
        if mode == "lrn" and len(xs) == 4:
            ex.node("LRN", x, [y], n, size=5)
            return True
        return False
