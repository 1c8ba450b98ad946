"""Transposed convolution (ConvTranspose, "deconvolution") over 1-3 spatial axes: U-Net and GAN decoders."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.ir.ops.base import SlidingWindow, check_window, prod, register


@register
class Deconv(SlidingWindow):
    name = "deconv"
    count_as = "conv"
    synth_weight = 0.04

    def infer(self, in_shapes, a, name):
        x = tuple(in_shapes[0])
        nd = len(a.kernel)
        if len(x) != 2 + nd or not 1 <= nd <= 3:
            raise GraphError(f"layer {name!r}: deconv with a {nd}-D window needs a {2 + nd}-D input, got {x}")
        op = a.output_padding or (0,) * nd
        if len(a.stride) != nd or len(a.dilation) != nd or len(a.pads) != 2 * nd or len(op) != nd:
            raise GraphError(f"layer {name!r}: deconv needs {nd} strides, dilations and output paddings and "
                             f"{2 * nd} pads")
        check_window(self.name, a, name)
        c = x[1]
        if a.groups < 1 or c % a.groups or a.out_channels % a.groups:
            raise GraphError(f"layer {name!r}: groups={a.groups} does not divide channels {c}->{a.out_channels}")
        # ONNX ConvTranspose / torch.nn.ConvTranspose: (in - 1) * s - pad_begin - pad_end + d * (k - 1) + op + 1
        out = [(size - 1) * a.stride[i] - a.pads[i] - a.pads[nd + i] + a.dilation[i] * (a.kernel[i] - 1) + op[i] + 1
               for i, size in enumerate(x[2:])]
        return ((x[0], a.out_channels, *out),)

    def macs(self, lyr):
        # as torch.utils.flop_counter counts a transposed conv: every input pixel times the whole kernel
        return prod(lyr.in_shape) * (lyr.attrs.out_channels // lyr.attrs.groups) * prod(lyr.attrs.kernel)

    def weight_elems(self, lyr):
        a = lyr.attrs
        return lyr.in_channels * (a.out_channels // a.groups) * prod(a.kernel) + (a.out_channels if a.bias else 0)

    def groups(self, lyr):
        return lyr.attrs.groups

    def window(self, lyr):
        a = lyr.attrs
        k, s = a.kernel, a.stride
        halo = (a.dilation[0] * (k[0] - 1)) // s[0]  # input rows an output row band needs beyond its own
        if len(k) == 1:
            return (k[0], 1, 1, 1, halo)
        return (k[0], prod(k[1:]), 1, 1, halo)

    def synth(self, b, x, rng, channels):
        k, s = [(2, 2), (4, 2), (3, 1), (3, 2)][int(rng.integers(0, 4))]
        return b.deconv(x, channels, k, s, pad=(k - s + 1) // 2 if k > s else 0, act=str(rng.choice(["", "relu"])))

    def to_onnx(self, lyr, ex, y):
        a, n = lyr.attrs, lyr.name
        w = ex.weight(f"{n}.weight", (lyr.in_channels, a.out_channels // a.groups, *a.kernel))
        ins = [lyr.inputs[0], w] + ([ex.weight(f"{n}.bias", (a.out_channels,))] if a.bias else [])
        ex.node("ConvTranspose", ins, [y], n, kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads),
                dilations=list(a.dilation), group=a.groups,
                output_padding=list(a.output_padding or (0,) * len(a.kernel)))
        return True
