"""Layout ops: aliases (Identity, Dropout, Cast), reshapes (alias when the shape does not change, folded
into an fc that flattens), and data movement with no arithmetic (Transpose, Slice, Gather, Split,
Concat, Pad, Expand, Tile, ...) as fusable `layout` layers carrying bytes and no MACs."""

from __future__ import annotations

import math

from autotune.frontends.converters import converter

ALIAS = ("Identity", "Dropout", "Cast", "CastLike")
RESHAPES = ("Reshape", "Squeeze", "Unsqueeze")
MOVES = ("Transpose", "Slice", "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Pad", "DepthToSpace",
         "SpaceToDepth", "ReverseSequence", "ScatterND", "ScatterElements")


@converter(*ALIAS)
def alias(imp, n):
    imp.alias_of(n, imp.dyn(n)[0])


@converter(*RESHAPES)
def reshape(imp, n):
    imp.layout(n, n.inputs[0], n.outputs[0], imp.shape_of(n.outputs[0]))


@converter("Flatten")
def flatten(imp, n):
    src = imp.ir_shape[imp.src(n.inputs[0])]
    ax = int(n.attrs.get("axis", 1)) % max(1, len(src))
    imp.layout(n, n.inputs[0], n.outputs[0], (math.prod(src[:ax]), math.prod(src[ax:])))


@converter(*MOVES)
def move(imp, n):
    """The output is a rearrangement (or a selection, or a lookup in a constant table) of the dynamic
    inputs: bytes in and out, no arithmetic. An embedding lookup reads its indices."""
    dyn = imp.dyn(n)
    out = n.outputs[0]
    perm = n.attrs.get("perm")
    if n.op == "Transpose" and perm is not None and list(perm) == sorted(perm):
        return imp.alias_of(n, dyn[0])  # the identity permutation
    imp.layout(n, dyn[0], out, imp.shape_of(out), kind=n.op.lower(), extra=dyn[1:])


@converter("Split")
def split(imp, n):
    """One layout layer per part (a slice each); the compiler fuses them with their readers."""
    x = imp.dyn(n)[0]
    for k, out in enumerate(t for t in n.outputs if t):
        imp.layout(n, x, out, imp.shape_of(out), kind="slice", suffix=f"/{k}")


@converter("Concat")
def concat(imp, n):
    dyn = imp.dyn(n)
    full = [t for t in n.inputs if t and (t in dyn or math.prod(imp.shape_of(t)) > 0)]  # no empty pieces
    if len(full) == 1:
        return imp.alias_of(n, full[0])
    if len(dyn) == len(full):
        return imp.emit(n, "concat", dyn, axis=int(n.attrs.get("axis", 1)))
    # constants joined in (a class token, a cache of zeros): a layout layer writing the whole result
    imp.layout(n, dyn[0], n.outputs[0], imp.shape_of(n.outputs[0]), kind="concat", extra=dyn[1:])
