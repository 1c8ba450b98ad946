"""Nodes of autotune's own domain (`ai.autotune`): IR layers `onnx_export` wrote with no standard ONNX
form, their attributes as JSON, so its files map back one to one."""

from __future__ import annotations

import json

from autotune.errors import GraphError
from autotune.frontends.converters import ANY_DOMAIN, converter
from autotune.ir.graph import make_layer

DOMAIN = "ai.autotune"


@converter(ANY_DOMAIN, domain=DOMAIN)
def autotune_layer(imp, n):
    try:
        op = n.attrs["op"].decode()
        attrs = json.loads(n.attrs["attrs"].decode())
    except (KeyError, ValueError, AttributeError):
        raise GraphError(f"custom node of domain {DOMAIN!r} lacks its 'op'/'attrs' attributes") from None
    attrs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()}
    srcs = [imp.src(t) for t in n.inputs if t]
    name = imp.layer_name(n)
    if op == "opaque" or len(n.outputs) > 1:
        shapes = [imp.shape_of(t) for t in n.outputs]
        if "shape" in attrs:
            attrs["shape"] = shapes[0]
        imp.add_layer(imp.pending(name, op, srcs, list(n.outputs), attrs, shapes))
        return
    if "shape" in attrs and n.outputs[0] in imp.shapes:  # as inferred at the sizes imported (--batch)
        attrs["shape"] = imp.shape_of(n.outputs[0])
    layer = make_layer(name, op, srcs, [imp.ir_shape[t] for t in srcs], list(n.outputs), **attrs)
    imp.add_layer(imp.pending(name, op, srcs, list(n.outputs), attrs, list(layer.out_shapes)))
