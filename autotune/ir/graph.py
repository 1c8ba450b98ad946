"""Graph IR: layers, their shapes and costs, a DAG with a deterministic topological order.

Every shape rule and every MAC/byte count lives once, in the op's spec (autotune/ir/ops/); `Layer`
exposes them, and the zoo, the ONNX importer, the simulator and the features read them from it.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from autotune.errors import GraphError
from autotune.ir import ops

Shape = tuple[int, ...]

#: Op kinds of the IR, in code order: one spec each in autotune/ir/ops/. Depthwise convolution is
#: `conv` with groups == in_channels.
OPS = tuple(ops.registry())


@dataclass(frozen=True)
class Attrs:
    """Operator attributes; unused fields keep their defaults."""

    kernel: tuple[int, ...] = (1, 1)  # one entry per spatial axis (1-3)
    stride: tuple[int, ...] = (1, 1)
    pads: tuple[int, ...] = (0, 0, 0, 0)  # begins then ends, as ONNX: (top, left, bottom, right) in 2-D
    dilation: tuple[int, ...] = (1, 1)
    output_padding: tuple[int, ...] = ()  # transposed convolution: extra size at the end of each axis
    groups: int = 1
    out_channels: int = 0  # conv / fc output channels
    bias: bool = True
    act: str = ""  # activation fused as an epilogue (conv, fc, eltwise)
    mode: str = ""  # pool: max|avg; eltwise: add|mul|...; act: relu|...; norm: layer|batch|...
    ceil_mode: bool = False
    axis: int = 1  # concat axis
    shape: Shape = ()  # reshape / resize / opaque: the output shape (batch included)
    # bytes per element of the layer's inputs (and weights) and of its outputs when they are not the
    # datasheet's data type (0): a quantized graph's int8 tensors, an integer matmul's int32 result
    in_elem_bytes: int = 0
    out_elem_bytes: int = 0


def _window_attr(v: int | Sequence[int]) -> tuple[int, ...]:
    """An int means the same value on both axes of a 2-D window; a sequence gives one per axis."""
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


#: Limits on sizes, so absurd inputs are refused rather than overflowing later: any one dimension,
#: and the elements of any one tensor.
MAX_DIM = 2**24
MAX_ELEMS = 2**40


def check_shape(shape: Shape, what: str, name: str) -> None:
    """Every dimension a positive integer up to MAX_DIM, at most MAX_ELEMS elements."""
    for d in shape:
        if not isinstance(d, (int, np.integer)) or d < 1:
            raise GraphError(f"layer {name!r}: {what} {tuple(shape)} has a non-positive or non-integer dimension")
        if d > MAX_DIM:
            raise GraphError(f"layer {name!r}: {what} {tuple(shape)} has a dimension over {MAX_DIM}")
    if math.prod(int(d) for d in shape) > MAX_ELEMS:
        raise GraphError(f"layer {name!r}: {what} {tuple(shape)} has more than {MAX_ELEMS} elements")


def fc_in_features_of(shape: Shape) -> int:
    """What an fc reduces over on an input of `shape`: C*H*W for a 4-D input, else the last axis."""
    return math.prod(shape[1:]) if len(shape) == 4 else shape[-1]


def infer_shapes(op: str, in_shapes: Sequence[Shape], a: Attrs, name: str = "?") -> tuple[Shape, ...]:
    """Output shape(s) of an op from its input shapes and attributes: the one shape rule."""
    sp = ops.spec(op, name)
    if not in_shapes:
        raise GraphError(f"layer {name!r}: has no inputs")
    for s in in_shapes:
        check_shape(s, "input shape", name)
    outs = sp.infer([tuple(s) for s in in_shapes], a, name)
    for s in outs:
        check_shape(s, "output shape", name)
    return outs


@dataclass(frozen=True)
class Layer:
    """One operator: its tensors, shapes, attributes and the costs derived from them."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shapes: tuple[Shape, ...]
    attrs: Attrs = field(default_factory=Attrs)

    @property
    def out_shape(self) -> Shape:
        return self.out_shapes[0]

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]

    def _channels(self, shape: Shape) -> int:
        """Axis 1 of an NCHW map or of any shape a channels-first op (conv, pool) reads; else the last axis."""
        return int(shape[1]) if len(shape) == 4 or (self.spec.channels_first and len(shape) >= 2) else int(shape[-1])

    @property
    def in_channels(self) -> int:
        return self._channels(self.in_shape)

    @property
    def out_channels(self) -> int:
        return self._channels(self.out_shape)

    @property
    def depthwise(self) -> bool:
        return self.op == "conv" and self.attrs.groups > 1 and self.attrs.groups == self.in_channels

    @property
    def fc_in_features(self) -> int:
        """Input features of an fc layer (`fc_in_features_of` its input shape)."""
        return fc_in_features_of(self.in_shape)

    @property
    def spec(self) -> ops.OpSpec:
        """What the tool knows about this layer's op kind (autotune/ir/ops/)."""
        return ops.spec(self.op, self.name)

    @cached_property
    def macs(self) -> int:
        """Multiply-accumulates on the MAC array (conv, fc, matmul); 0 for other ops."""
        return self.spec.macs(self)

    @cached_property
    def vector_ops(self) -> int:
        """Element operations on the vector unit (pooling windows, eltwise, activations, ...)."""
        return self.spec.vector_ops(self)

    @cached_property
    def act_ops(self) -> float:
        """Element operations of the activation fused as the layer's epilogue (`ops.ELEMENT_OPS`): a SiLU
        epilogue costs a vector unit five times a ReLU's, though the layer's shapes are the same. (A
        standalone activation layer's function is its `vector_ops`.)"""
        return ops.element_ops(self.attrs.act) * self.out_elems

    @cached_property
    def weight_elems(self) -> int:
        """Parameter count: weights plus bias (BN already folded into conv/fc)."""
        return self.spec.weight_elems(self)

    @property
    def params(self) -> int:
        return self.weight_elems

    @property
    def in_elems(self) -> int:
        return sum(math.prod(s) for s in self.in_shapes)

    @property
    def out_elems(self) -> int:
        return sum(math.prod(s) for s in self.out_shapes)

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        """Weight bytes: the input's element width where the layer has its own (int8), else `dtype_bytes`."""
        return self.weight_elems * (self.attrs.in_elem_bytes or dtype_bytes)

    def act_bytes(self, dtype_bytes: int = 2) -> int:
        """Activation bytes read and written by this layer on its own (`dtype_bytes` per element unless
        the layer carries its own element widths)."""
        a = self.attrs
        return self.in_elems * (a.in_elem_bytes or dtype_bytes) + self.out_elems * (a.out_elem_bytes or dtype_bytes)


def make_layer(
    name: str, op: str, inputs: Sequence[str], in_shapes: Sequence[Shape], outputs: Sequence[str] | None = None,
    **attrs,
) -> Layer:
    """Build a layer, inferring its output shape(s) with `infer_shapes`."""
    for key in ("kernel", "stride", "dilation", "output_padding"):
        if key in attrs:
            attrs[key] = _window_attr(attrs[key])
    nd = len(attrs.get("kernel", (1, 1)))
    for key in ("stride", "dilation"):  # one value for every axis of a 1-D or 3-D window
        if key in attrs and len(attrs[key]) == 2 and nd != 2 and attrs[key][0] == attrs[key][1]:
            attrs[key] = attrs[key][:1] * nd
        elif key not in attrs and nd != 2:
            attrs[key] = (1,) * nd
    if "pads" in attrs or nd != 2:
        p = attrs.get("pads", 0)
        p = (int(p),) * (2 * nd) if isinstance(p, (int, np.integer)) else tuple(int(v) for v in p)
        attrs["pads"] = p + p if len(p) == nd else p  # per-axis shorthand: the same at both ends
    if "shape" in attrs:
        attrs["shape"] = tuple(int(v) for v in attrs["shape"])
    a = Attrs(**attrs)
    shapes = tuple(tuple(int(d) for d in s) for s in in_shapes)
    outs = infer_shapes(op, shapes, a, name)
    return Layer(name, op, tuple(inputs), tuple(outputs or (name,)), shapes, outs, a)


@dataclass(frozen=True)
class Group:
    """A contiguous run [i, j) of a graph's topological order: one candidate fused kernel."""

    graph: Graph
    i: int
    j: int

    @property
    def layers(self) -> list[Layer]:
        return self.graph.order[self.i : self.j]

    def __len__(self) -> int:
        return self.j - self.i

    def as_graph(self, name: str | None = None) -> Graph:
        """The group as a standalone graph: boundary inputs become graph inputs, and every tensor read
        after it (or a graph output) a graph output, so its one group has the same I/O."""
        # its layers are the validated graph's own: their shapes stand, the op rules need not rerun
        out = Graph(name or self.graph.name, self.layers, dict(self.inputs), list(self.outputs),
                    batch=self.graph.batch).validate(rules=False)
        assert [lyr.name for lyr in out.order] == self.names  # insertion order is already topological
        return out

    @property
    def names(self) -> list[str]:
        return [lyr.name for lyr in self.layers]

    @cached_property
    def _io(self) -> tuple[dict[str, Shape], dict[str, Shape], dict[str, Shape]]:
        g = self.graph
        produced = {}
        for lyr in self.layers:
            for t, s in zip(lyr.outputs, lyr.out_shapes):
                produced[t] = s
        ins: dict[str, Shape] = {}
        for lyr in self.layers:
            for t, s in zip(lyr.inputs, lyr.in_shapes):
                if t not in produced and t not in ins:
                    ins[t] = s
        outs, internal = {}, {}
        for t, s in produced.items():
            if t in g.outputs or g.last_use(t) >= self.j:
                outs[t] = s
            else:
                internal[t] = s
        return ins, outs, internal

    @property
    def inputs(self) -> dict[str, Shape]:
        """Boundary tensors read from DRAM: produced outside the group, read inside."""
        return self._io[0]

    @property
    def outputs(self) -> dict[str, Shape]:
        """Boundary tensors written to DRAM: read after the group, or graph outputs."""
        return self._io[1]

    @property
    def internal(self) -> dict[str, Shape]:
        """Tensors produced and consumed inside the group: may stay on chip."""
        return self._io[2]

    @property
    def macs(self) -> int:
        return sum(lyr.macs for lyr in self.layers)


class Graph:
    """A DAG of layers with named tensors, graph inputs/outputs and a deterministic order."""

    def __init__(
        self, name: str, layers: Iterable[Layer], inputs: dict[str, Shape], outputs: Sequence[str] | None = None,
        batch: int = 1,
    ):
        self.name = name
        self.batch = batch
        self.layers: dict[str, Layer] = {}
        for lyr in layers:
            if lyr.name in self.layers:
                raise GraphError(f"layer {lyr.name!r}: duplicate layer name")
            self.layers[lyr.name] = lyr
        self.inputs = {k: tuple(v) for k, v in inputs.items()}
        self.producer: dict[str, Layer] = {}
        for lyr in self.layers.values():
            for t in lyr.outputs:
                if t in self.producer or t in self.inputs:
                    raise GraphError(f"layer {lyr.name!r}: tensor {t!r} is produced twice")
                self.producer[t] = lyr
        consumed = {t for lyr in self.layers.values() for t in lyr.inputs}
        if outputs is None:
            outputs = [t for t in self.producer if t not in consumed]
        self.outputs = list(outputs)
        self._order: list[Layer] | None = None

    # -- order ------------------------------------------------------------------------------
    @property
    def order(self) -> list[Layer]:
        """Layers in topological order; ties broken by insertion order, so it is deterministic."""
        if self._order is None:
            self._order = self._toposort()
            self._pos = {lyr.name: k for k, lyr in enumerate(self._order)}
            self._last_use: dict[str, int] = {}
            for k, lyr in enumerate(self._order):
                for t in lyr.inputs:
                    self._last_use[t] = k
        return self._order

    def _toposort(self) -> list[Layer]:
        names = list(self.layers)
        index = {n: k for k, n in enumerate(names)}
        indeg = {n: 0 for n in names}
        users: dict[str, list[str]] = {n: [] for n in names}
        for n, lyr in self.layers.items():
            for t in set(lyr.inputs):
                p = self.producer.get(t)
                if p is None:
                    if t not in self.inputs:
                        raise GraphError(f"layer {n!r}: input tensor {t!r} is produced by no layer (dangling)")
                    continue
                indeg[n] += 1
                users[p.name].append(n)
        heap = [index[n] for n in names if indeg[n] == 0]
        heapq.heapify(heap)
        out = []
        while heap:
            n = names[heapq.heappop(heap)]
            out.append(self.layers[n])
            for u in users[n]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(heap, index[u])
        if len(out) != len(names):
            stuck = next(n for n in names if indeg[n] > 0)
            raise GraphError(f"layer {stuck!r}: graph has a cycle through this layer")
        return out

    def position(self, layer_name: str) -> int:
        """Index of a layer in the topological order."""
        _ = self.order
        return self._pos[layer_name]

    def last_use(self, tensor: str) -> int:
        """Position in the order of the last layer reading `tensor` (-1 if none)."""
        _ = self.order
        return self._last_use.get(tensor, -1)

    def group(self, i: int, j: int) -> Group:
        """The group of layers order[i:j]."""
        n = len(self.order)
        if not (0 <= i < j <= n):
            raise IndexError(f"group [{i}, {j}) out of range for {n} layers")
        return Group(self, i, j)

    def __len__(self) -> int:
        return len(self.layers)

    # -- totals -----------------------------------------------------------------------------
    @property
    def total_macs(self) -> int:
        return sum(lyr.macs for lyr in self.layers.values())

    @property
    def params(self) -> int:
        return sum(lyr.weight_elems for lyr in self.layers.values())

    def shape_of(self, tensor: str) -> Shape:
        if tensor in self.inputs:
            return self.inputs[tensor]
        p = self.producer[tensor]
        return p.out_shapes[p.outputs.index(tensor)]

    # -- validation -------------------------------------------------------------------------
    def validate(self, rules: bool = True) -> Graph:
        """Reject cycles, dangling tensors, non-positive dims and shape mismatches, naming the layer;
        with `rules`, also an output shape its op's shape rule does not give."""
        for t, s in self.inputs.items():
            if not s or any(d <= 0 for d in s):
                raise GraphError(f"graph input {t!r}: non-positive shape {s}")
        if not self.layers:
            raise GraphError(f"graph {self.name!r}: has no layers")
        _ = self.order  # raises on cycles and dangling inputs
        for lyr in self.order:
            for s in lyr.in_shapes + lyr.out_shapes:
                if not s or any(d <= 0 for d in s):
                    raise GraphError(f"layer {lyr.name!r}: non-positive shape {s}")
            if len(lyr.in_shapes) != len(lyr.inputs) or len(lyr.out_shapes) != len(lyr.outputs):
                raise GraphError(f"layer {lyr.name!r}: tensor and shape counts differ")
            for t, s in zip(lyr.inputs, lyr.in_shapes):
                if self.shape_of(t) != s:
                    raise GraphError(
                        f"layer {lyr.name!r}: input {t!r} has shape {self.shape_of(t)}, layer expects {s}"
                    )
            if rules and lyr.op not in ("opaque",):
                want = infer_shapes(lyr.op, lyr.in_shapes, lyr.attrs, lyr.name)
                if tuple(want) != tuple(lyr.out_shapes):
                    raise GraphError(f"layer {lyr.name!r}: output shape {lyr.out_shapes} but rule gives {want}")
        for t in self.outputs:
            if t not in self.producer and t not in self.inputs:
                raise GraphError(f"graph output {t!r} is produced by no layer")
        return self

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} layers, batch={self.batch})"


class GraphBuilder:
    """Build a graph one op at a time with shapes inferred; each method returns the output tensor name."""

    def __init__(self, name: str, batch: int = 1):
        self.name, self.batch = name, batch
        self._layers: list[Layer] = []
        self._shapes: dict[str, Shape] = {}
        self._inputs: dict[str, Shape] = {}
        self._count: dict[str, int] = {}

    def _name(self, op: str, name: str | None) -> str:
        if name:
            return name
        k = self._count.get(op, 0) + 1
        self._count[op] = k
        return f"{op}{k}"

    def shape(self, t: str) -> Shape:
        return self._shapes[t]

    def input(self, name: str, shape: Sequence[int]) -> str:
        self._inputs[name] = tuple(int(d) for d in shape)
        self._shapes[name] = self._inputs[name]
        return name

    def add(self, op: str, inputs: Sequence[str], name: str | None = None, **attrs) -> str:
        name = self._name(op, name)
        layer = make_layer(name, op, inputs, [self._shapes[t] for t in inputs], **attrs)
        self._layers.append(layer)
        for t, s in zip(layer.outputs, layer.out_shapes):
            self._shapes[t] = s
        return layer.outputs[0]

    # convenience wrappers -------------------------------------------------------------------
    def conv(self, x: str, out_ch: int, k: int | tuple = 1, stride: int | tuple = 1, pad: int | tuple | None = None,
             groups: int = 1, act: str = "relu", dilation: int = 1, bias: bool = True, name: str | None = None) -> str:
        nd = len(self._shapes[x]) - 2  # 1-3 spatial axes
        ks = (k,) * nd if isinstance(k, int) else tuple(k)
        if pad is None:
            pad = tuple(dilation * (kk - 1) // 2 for kk in ks)
        return self.add("conv", [x], name, out_channels=out_ch, kernel=ks,
                        stride=(stride,) * nd if isinstance(stride, int) else stride,
                        pads=(pad,) * nd if isinstance(pad, int) else pad, groups=groups, act=act,
                        dilation=(dilation,) * nd, bias=bias)

    def deconv(self, x: str, out_ch: int, k: int = 2, stride: int = 2, pad: int = 0, output_padding: int = 0,
               groups: int = 1, act: str = "", bias: bool = True, name: str | None = None) -> str:
        """Transposed convolution (ConvTranspose), the same k, stride and padding on every spatial axis."""
        nd = len(self._shapes[x]) - 2
        return self.add("deconv", [x], name, out_channels=out_ch, kernel=(k,) * nd, stride=(stride,) * nd,
                        pads=(pad,) * (2 * nd), dilation=(1,) * nd, output_padding=(output_padding,) * nd,
                        groups=groups, act=act, bias=bias)

    def dwconv(self, x: str, k: int = 3, stride: int = 1, act: str = "relu", name: str | None = None) -> str:
        c = self._shapes[x][1]
        return self.conv(x, c, k, stride, groups=c, act=act, name=name)

    def pool(self, x: str, k: int, stride: int | None = None, pad: int | tuple = 0, mode: str = "max",
             ceil_mode: bool = False, name: str | None = None) -> str:
        return self.add("pool", [x], name, kernel=k, stride=stride or k, pads=pad, mode=mode, ceil_mode=ceil_mode)

    def gpool(self, x: str, mode: str = "avg", name: str | None = None) -> str:
        return self.add("gpool", [x], name, mode=mode)

    def fc(self, x: str, out: int, act: str = "", bias: bool = True, name: str | None = None) -> str:
        return self.add("fc", [x], name, out_channels=out, act=act, bias=bias)

    def eltwise(self, xs: Sequence[str], mode: str = "add", act: str = "", name: str | None = None) -> str:
        return self.add("eltwise", list(xs), name, mode=mode, act=act)

    def concat(self, xs: Sequence[str], axis: int = 1, name: str | None = None) -> str:
        return self.add("concat", list(xs), name, axis=axis)

    def build(self, outputs: Sequence[str] | None = None) -> Graph:
        return Graph(self.name, self._layers, self._inputs, outputs, batch=self.batch).validate()


# -- serialisation ----------------------------------------------------------------------------
_ATTR_DEFAULTS = Attrs()


def layer_to_dict(lyr: Layer) -> dict:
    """A layer as plain JSON-able data; attributes at their defaults are left out."""
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(lyr.attrs).items()
             if v != getattr(_ATTR_DEFAULTS, k)}
    return {"name": lyr.name, "op": lyr.op, "inputs": list(lyr.inputs), "outputs": list(lyr.outputs),
            "in_shapes": [list(s) for s in lyr.in_shapes], "out_shapes": [list(s) for s in lyr.out_shapes],
            "attrs": attrs}


def layer_from_dict(d: dict) -> Layer:
    attrs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.get("attrs", {}).items()}
    return Layer(d["name"], d["op"], tuple(d["inputs"]), tuple(d["outputs"]),
                 tuple(tuple(s) for s in d["in_shapes"]), tuple(tuple(s) for s in d["out_shapes"]), Attrs(**attrs))


def _graph_head(g: Graph) -> dict:
    return {"name": g.name, "batch": g.batch, "inputs": {k: list(v) for k, v in g.inputs.items()},
            "outputs": list(g.outputs)}


def graph_to_dict(g: Graph) -> dict:
    return {**_graph_head(g), "layers": [layer_to_dict(lyr) for lyr in g.order]}


def graph_json(g: Graph, layers: dict[int, str] | None = None) -> str:
    """`json.dumps(graph_to_dict(g), separators=(",", ":"))`, each layer's JSON taken from `layers`
    (by the layer object's id, filled here) when given: a network's candidate groups share their
    layers, so its tens of thousands of groups serialise each layer once."""
    if layers is None:
        return json.dumps(graph_to_dict(g), separators=(",", ":"))
    parts = []
    for lyr in g.order:
        text = layers.get(id(lyr))
        if text is None:
            text = layers[id(lyr)] = json.dumps(layer_to_dict(lyr), separators=(",", ":"))
        parts.append(text)
    return json.dumps(_graph_head(g), separators=(",", ":"))[:-1] + ',"layers":[' + ",".join(parts) + "]}"


def graph_from_dict(d: dict) -> Graph:
    """Inverse of `graph_to_dict`; validates the result."""
    try:
        layers = [layer_from_dict(x) for x in d["layers"]]
        return Graph(d["name"], layers, {k: tuple(v) for k, v in d["inputs"].items()}, d.get("outputs"),
                     batch=d.get("batch", 1)).validate()
    except (KeyError, TypeError) as err:
        raise GraphError(f"graph description is malformed: {err}") from None
