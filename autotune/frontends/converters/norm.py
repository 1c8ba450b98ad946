"""Normalisations: batch norm (folded into its conv/fc when it can be), layer/RMS/instance/group norm, LRN,
and the fused norms of other domains (com.microsoft SkipLayerNormalization, SimplifiedLayerNormalization)."""

from __future__ import annotations

from autotune.frontends.converters import ANY_DOMAIN, converter

NORMS = {"LayerNormalization": "layer", "InstanceNormalization": "instance", "LRN": "lrn",
         "GroupNormalization": "group", "MeanVarianceNormalization": "instance", "RMSNormalization": "rms"}
CUSTOM_NORMS = {"SimplifiedLayerNormalization": "rms", "SkipSimplifiedLayerNormalization": "rms",
                "RMSNorm": "rms", "RMSNormalization": "rms", "LayerNorm": "layer", "LayerNormalization": "layer",
                "SkipLayerNormalization": "layer"}


@converter("BatchNormalization")
def batch_norm(imp, n):
    p = None if imp.explicit else imp.fusable(n.inputs[0], ("conv", "fc", "deconv"))
    if p is not None:
        p.attrs["bias"] = True  # the folded BN shift becomes the bias
        imp.retarget(p, n.outputs[0])
        return
    imp.emit(n, "norm", [n.inputs[0]], mode="batch")


@converter(*NORMS)
def norm(imp, n):
    imp.emit(n, "norm", [n.inputs[0]], mode=NORMS[n.op])


@converter(*CUSTOM_NORMS, domain=ANY_DOMAIN)
def custom_norm(imp, n):
    """A norm spelled by another domain; the Skip* forms add a residual first (an eltwise add)."""
    dyn = imp.dyn(n)
    if not dyn:
        return imp.opaque(n)
    x = dyn[0]
    shape = imp.ir_shape[imp.src(x)]
    if n.op.startswith("Skip") and len(dyn) > 1:
        x = n.outputs[0] + "/skip"
        imp.emit(n, "eltwise", dyn[:2], [x], suffix="/add", mode="add")
    out = n.outputs[0]
    imp.assume_shape(out, shape)
    imp.emit(n, "norm", [x], [out], mode=CUSTOM_NORMS[n.op])
