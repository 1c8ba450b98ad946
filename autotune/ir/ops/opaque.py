"""Anything else: an op the compiler does not know. Bytes moved, one vector op per element, and it
runs alone (no fusion)."""

from __future__ import annotations

from autotune.ir.ops.base import OpSpec, register


@register
class Opaque(OpSpec):
    name = "opaque"
    fusable = False
    vector_ops_per_elem = 1.0

    def infer(self, in_shapes, a, name):
        return (tuple(a.shape),) if a.shape else (tuple(in_shapes[0]),)
