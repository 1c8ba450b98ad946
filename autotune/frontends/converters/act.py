"""Activations and other one-input element-wise math: fold into the producer as an epilogue where the
compiler would (conv, fc, eltwise, norm), else a standalone act layer."""

from __future__ import annotations

from autotune.frontends.converters import ANY_DOMAIN, converter

ACTS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hswish",
        "HardSigmoid": "hsigmoid", "Gelu": "gelu", "Silu": "silu", "Elu": "elu", "Selu": "selu",
        "Softplus": "softplus", "PRelu": "prelu", "Mish": "mish", "Celu": "celu", "Softsign": "softsign",
        "ThresholdedRelu": "thresholded_relu"}
#: Element-wise math outside a recognised pattern: one vector op per element, like an activation.
UNARY = ("Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Erf", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
         "Not", "IsNaN", "IsInf", "Trilu")
#: Activations as other domains spell them (com.microsoft contrib ops, exporters' local functions).
CUSTOM_ACTS = {"Silu": "silu", "SiLU": "silu", "Swish": "silu", "Gelu": "gelu", "FastGelu": "gelu",
               "BiasGelu": "gelu", "QuickGelu": "gelu", "GeLU": "gelu", "Relu": "relu", "Sigmoid": "sigmoid",
               "HardSwish": "hswish", "Mish": "mish", "Tanh": "tanh"}


@converter(*ACTS)
def activation(imp, n):
    imp.act(n, ACTS[n.op])


@converter("Clip")
def clip(imp, n):
    a = n.attrs
    lo = a.get("min", imp.scalar(n.inputs[1]) if len(n.inputs) > 1 and n.inputs[1] else None)
    hi = a.get("max", imp.scalar(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None)
    imp.act(n, "relu6" if lo == 0 and hi == 6 else "relu" if lo == 0 and hi is None else "clip")


@converter(*UNARY)
def unary(imp, n):
    imp.emit(n, "act", [n.inputs[0]], mode=n.op.lower())


@converter(*CUSTOM_ACTS, domain=ANY_DOMAIN)
def custom_act(imp, n):
    """An activation in another domain: ONNX inference knows nothing of it, so its output takes the
    input's shape (a custom activation with a bias input, like BiasGelu, adds it first)."""
    dyn = imp.dyn(n)
    if not dyn:
        return imp.opaque(n)
    imp.assume_shape(n.outputs[0], imp.ir_shape[imp.src(dyn[0])])
    imp.act(n, CUSTOM_ACTS[n.op], x=dyn[0])
