"""Multi-node patterns that exporters decompose and compilers see as one op: LayerNorm and RMSNorm
written as ReduceMean/Sub/Pow/Sqrt/Div/Mul, GELU as its Erf or tanh form, SiLU as x * sigmoid(x),
HardSwish as x * hardsigmoid(x).

Rather than match each exporter's exact node sequence, a pattern is a *region*: element-wise nodes
(and last-axis means) fed by one dynamic tensor x and constants, whose intermediate results are used
only inside it, ending in one tensor with x's shape. Its op mix names what it computes. The region
becomes one node (LayerNormalization, RMSNormalization, Gelu, Silu, HardSwish) for the converters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune.frontends.onnx_nodes import Node

if TYPE_CHECKING:
    from autotune.frontends.onnx_import import Importer

#: Ops a decomposed norm or activation is made of.
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Tanh", "Erf", "Sigmoid", "HardSigmoid",
               "Neg", "Exp", "Cast", "CastLike", "Identity", "ReduceMean", "QuantizeLinear", "DequantizeLinear"}
MARKERS = {"ReduceMean", "Tanh", "Erf", "Sigmoid", "HardSigmoid"}
ALIASES = {"Cast", "CastLike", "Identity"}
#: Ops that only change how values are stored: inside a region they do not count as its math (a QDQ
#: model quantizes a SiLU's sigmoid before its product)
STORAGE = ALIASES | {"QuantizeLinear", "DequantizeLinear"}


def _kind(ops: list[str], products: int) -> str | None:
    """The single op a region's op mix computes, or None if it is none of the known ones. `products`
    counts its Mul/Div of two computed tensors: each of these ops scales x by a function of x."""
    if products < 1:
        return None
    n_mean = ops.count("ReduceMean")
    nonlinear = {"Tanh", "Erf", "Sigmoid", "HardSigmoid", "Exp"} & set(ops)
    if n_mean and nonlinear:
        return None  # a norm and an activation together: two patterns, matched one at a time
    if n_mean == 2 and "Sub" in ops and ("Sqrt" in ops or "Reciprocal" in ops or "Pow" in ops):
        return "LayerNormalization"
    if n_mean == 1 and "Sub" not in ops and ("Sqrt" in ops or "Reciprocal" in ops or "Pow" in ops):
        return "RMSNormalization"
    if n_mean:
        return None
    if nonlinear == {"Erf"} or (nonlinear == {"Tanh"} and "Pow" in ops) or \
            (nonlinear == {"Tanh"} and ops.count("Mul") >= 4):
        return "Gelu"
    if nonlinear == {"Sigmoid"} and products == 1 and len(ops) <= 3:
        return "Silu"
    if nonlinear == {"HardSigmoid"} and products == 1 and len(ops) <= 3:
        return "HardSwish"
    return None


def _last_axis_mean(imp: Importer, n: Node, rank: int) -> bool:
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1] in imp.values:
        axes = imp.values[n.inputs[1]].tolist()
    return axes is not None and [int(a) % rank for a in axes] == [rank - 1] and n.attrs.get("keepdims", 1) == 1


def fold(imp: Importer) -> None:
    """Replace every recognised region in imp.nodes by one node (see module doc)."""
    nodes = imp.nodes
    pos = {n.index: k for k, n in enumerate(nodes)}
    producer = {t: n for n in nodes for t in n.outputs if t}
    users: dict[str, list] = {}
    for n in nodes:
        for t in n.inputs:
            if t:
                users.setdefault(t, []).append(n)
    outputs = set(imp.graph_outputs)
    taken: set[int] = set()
    replace: dict[int, Node] = {}

    def dyn(n: Node) -> list[str]:
        return [t for t in n.inputs if t and t not in imp.static]

    def elementwise(n: Node) -> bool:
        if n.op not in ELEMENTWISE or n.index in taken or n.domain not in ("", "ai.onnx"):
            return False
        if n.op == "ReduceMean":
            s = imp.shapes.get(n.inputs[0])
            return s is not None and _last_axis_mean(imp, n, len(s))
        return True

    def sources(t: str) -> list[str]:
        """Tensors the marker's input is computed from through element-wise math, nearest first: the
        candidates for the pattern's input (a farther one would swallow a bias add before a GELU)."""
        seen, frontier, order = {t}, [t], [t]
        for _ in range(8):
            nxt = []
            for u in frontier:
                p = producer.get(u)
                if p is not None and elementwise(p):
                    for v in dyn(p):
                        if v not in seen:
                            seen.add(v)
                            nxt.append(v)
                            order.append(v)
            frontier = nxt
        return order

    def _match(x: str, m: Node):
        """The largest closed pattern from x through marker m: (nodes, last node, kind), or None."""
        xs = imp.shapes.get(x)
        if xs is None:
            return None
        start = pos[producer[x].index] + 1 if x in producer else 0
        region: list[Node] = []
        same = {x}  # x and its casts: the same values (exporters share a float32 cast with the residual)
        avail = {x}
        for n in nodes[start:pos[m.index] + 64]:
            d = dyn(n)
            if n.op in ALIASES and d and d[0] in same and n.index not in taken:
                same.update(t for t in n.outputs if t)
                avail.update(t for t in n.outputs if t)
            elif d and all(t in avail for t in d) and elementwise(n):
                region.append(n)
                avail.update(t for t in n.outputs if t)
        for end in reversed(region):
            y = end.outputs[0]
            if end.op in STORAGE or imp.shapes.get(y) != xs:  # a trailing Quantize stays the layer's own
                continue
            part = _ancestors(end, region, producer, same)
            if m not in part:
                continue
            inside = {t for n in part for t in n.outputs if t}
            closed = all(all(u in part for u in users.get(t, [])) and t not in outputs
                         for t in inside if t != y)
            products = sum(n.op in ("Mul", "Div") and len(dyn(n)) == 2 for n in part)
            kind = _kind([n.op for n in part if n.op not in STORAGE], products) if closed else None
            if kind is not None:
                return part, end, kind
        return None

    for m in nodes:
        if m.op not in MARKERS or m.index in taken or not elementwise(m):
            continue
        for x in sources(m.inputs[0]):
            got = _match(x, m)
            if got is not None:
                part, end, kind = got
                taken.update(n.index for n in part)
                replace[end.index] = Node(kind, [x], [end.outputs[0]], end.name, {}, "", end.doc, end.index)
                break

    if taken:
        imp.nodes = [replace.get(n.index, n) for n in nodes if n.index not in taken or n.index in replace]


def _ancestors(end: Node, region: list, producer: dict, x: set[str]) -> list:
    """Nodes of `region` that `end` depends on (itself included), in region order."""
    members = {n.index for n in region}
    need, stack = {end.index}, [end]
    while stack:
        n = stack.pop()
        for t in n.inputs:
            p = producer.get(t)
            if t not in x and p is not None and p.index in members and p.index not in need:
                need.add(p.index)
                stack.append(p)
    return [n for n in region if n.index in need]
