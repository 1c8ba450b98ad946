"""ONNX file -> Graph, reading shapes only: weight bytes are never loaded and external data is never followed.

The file is memory-mapped and its protobuf wire format walked by hand to build a small copy without the
large tensor payloads, so a 500 MB model imports in the time a small one does. ONNX shape inference then
gives every tensor's shape, and each node (or known multi-node pattern such as the Erf form of GELU) maps
to one IR layer, with activations, batch norms and biases folded into their producer where possible.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotune.errors import AutotuneError, GraphError
from autotune.frontends import converters, onnx_batch, onnx_control, onnx_patterns
from autotune.frontends.converters.common import same_shape
from autotune.frontends.converters.custom import DOMAIN  # noqa: F401  (the exporter writes it)
from autotune.frontends.onnx_nodes import Node
from autotune.frontends.onnx_prepare import OnnxImportWarning, Prepared, TripCountsKnown, has_schema, outer_reads
from autotune.frontends.onnx_proto import read_model_shapes_only
from autotune.ir.graph import Attrs, Graph, Layer, Shape, make_layer

#: Metadata keys and node marks written by `autotune.frontends.onnx_export` so its files map back 1:1.
FORMAT_KEY = "autotune.format"
WEIGHTS_KEY = "autotune.weights"
BATCH_KEY = "autotune.batch"  # the graph's batch (an input's dim 0 is not always it: a [tokens, features] input)
FUSED_MARK = "autotune:fused"  # doc_string of the node that ends a fused epilogue activation

#: Bytes per element of the ONNX element types a layer keeps as its own width (quantized data); any
#: other type (float, int64 indices, bool masks) counts at the datasheet's data type.
_QUANT_TYPES = {"INT8": 1, "UINT8": 1, "INT4": 1, "UINT4": 1, "FLOAT8E4M3FN": 1, "FLOAT8E4M3FNUZ": 1,
                "FLOAT8E5M2": 1, "FLOAT8E5M2FNUZ": 1, "INT16": 2, "UINT16": 2, "INT32": 4, "UINT32": 4}


def _quant_bytes(elem_type: int) -> int:
    """Bytes per element of ONNX element type `elem_type` if it is quantized data, else 0."""
    from onnx import TensorProto

    return next((b for k, b in _QUANT_TYPES.items() if getattr(TensorProto, k, None) == elem_type), 0)


# -- the importer ------------------------------------------------------------------------------------
@dataclass
class Pending:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    out_shapes: list[Shape] = field(default_factory=list)


class Importer(Prepared):
    """One import: the model, its shapes and folded values, and the IR layers built so far; converters
    (autotune/frontends/converters/) add layers through its helpers."""

    def __init__(self, path: str, model, batch: int | None, strict: bool, dims: dict[str, int] | None = None,
                 known: dict[str, np.ndarray] | None = None, again: bool = False):
        self.path, self.model, self.strict = path, model, strict
        self.known = dict(known or {})  # values an earlier pass found for Loop trip counts (`TripCountsKnown`)
        self.again = again  # whether finding more of them may ask for another pass
        self.dims = dict(dims or {})
        self._custom_vi: dict | None = None
        meta = {p.key: p.value for p in model.metadata_props}
        if model.producer_name == "autotune" and (FORMAT_KEY not in meta or WEIGHTS_KEY not in meta):
            # a file written by export_onnx ends with these keys: without them it was cut short
            raise GraphError(f"written by autotune but its {FORMAT_KEY!r}/{WEIGHTS_KEY!r} metadata is missing "
                             "(truncated?)")
        self.explicit = FORMAT_KEY in meta
        try:
            self.weight_inputs = set(json.loads(meta.get(WEIGHTS_KEY, "[]")))
        except (ValueError, TypeError):
            raise GraphError(f"metadata {WEIGHTS_KEY!r} is not a JSON list of names") from None
        self.batch_override = batch
        self.unsupported: Counter[str] = Counter()
        self.layers: list[Pending] = []
        self.producer: dict[str, Pending] = {}
        self.alias: dict[str, str] = {}
        self.ir_shape: dict[str, Shape] = {}
        self.names: set[str] = set()
        self.folded_quant: set[str] = set()  # Quantize outputs folded into their producer (QDQ models)
        self.folded_dq: dict[str, str] = {}  # the Dequantize output of such a pair -> its Quantize output
        self.nodes: list[Node] = []  # topological (`_toposort`)
        self.check_inlined = False  # whether an inlined If branch is checked by strict inference (`run`)
        self._new_index = itertools.count(len(model.graph.node))  # nodes added during import (an If's branch)
        self.nothing_left: str | None = None  # the error if the host's tail leaves no layer (`_cut_host_tail`)

    # ---- setup
    def run(self) -> Graph:
        self._check_opsets()
        g = self.model.graph
        self.static: set[str] = {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
        self.static |= self.weight_inputs
        # a rank-0 input (a diffusion timestep, a temperature) is a run-time scalar: read like a constant
        self.static |= {vi.name for vi in g.input if vi.type.HasField("tensor_type")
                        and vi.type.tensor_type.HasField("shape") and not vi.type.tensor_type.shape.dim}
        self.inputs = [vi for vi in g.input if vi.name not in self.static]
        if not self.inputs:
            raise GraphError("the graph has no activation inputs (every input is a weight)")
        self.sizes = onnx_batch.resolve(self.inputs, self.batch_override, self.dims, onnx_batch.seq_first_inputs(g),
                                        onnx_batch.unbatched_inputs(g))
        self.batch = self.sizes.batch
        meta = {p.key: p.value for p in self.model.metadata_props}
        if self.explicit and self.batch_override is None and meta.get(BATCH_KEY, "").isdigit():
            self.batch = int(meta[BATCH_KEY])
        self._toposort()
        self._refuse_shape_errors()  # on the file as given, before any batch or --dim rewrite
        self._forget_shapes()  # recorded shapes may carry other sizes: inference redoes them
        self.pristine = type(self.model)()
        self.pristine.CopyFrom(self.model)
        self.pristine_nodes = list(self.nodes)  # the nodes of `pristine` (rescale starts each round from both)
        self.check_inlined = True
        self._shape_loop()
        self.check_inlined = False
        self._drop_dead()
        self._restart_for_known_trip_counts()
        self._cut_host_tail()
        if self.sizes.rescale:
            onnx_batch.rescale(self, self.sizes)
            self._drop_dead()  # an If inlined again at the new sizes: its branch's dead nodes too
        self._count_uses()
        onnx_patterns.fold(self)  # decomposed norms and activations become single nodes
        self._count_uses()
        for n in self.nodes:
            if all(o in self.static or not o for o in n.outputs):
                continue
            try:
                self._map(n)
            except AutotuneError as err:
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): {err}") from None
            except (ValueError, KeyError, IndexError, TypeError) as err:
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): cannot map it: {err}") from None
        if not self.layers:
            raise GraphError(self.nothing_left or "nothing to plan: no node computes the graph's outputs from its "
                             "activation inputs (each output is an input, a constant, or made from constants only)")
        if self.unsupported:
            ops = ", ".join(f"{op} x{k}" for op, k in sorted((str(o), k) for o, k in self.unsupported.items()))
            if self.strict:
                raise GraphError(f"unsupported ONNX ops (strict mode): {ops}")
            warnings.warn(f"{self.path}: unsupported ONNX ops mapped to opaque layers with no MACs: {ops}",
                          OnnxImportWarning, stacklevel=3)
        return self._graph()

    def uses(self, t: str) -> int:
        return len(self.users.get(t, [])) + (t in self.graph_outputs)

    def sole_user(self, t: str) -> Node | None:
        us = self.users.get(t, [])
        return us[0] if len(us) == 1 and t not in self.graph_outputs else None

    def scalar(self, t: str) -> float | None:
        v = self.values.get(t)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    # ---- building layers
    def src(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def shape_of(self, t: str) -> Shape:
        s = self.shapes.get(t)
        if s is None:
            maker = next((n for n in self.nodes if t in n.outputs), None)
            if maker is not None and not has_schema(maker):
                raise GraphError(f"shape of tensor {t!r} is unknown: op {maker.op!r} (domain "
                                 f"{maker.domain or 'ai.onnx'!r}) is no ONNX op this autotune knows, so only a shape "
                                 "declared for its output in the file's value_info can tell it")
            hint = ""
            if self.sizes.rescale:  # a fixed-batch file re-derived: what keeps the export's batch stops here
                hint = (f" at batch {self.batch} (the file was exported at batch {self.sizes.file_batch}; export with "
                        "a dynamic batch axis)")
            raise GraphError(f"shape of tensor {t!r} is unknown and cannot be inferred{hint}")
        return s

    def width(self, t: str) -> int:
        """Bytes per element of tensor `t` where it is quantized data (int8, int32, ...): its producer's
        output width, or its ONNX type's; 0 for float data, indices and masks (the datasheet's type)."""
        s = self.src(t)
        p = self.producer.get(s)
        if p is not None:
            return int(p.attrs.get("out_elem_bytes", 0))
        return _quant_bytes(self.types.get(s, 0))

    def widths(self, n: Node, op: str, srcs: list[str], out: str) -> dict[str, int]:
        """The `in_elem_bytes`/`out_elem_bytes` attributes of a layer of node `n` (only those not 0): an
        output with no ONNX type of its own (a converter's intermediate) is as wide as the input when the
        layer only moves data, else as the node's output."""
        w_in = self.width(srcs[0]) if srcs else 0
        if out in self.types:
            w_out = _quant_bytes(self.types[out])
        else:
            w_out = w_in if op in ("layout", "reshape") else _quant_bytes(self.types.get(n.outputs[0], 0))
        return {k: v for k, v in (("in_elem_bytes", w_in), ("out_elem_bytes", w_out)) if v}

    def layer_name(self, n: Node, suffix: str = "") -> str:
        base = (n.name or f"{n.op.lower()}_{n.index}") + suffix
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def dyn(self, n: Node) -> list[str]:
        return [t for t in n.inputs if t and t not in self.static]

    def emit(self, n: Node, op: str, inputs: list[str], outputs: list[str] | None = None, suffix: str = "",
              **attrs) -> Pending:
        """Add one IR layer; a shape the IR rule cannot reproduce makes it an opaque layer instead."""
        outputs = outputs or [n.outputs[0]]
        srcs = [self.src(t) for t in inputs]
        name = self.layer_name(n, suffix)
        attrs.update(self.widths(n, op, srcs, outputs[0]))
        layer = make_layer(name, op, srcs, [self.ir_shape[t] for t in srcs], outputs, **attrs)
        onnx_shape = self.shapes.get(outputs[0])
        # autotune's own files follow the IR rules; ONNX inference also lacks PyTorch's ceil-mode rule
        # (the last window must start inside the input), which the runtimes apply
        trust_ir = self.explicit or (op == "pool" and attrs.get("ceil_mode"))
        if (op not in ("opaque", "reshape", "resize", "layout") and onnx_shape is not None
                and not same_shape(onnx_shape, layer.out_shape) and not trust_ir):
            if self.strict:
                raise GraphError(f"ONNX gives output shape {onnx_shape}, the IR rule gives {layer.out_shape}")
            self.unsupported[f"{n.op}(shape rule mismatch)"] += 1
            op = "opaque"
            attrs = {"mode": n.op.lower(), "shape": onnx_shape, **self.widths(n, op, srcs, outputs[0])}
            layer = make_layer(name, op, srcs, [self.ir_shape[t] for t in srcs], outputs, **attrs)
        p = Pending(name, op, srcs, list(outputs), dict(attrs), list(layer.out_shapes))
        self.add_layer(p)
        return p

    def add_layer(self, p: Pending) -> None:
        self.layers.append(p)
        for t, s in zip(p.outputs, p.out_shapes):
            self.producer[t] = p
            self.ir_shape[t] = s

    def opaque(self, n: Node, mode: str | None = None) -> None:
        """An op the IR cannot express: bytes moved, no MACs, never fused; named in the warning and
        refused by --strict. An If on a condition known only at run time reads what its branches
        read from outside too (ONNX does not list those as its inputs)."""
        self.unsupported[n.op if n.domain in converters.ONNX_DOMAINS else f"{n.domain}.{n.op}"] += 1
        outs = [t for t in n.outputs if t]
        shapes = [self.shape_of(t) for t in outs]
        implicit = sorted(t for t in outer_reads(n.attrs) if t not in self.static)
        srcs = list(dict.fromkeys(self.src(t) for t in self.dyn(n) + implicit))
        if not srcs:
            raise GraphError("has no activation input")
        attrs = {"mode": mode or n.op.lower(), "shape": shapes[0], **self.widths(n, "opaque", srcs, outs[0])}
        p = Pending(self.layer_name(n), "opaque", srcs, outs, attrs, shapes)
        self.add_layer(p)

    def fusable(self, t: str, ops: tuple[str, ...]) -> Pending | None:
        """The producer of `t` if an epilogue may fold into it: right kind, no activation yet, sole consumer.
        A folded Quantize -> Dequantize pair between them, each read once, does not stand in the way."""
        q = self.folded_dq.get(t)
        if q is not None and self.uses(q) == 1 and self.uses(t) == 1:
            t = self.src(t)
        p = self.producer.get(t)
        if p is None or t in self.alias or p.op not in ops or p.attrs.get("act") or self.uses(t) != 1:
            return None
        if p.outputs != [t]:
            return None
        return p

    def retarget(self, p: Pending, new: str) -> None:
        """`p` now writes `new` (an epilogue folded into it), at `new`'s element width where the file
        types it (a folded Quantize's int8 does not carry over to a float activation after it)."""
        if new in self.types:
            w = _quant_bytes(self.types[new])
            if w:
                p.attrs["out_elem_bytes"] = w
            else:
                p.attrs.pop("out_elem_bytes", None)
        old = p.outputs[0]
        del self.producer[old]
        s = self.ir_shape.pop(old)
        p.outputs = [new]
        self.producer[new] = p
        self.ir_shape[new] = s

    def fc_candidate(self, n: Node, t: str) -> bool:
        if not n.inputs or n.inputs[0] != t or len(n.inputs) < 2 or n.inputs[1] not in self.static:
            return False
        if n.op == "Gemm":
            return not n.attrs.get("transA", 0)
        return n.op == "MatMul" and len(self.shapes.get(n.inputs[1]) or ()) == 2

    def act(self, n: Node, mode: str, x: str | None = None) -> None:
        """Activation `mode` on `x` (the node's first input): an epilogue of its producer where the
        compiler would fuse one, else an act layer."""
        x = x or n.inputs[0]
        marked = n.doc == FUSED_MARK
        p = self.fusable(x, ("conv", "deconv", "fc", "eltwise", "norm", "pool", "gpool", "concat", "matmul", "resize")
                         if marked else ("conv", "deconv", "fc", "eltwise", "norm"))
        if p is not None and (marked if self.explicit else True):
            p.attrs["act"] = mode
            self.retarget(p, n.outputs[0])
            return
        self.emit(n, "act", [x], mode=mode)

    def layout(self, n: Node, x: str, out: str, shape: Shape, kind: str | None = None, extra: Sequence[str] = (),
               suffix: str = "") -> None:
        """`out` (of `shape`) is `x` rearranged: an alias when nothing moves, folded into the fc that
        flattens it, a reshape when only the shape changes, else a `layout` layer of kind `kind`
        (transpose, slice, gather, ...) that also reads the dynamic inputs `extra` (indices)."""
        src = self.src(x)
        s_in = self.ir_shape[src]
        if shape == s_in and not self.explicit and not extra and kind in (None, "expand", "slice", "tile", "pad"):
            self.alias[out] = src
            return
        if kind is None:
            if (len(s_in) == 4 and shape == (s_in[0], math.prod(s_in[1:])) and out not in self.graph_outputs
                    and (n.op == "Flatten" or not self.explicit) and self.users.get(out)
                    and all(self.fc_candidate(u, out) for u in self.users[out])):
                self.alias[out] = src  # fc flattens a 4-D input itself
                return
            if math.prod(shape) == math.prod(s_in):
                self.emit(n, "reshape", [x], [out], suffix=suffix, shape=shape)
                return
            kind = n.op.lower()
        self.emit(n, "layout", [x, *extra], [out], suffix=suffix, shape=shape, mode=kind)

    def alias_of(self, n: Node, x: str) -> None:
        """The node's output is `x` itself (no data moves)."""
        self.alias[n.outputs[0]] = self.src(x)

    def assume_shape(self, t: str, shape: Shape) -> None:
        """Give tensor `t` a shape ONNX inference could not (the output of an op of another domain)."""
        self.shapes.setdefault(t, tuple(shape))

    @staticmethod
    def pending(name: str, op: str, inputs: list[str], outputs: list[str], attrs: dict, shapes: list) -> Pending:
        return Pending(name, op, inputs, outputs, attrs, shapes)

    def _map(self, n: Node) -> None:
        conv = converters.lookup(n.op, n.domain)
        if conv is None:
            return self.opaque(n, mode=n.op.lower() if n.domain in converters.ONNX_DOMAINS else f"{n.domain}.{n.op}")
        conv(self, n)

    def _graph(self) -> Graph:
        layers = []
        for p in self.layers:
            if p.op == "opaque" or len(p.outputs) > 1:
                kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in p.attrs.items()}
                a = Attrs(**kw)
                layers.append(Layer(p.name, p.op, tuple(p.inputs), tuple(p.outputs),
                                    tuple(self.ir_shape[t] for t in p.inputs), tuple(p.out_shapes), a))
            else:
                layers.append(make_layer(p.name, p.op, p.inputs, [self.ir_shape[t] for t in p.inputs],
                                         p.outputs, **p.attrs))
        outs: list[str] = []
        for t in self.graph_outputs:
            if t in self.static:
                continue
            s = self.src(t)
            if s not in outs:
                outs.append(s)
        inputs = {vi.name: self.ir_shape[vi.name] for vi in self.inputs}
        name = self.model.graph.name or os.path.splitext(os.path.basename(self.path))[0]
        used = {t for lyr in layers for t in lyr.inputs} | set(outs)
        inputs = {k: v for k, v in inputs.items() if k in used} or inputs
        return Graph(name, layers, inputs, outs or None, batch=self.batch).validate()


def _inline_functions(model):
    """Nodes that call a function the file defines (torch's `export_modules_as_functions`) become the
    function's body, except where a converter knows the op by name (a local Gelu stays one act)."""
    if not model.functions:
        return model
    import onnx.inliner

    for _ in range(len(model.functions)):  # a function's body may call another
        ids = {(f.domain, f.name) for f in model.functions if converters.lookup(f.name, f.domain) is None}
        if not any((nd.domain, nd.op_type) in ids for nd in model.graph.node):
            break
        model = onnx.inliner.inline_selected_functions(model, sorted(ids))
    return model


def load_onnx(path: str, batch: int | None = None, strict: bool = False, dims: dict[str, int] | None = None) -> Graph:
    """Import an ONNX file as a validated Graph (shapes only).

    `batch` sets the inputs' batch axes (declared by name, else dim 0 of maps, sequences and id
    inputs), re-deriving every shape of a fixed-batch export; `dims` sets symbolic dimensions by
    name (`{"seq": 128}`), each of which must be set. Unsupported ops become opaque layers with one
    OnnxImportWarning, or a GraphError when `strict`.
    """
    path = os.fspath(path)
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise GraphError(f"{path}: batch must be a positive integer, got {batch!r}")
    known: dict[str, np.ndarray] = {}
    try:
        base = _inline_functions(read_model_shapes_only(path))
        for last in (False, False, False, True):  # each pass may unroll Loops the one before sized from shapes
            model = type(base)()
            model.CopyFrom(base)
            model = onnx_control.unroll(model, known)
            try:
                return Importer(path, model, batch, strict, dims, known, again=not last).run()
            except TripCountsKnown as more:
                known.update(more.values)
        raise AssertionError("the last pass never asks for another")
    except GraphError as err:
        msg = str(err)
        raise GraphError(msg if msg.startswith(path) else f"{path}: {msg}") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, RuntimeError) as err:
        # a file that parses as protobuf but breaks ONNX's own rules (fields of the wrong kind, bad UTF-8)
        first = str(err).splitlines()[0] if str(err) else ""
        raise GraphError(f"{path}: malformed ONNX model ({type(err).__name__}: {first})") from None
