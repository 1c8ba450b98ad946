"""Dense layer on the last axis, (*, Cin) -> (*, Cout): Gemm, Linear, MatMul with a weight.
A 4-D input is flattened to (N, C*H*W) for free, as deployment compilers do."""

from __future__ import annotations

from autotune.ir.ops.base import OpSpec, prod, register


@register
class FC(OpSpec):
    name = "fc"
    count_as = "fc"

    def infer(self, in_shapes, a, name):
        x = tuple(in_shapes[0])
        return ((x[0], a.out_channels),) if len(x) == 4 else (x[:-1] + (a.out_channels,),)

    def macs(self, lyr):
        return prod(lyr.out_shape) * lyr.fc_in_features

    def weight_elems(self, lyr):
        a = lyr.attrs
        return lyr.fc_in_features * a.out_channels + (a.out_channels if a.bias else 0)

    def reduction_channels(self, lyr):
        return lyr.fc_in_features

    def to_onnx(self, lyr, ex, y):
        a, n, x, xs = lyr.attrs, lyr.name, list(lyr.inputs), lyr.in_shape
        cin = lyr.fc_in_features
        if len(xs) in (2, 4):
            src = x[0]
            if len(xs) == 4:
                src = ex.fresh(f"{x[0]}/flat")
                ex.node("Flatten", [x[0]], [src], f"{n}/flatten", axis=1)
            ins = [src, ex.weight(f"{n}.weight", (a.out_channels, cin))]
            if a.bias:
                ins.append(ex.weight(f"{n}.bias", (a.out_channels,)))
            ex.node("Gemm", ins, [y], n, transB=1)
            return True
        if len(xs) < 2:
            return False
        w = ex.weight(f"{n}.weight", (cin, a.out_channels))
        if not a.bias:
            ex.node("MatMul", [x[0], w], [y], n)
            return True
        t = ex.fresh(f"{y}/matmul")
        ex.node("MatMul", [x[0], w], [t], n)
        ex.node("Add", [t, ex.weight(f"{n}.bias", (a.out_channels,))], [y], f"{n}/bias")
        return True
