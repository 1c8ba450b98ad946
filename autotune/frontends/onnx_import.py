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
import re
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
from autotune.frontends.onnx_nodes import BROADCASTING, Node, fold_values, node_attrs
from autotune.frontends.onnx_proto import read_model_shapes_only, tensor_value
from autotune.ir.graph import Attrs, Graph, Layer, Shape, make_layer

#: Metadata keys and node marks written by `autotune.frontends.onnx_export` so its files map back 1:1.
FORMAT_KEY = "autotune.format"
WEIGHTS_KEY = "autotune.weights"
BATCH_KEY = "autotune.batch"  # the graph's batch (an input's dim 0 is not always it: a [tokens, features] input)
#: One error of ONNX's strict shape inference that is a shape contradiction (its op type, its text).
SHAPE_ERROR = re.compile(r"\(op_type:(\w+)(?:, node name: ([^)]*))?[^)]*\): \[ShapeInferenceError\] ([^\n]*)")
FUSED_MARK = "autotune:fused"  # doc_string of the node that ends a fused epilogue activation
#: Ops whose output size is the data's (the boxes a suppression keeps, the entries that are non-zero):
#: a compiler for a fixed-shape accelerator leaves them, and everything that reads their results, to
#: the host (a detector's post-processing), so the plan covers the rest.
DATA_DEPENDENT = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress"})
#: A folded constant of more elements keeps its shape but not its value (shapes and axes need small
#: values; an index table as large as an attention map would be copied through every inference).
FOLD_MAX_ELEMENTS = 1 << 17
#: Ops whose output shape is the value of some inputs (their indices): data-dependent when one of
#: those values is computed from activations (a TopK whose k is a count of boxes).
SHAPE_BY_VALUE = {"TopK": (1,), "Range": (0, 1, 2), "ConstantOfShape": (0,), "Expand": (1,), "Tile": (1,),
                  "Reshape": (1,), "Slice": (1, 2, 3, 4), "Resize": (2, 3), "Upsample": (1,), "Pad": (1,),
                  "OneHot": (1,), "Split": (1,), "Squeeze": (1,), "Unsqueeze": (1,)}
#: Ops that make an If, Loop or Scan data-dependent when its body holds one (a Loop inside: its trip count).
BODY_DATA_OPS = DATA_DEPENDENT | set(SHAPE_BY_VALUE) | {"Loop"}
#: ONNX ops left to the host that carry real work (named in the warning, so the share of the network
#: the plan does not cover is no surprise: a two-stage detector's box head).
HEAVY_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "RoiAlign", "MaxRoiPool", "LSTM",
                       "GRU", "RNN", "Attention", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})


def _has_schema(n) -> bool:
    """ONNX's shape inference knows the node's op (a default-domain op of the onnx package's opsets)."""
    import onnx

    return isinstance(n.op, str) and n.domain in ("", "ai.onnx") and onnx.defs.has(n.op)


class OnnxImportWarning(UserWarning):
    """Some ONNX ops had no IR mapping and became opaque layers (no MACs counted)."""


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


class TripCountsKnown(Exception):
    """Raised by an import that found Loop trip counts from shapes: import again with `values` known."""

    def __init__(self, values: dict[str, np.ndarray]):
        super().__init__("trip counts known")
        self.values = values


class Importer:
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
        self._restart_for_known_trip_counts()
        self._cut_host_tail()
        if self.sizes.rescale:
            onnx_batch.rescale(self, self.sizes)
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
        if not self.layers and self.nothing_left:
            raise GraphError(self.nothing_left)
        if self.unsupported:
            ops = ", ".join(f"{op} x{k}" for op, k in sorted((str(o), k) for o, k in self.unsupported.items()))
            if self.strict:
                raise GraphError(f"unsupported ONNX ops (strict mode): {ops}")
            warnings.warn(f"{self.path}: unsupported ONNX ops mapped to opaque layers with no MACs: {ops}",
                          OnnxImportWarning, stacklevel=3)
        return self._graph()

    def _check_opsets(self) -> None:
        """Refuse an opset of the default ONNX domain that this onnx package does not know."""
        import onnx

        newest = onnx.defs.onnx_opset_version()
        default = [op for op in self.model.opset_import if op.domain in ("", "ai.onnx")]
        if not default:
            raise GraphError("the model declares no opset for the ONNX domain (a valid file always does; "
                             "truncated?)")
        for op in default:
            if not 1 <= op.version <= newest:
                raise GraphError(f"the model uses opset {op.version} of the ONNX domain; this autotune reads "
                                 f"opsets 1..{newest} (export with an older opset or upgrade onnx)")
        used = {n.domain for n in self.model.graph.node} - {"", "ai.onnx"}
        declared = {op.domain for op in self.model.opset_import}
        if used - declared:
            raise GraphError(f"nodes use domain {sorted(used - declared)[0]!r}, which the model does not declare "
                             "in its opset imports (truncated?)")

    def _shape_loop(self) -> None:
        """ONNX shape inference, then constant folding of shape arithmetic, until nothing new is learnt."""
        for _ in range(len(self.nodes) + 2):  # each fold lets inference reach further (Reshape targets)
            self._infer()
            self._collect_shapes()
            self._fold_static()
            if self._inline_known_ifs():
                if self.check_inlined:  # at the file's sizes: rescale's rounds may hold half-made edits
                    self._refuse_shape_errors()
                continue  # the branch's nodes are new: infer and fold them
            if self._fix_ceil_pools():
                continue  # values folded from the old pool sizes are stale: infer again before inlining
            if self._infer_custom():
                continue  # other domains' outputs now have shapes: inference reaches the ops after them
            if not self._inline_constants():
                break

    def _restart_for_known_trip_counts(self) -> None:
        """A Loop whose trip count folded from shapes (`for i in range(x.shape[1])` in scripted code)
        can be unrolled like a constant one: raise TripCountsKnown with those values so that
        `load_onnx` imports again with them given to `onnx_control.unroll`. Not while a fixed-batch
        file is re-derived at another batch (the count was read at the export's)."""
        found = {}
        for n in self.nodes:
            if n.op == "Loop" and n.domain in ("", "ai.onnx") and n.inputs and n.inputs[0] in self.values:
                for t in n.inputs[:2]:
                    if t and t in self.values and t not in self.known:
                        found[t] = self.values[t]
        if found and self.again and not self.sizes.rescale:
            raise TripCountsKnown(found)

    def _inline_known_ifs(self) -> bool:
        """Each If whose condition folded to a constant (a test on a shape) becomes the branch it
        takes; True if any did."""
        g = self.model.graph
        done = False
        for i in reversed(range(len(g.node))):  # back to front: a replacement moves only later nodes
            p = g.node[i]
            v = self.values.get(p.input[0]) if p.op_type == "If" and p.domain in ("", "ai.onnx") else None
            if v is None or v.size != 1:
                continue
            outs = list(p.output)
            at = next((k for k, n in enumerate(self.nodes) if n.op == "If" and n.outputs == outs), None)
            if at is None:
                continue
            new = onnx_control.inline_branch(g, i, bool(v.reshape(-1)[0]))
            if new is None:
                continue
            self.nodes[at:at + 1] = [Node.of(q, next(self._new_index)) for q in new]
            done = True
        if done:
            self.static.update(t.name for t in g.initializer)  # a branch's own weights
        return done

    def _data_dependent(self, n: Node) -> bool:
        """Node `n` makes a tensor whose shape depends on activation values (see DATA_DEPENDENT); an If
        or Loop does when an op in its body is such an op (torchvision's batched NMS in an If)."""
        outs = [t for t in n.outputs if t and t not in self.static]
        if not outs or all(t in self.shapes for t in outs) or not _has_schema(n):
            return False
        if n.op == "Loop" and (not self._known_value(n.inputs[0] if n.inputs else "")
                               or _computes_condition(n.attrs.get("body"))):
            return True  # no trip count, one computed from activations, or a while loop's exit: the data's
        if n.op in ("If", "Loop", "Scan"):  # a Loop inside, its trip count unknown here as well
            return bool(_body_ops(n.attrs) & BODY_DATA_OPS)
        by_value = [n.inputs[i] for i in SHAPE_BY_VALUE.get(n.op, ()) if i < len(n.inputs) and n.inputs[i]]
        return n.op in DATA_DEPENDENT or not all(map(self._known_value, by_value))

    def _known_value(self, t: str) -> bool:
        """Tensor `t` has a value at import: not computed from activations, nor a run-time scalar input
        (a k, a threshold: static, but with no value)."""
        return bool(t) and t in self.static and t in self.values

    def _cut_host_tail(self) -> None:
        """Leave the nodes from the first data-dependent shape on to the host: they and every node that
        reads what they make leave the graph, whose outputs become the tensors the host reads from it
        (one warning; strict mode refuses)."""
        roots = [n for n in self.nodes if self._data_dependent(n)]
        if not roots:
            return
        first = roots[0]
        where = f"node {first.name or first.op!r} ({first.op})"
        loop = first.op == "Loop"  # what depends on the data: a Loop's work too, not only its shapes
        what = "trip count or output's shape" if loop else "output's shape"
        if self.strict:
            raise GraphError(f"{where}: its {what} depends on the data, so it and what reads it would "
                             "run on the host, outside the plan (strict mode)")
        made: set[str] = set()
        host: list[tuple[Node, list[str]]] = []  # each host node and what it reads (in a subgraph too)
        more = -1  # data-dependent nodes that read no host tensor, past the first
        for n in self.nodes:  # topological: a node reading a host tensor is the host's
            reads = n.inputs + sorted(_outer_reads(n.attrs))
            if n in roots or made.intersection(reads):
                more += not made.intersection(reads)
                host.append((n, reads))
                made.update(t for t in n.outputs if t)
        keep = [n for n in self.nodes if not any(t in made for t in n.outputs if t)]
        given = {vi.name for vi in self.inputs}
        read = list(dict.fromkeys(t for _, reads in host for t in reads
                                  if t and t not in made and t not in self.static and t not in given))
        outs = [vi.name for vi in self.model.graph.output if vi.name not in made] + read
        outs = list(dict.fromkeys(t for t in outs if t not in self.static))
        self.nothing_left = (f"{where}: its {what} depends on the data, and every computation of the "
                             "graph depends on it: nothing is left to plan on the accelerator")
        if not any(t not in given for t in outs):
            raise GraphError(self.nothing_left)
        self.nodes = keep
        self.pristine_nodes = [n for n in self.pristine_nodes if not any(t in made for t in n.outputs if t)]
        for m in (self.model, self.pristine):
            _trim(m, made, outs, self.shapes, self.types)
        heavy = Counter(n.op for n, _ in host if n.op in HEAVY_OPS)
        warnings.warn(f"{self.path}: {_count(len(host), 'node')} from {where}"
                      + (f" and {_count(more, 'other data-dependent node')}" if more else "")
                      + (" on have shapes or trip counts" if loop else " on have shapes")
                      + " that depend on the data; they run on the host and are not planned"
                      + (f", among them {', '.join(f'{op} x{k}' for op, k in sorted(heavy.items()))}" if heavy else "")
                      + f" (the plan ends at the {_count(len(read), 'tensor')} they read)",
                      OnnxImportWarning, stacklevel=4)

    def _toposort(self) -> None:
        import heapq


        g = self.model.graph
        nodes: list[Node] = []
        for i, p in enumerate(g.node):
            nodes.append(Node.of(p, i))
        avail = ({vi.name for vi in g.input} | {t.name for t in g.initializer} | self.weight_inputs
                 | {t.values.name for t in g.sparse_initializer} | {""})
        prod: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for t in n.outputs:
                if t in prod or t in avail - {""}:
                    raise GraphError(f"tensor {t!r} is produced twice (node {n.name or n.op!r})")
                if t:
                    prod[t] = i
        users: list[list[int]] = [[] for _ in nodes]
        indeg = [0] * len(nodes)
        for i, n in enumerate(nodes):
            for t in set(n.inputs):
                if t in avail:
                    continue
                if t not in prod:
                    raise GraphError(f"node {n.name or n.op!r} reads tensor {t!r} that nothing produces (dangling)")
                indeg[i] += 1
                users[prod[t]].append(i)
        heap = [i for i in range(len(nodes)) if indeg[i] == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            i = heapq.heappop(heap)
            order.append(i)
            for u in users[i]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(heap, u)
        if len(order) != len(nodes):
            stuck = next(n for i, n in enumerate(nodes) if indeg[i] > 0)
            raise GraphError(f"the graph has a cycle through node {stuck.name or stuck.op!r}")
        self.nodes = [nodes[i] for i in order]
        if order != sorted(order):  # ONNX shape inference needs topological order
            protos = [g.node[i] for i in order]
            copies = [type(p)() for p in protos]
            for c, p in zip(copies, protos):
                c.CopyFrom(p)
            del g.node[:]
            g.node.extend(copies)

    def _forget_shapes(self, batch: int | None = None) -> None:
        """Drop inferred shapes so inference redoes them at the inputs' current sizes; outputs of ops of
        other domains (which inference cannot redo) keep the file's, the batch and --dim values put in."""
        g = self.model.graph
        custom = {t for n in self.nodes if not _has_schema(n) for t in n.outputs}
        if self._custom_vi is None:  # the file's own shapes, before any size was changed
            self._custom_vi = {}
            for vi in list(g.value_info) + list(g.output):
                if vi.name in custom:
                    self._custom_vi[vi.name] = type(vi)()
                    self._custom_vi[vi.name].CopyFrom(vi)
        b = batch or self.sizes.file_batch or self.batch
        keep = []
        for vi in g.value_info:
            if vi.name in custom:
                keep.append(vi)
        for vi in keep + [vi for vi in g.output if vi.name in custom]:
            orig = self._custom_vi.get(vi.name)
            if orig is None:
                continue
            vi.CopyFrom(orig)
            for i, d in enumerate(vi.type.tensor_type.shape.dim):
                if d.dim_param and (d.dim_param in self.dims or onnx_batch.BATCH_NAMES.match(d.dim_param)):
                    v = self.dims.get(d.dim_param, b)
                    d.Clear()
                    d.dim_value = v
                elif i == 0 and self.sizes.file_batch and d.dim_value == self.sizes.file_batch:
                    d.dim_value = b
        del g.value_info[:]
        g.value_info.extend(keep)
        for vi in g.output:
            if vi.name not in custom and vi.type.tensor_type.HasField("shape"):
                vi.type.tensor_type.ClearField("shape")

    def _infer(self) -> None:
        import onnx

        for data_prop in (True, False):
            try:
                self.model = onnx.shape_inference.infer_shapes(self.model, check_type=False, strict_mode=False,
                                                               data_prop=data_prop)
                return
            except Exception:  # inference is best effort: missing shapes are reported where needed
                continue

    def _refuse_shape_errors(self) -> None:
        """A standard op whose attributes or input shapes contradict each other (a concat axis past
        the rank, a batch norm's parameters of another channel count) is an error, not a guess:
        ONNX's own shape inference, strict, names it. It runs on the nodes alone (declared
        intermediate and output shapes dropped: a stale one is no node's fault), and a contradiction
        counts only if it stands without data propagation too; type disagreements and ops it cannot
        infer stay best effort (`_infer`). An error inside an If, Loop or Scan is no error (a branch
        may not fit the sizes that take the other one): the node is left out and the rest checked,
        and again once an If is inlined (`_shape_loop`)."""
        import onnx

        bare = type(self.model)()
        bare.CopyFrom(self.model)
        del bare.graph.value_info[:]
        for vi in bare.graph.output:
            vi.type.tensor_type.ClearField("shape")
        for _ in range(sum(p.op_type in ("If", "Loop", "Scan") for p in bare.graph.node) + 1):
            found = None
            for data_prop in (True, False):
                try:
                    onnx.shape_inference.infer_shapes(bare, check_type=False, strict_mode=True, data_prop=data_prop)
                    return
                except Exception as err:  # noqa: BLE001 -- only a shape error below is the model's fault
                    found = SHAPE_ERROR.search(str(err))
                    if found is None:
                        return
            assert found is not None
            op, node, text = found.group(1), found.group(2), found.group(3).strip()
            if op in ("If", "Loop", "Scan"):
                at = next((i for i, p in enumerate(bare.graph.node) if p.op_type == op and p.name == node), None)
                if at is None:
                    return
                gone = bare.graph.node[at]
                del bare.graph.node[at]
                bare.graph.input.extend(_shapeless_outputs(gone))  # what reads them is inferred without shapes
                continue
            raise GraphError(f"node {node or op!r} ({op}): {text} (ONNX shape inference)")

    def _collect_shapes(self) -> None:
        from onnx import helper

        g = self.model.graph
        self.shapes: dict[str, Shape | None] = {}
        empty: dict[str, tuple[tuple[int, ...], int]] = {}  # each empty tensor's shape and element type
        given = {vi.name for vi in self.inputs}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                continue
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            if all(d > 0 for d in dims) or not dims:
                self.shapes[vi.name] = tuple(dims)
            elif min(dims) == 0 and vi.name not in given:
                empty[vi.name] = tuple(dims), tt.elem_type  # a slice of nothing (torch's roll by 0): a constant
        for t in g.initializer:
            self.shapes[t.name] = tuple(int(d) for d in t.dims)
        self.types: dict[str, int] = {vi.name: vi.type.tensor_type.elem_type
                                      for vi in list(g.input) + list(g.value_info) + list(g.output)
                                      if vi.type.tensor_type.elem_type}
        self.types.update({t.name: t.data_type for t in g.initializer})
        self.values: dict[str, np.ndarray] = {}
        for t in g.initializer:
            v = tensor_value(t)
            if v is not None:
                self.values[t.name] = v
        for t, (nothing, elem) in empty.items():
            self.shapes[t] = nothing
            # its own element type: an empty piece of a shape concatenated with others keeps it int64
            self.values[t] = np.zeros(nothing, helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32)
            self.static.add(t)
        for vi in self.inputs:
            shape = self.shapes[vi.name]
            if shape is None:
                raise GraphError(f"graph input {vi.name!r} has no fixed shape")
            self.ir_shape[vi.name] = shape
            if any(d <= 0 for d in shape):
                raise GraphError(f"graph input {vi.name!r} has a non-positive dimension")

    def _fold_static(self) -> None:
        """Mark nodes that compute only constants or shapes (no layer) and evaluate what is cheap."""
        for n in self.nodes:
            ins = [t for t in n.inputs[:1 if n.op == "CastLike" else None] if t]  # CastLike reads a type only
            ins += sorted(_outer_reads(n.attrs))  # an If or Loop body reading an activation is no constant
            if n.op == "DynamicQuantizeLinear":  # its scale and zero point: per-tensor scalars, no layer
                self.static.update(t for t in n.outputs[1:] if t)
            if n.op in ("Shape", "Size") or all(t in self.static for t in ins):
                if n.op in ("RandomNormalLike", "RandomUniformLike", "EyeLike") and ins:
                    continue
                self.static.update(t for t in n.outputs if t)
                given = [self.values.get(t) if t else None for t in n.inputs]
                known = [v.shape for v in given if v is not None]
                if n.op in BROADCASTING and known and len(known) == len(given):
                    try:
                        self.shapes.setdefault(n.outputs[0], tuple(np.broadcast_shapes(*known)))
                    except ValueError:
                        pass  # shapes that do not broadcast: folding gives no value either
                if any(math.prod(self.shapes.get(t) or ()) > FOLD_MAX_ELEMENTS for t in n.outputs if t):
                    continue  # its shape is known and its value would not be kept: not computed
                vals = fold_values(n, given, self.shapes)
                for t, v in zip(n.outputs, vals or []):
                    if v is not None:
                        self.shapes.setdefault(t, tuple(int(d) for d in np.shape(v)))
                        if np.size(v) <= FOLD_MAX_ELEMENTS:
                            self.values[t] = np.asarray(v)
                if n.op == "Gather" and not vals and n.outputs[0] not in self.shapes:
                    # a lookup in a constant table by constant indices (token types, positions): its
                    # shape, which inference does not always give when the table's payload was skipped
                    data, idx = self.shapes.get(n.inputs[0]), self.shapes.get(n.inputs[1])
                    if data is not None and idx is not None:
                        ax = int(n.attrs.get("axis", 0)) % len(data)
                        self.shapes[n.outputs[0]] = data[:ax] + idx + data[ax + 1:]

    def _infer_custom(self) -> bool:
        """Shapes of the outputs of other domains' ops that ONNX inference does not know (com.microsoft's
        QLinearAdd, ...), by their rules in autotune/frontends/converters/, written into the graph's value_info so
        inference reaches the ops after them; True if any was added."""
        from onnx import TensorProto, helper

        added = []
        for n in self.nodes:
            got = converters.lookup_shape_rule(n.op, n.domain)
            outs = [t for t in n.outputs if t]
            if got is None or not outs or all(t in self.shapes for t in outs):
                continue
            rule, dtype_from = got
            try:
                shapes = rule(n, [self.shapes.get(t) if t else None for t in n.inputs])
            except (ValueError, TypeError, IndexError, KeyError) as err:
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): {err}") from None
            if shapes is None:
                continue  # an input's shape is not known yet
            src = n.inputs[dtype_from] if dtype_from is not None and dtype_from < len(n.inputs) else ""
            elem = self.types.get(src, TensorProto.FLOAT) if src else TensorProto.FLOAT
            for t, shape in zip(n.outputs, shapes):
                if t and t not in self.shapes:
                    self.shapes[t], self.types[t] = tuple(shape), elem
                    added.append(helper.make_tensor_value_info(t, elem, list(shape)))
        if added:
            g = self.model.graph
            names = {vi.name for vi in added}
            keep = [vi for vi in g.value_info if vi.name not in names]
            del g.value_info[:]
            g.value_info.extend(keep + added)
        return bool(added)

    def _fix_ceil_pools(self) -> bool:
        """Rewrite ceil-mode pools whose ONNX-inferred size breaks the last-window rule that PyTorch and
        ONNX Runtime apply, as floor-mode pools with the end padding that gives the runtime's size."""
        from onnx import helper

        changed = False
        protos = {p.output[0]: p for p in self.model.graph.node if p.output}
        for n in self.nodes:
            x, y = self.shapes.get(n.inputs[0]) if n.inputs else None, self.shapes.get(n.outputs[0])
            if n.op not in ("MaxPool", "AveragePool") or not n.attrs.get("ceil_mode") or not x or not y:
                continue
            ap = n.attrs.get("auto_pad", "NOTSET")
            if len(x) != 4 or (ap.decode() if isinstance(ap, bytes) else ap) != "NOTSET":
                continue
            k, s = list(n.attrs["kernel_shape"]), list(n.attrs.get("strides", [1, 1]))
            d, pads = list(n.attrs.get("dilations", [1, 1])), list(n.attrs.get("pads", [0] * 4))
            want = make_layer("p", "pool", ["x"], [x], kernel=k, stride=s, pads=pads, dilation=d,
                              ceil_mode=True).out_shape
            if want == y:
                continue
            ends = [(o - 1) * st + (kk - 1) * dd + 1 - size - p0
                    for o, st, kk, dd, size, p0 in zip(want[2:], s, k, d, x[2:], pads[:2])]
            if min(ends) < 0:
                continue
            n.attrs["ceil_mode"], n.attrs["pads"] = 0, pads[:2] + ends
            p = protos[n.outputs[0]]
            keep = [a for a in p.attribute if a.name not in ("ceil_mode", "pads")]
            del p.attribute[:]
            p.attribute.extend(keep + [helper.make_attribute("pads", pads[:2] + ends)])
            self._forget_downstream(n.outputs[0])
            changed = True
        return changed

    def _forget_downstream(self, t: str) -> None:
        """Drop the inferred shapes of `t` and of every tensor computed from it, so inference redoes them."""
        stale, grew = {t}, True
        while grew:
            grew = False
            for n in self.nodes:
                if any(i in stale for i in n.inputs) and not all(o in stale for o in n.outputs if o):
                    stale.update(o for o in n.outputs if o)
                    grew = True
        g = self.model.graph
        keep = [vi for vi in g.value_info if vi.name not in stale]
        del g.value_info[:]
        g.value_info.extend(keep)
        for vi in g.output:
            if vi.name in stale:
                vi.type.tensor_type.ClearField("shape")
        for x in stale:
            self.shapes.pop(x, None)

    def _inline_constants(self) -> bool:
        """Replace nodes whose outputs were all folded by initializers; True if inference should rerun."""
        from onnx import numpy_helper

        dynamic_unknown = any(t and t not in self.static and t not in self.shapes
                              for n in self.nodes for t in n.outputs)
        if not dynamic_unknown:
            return False
        g = self.model.graph
        inits = {t.name for t in g.initializer}
        keep: list = []
        new: list = []
        for p in g.node:
            outs = [t for t in p.output if t]
            if outs and all(t in self.values and t not in inits for t in outs):
                new.extend(numpy_helper.from_array(self.values[t], t) for t in outs)
            else:
                keep.append(p)
        # constants whose shape folding found but inference did not (their values unknown): tell it
        told = {vi.name for vi in g.value_info if vi.type.tensor_type.HasField("shape")
                and all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim)}
        hints = [t for p in keep for t in p.output if t in self.static and t in self.shapes and t not in told
                 and t not in self.values]
        if not new and not hints:
            return False
        if hints:
            from onnx import helper

            types = {vi.name: vi.type.tensor_type.elem_type for vi in g.value_info}
            drop = set(hints)
            kept_vi = [vi for vi in g.value_info if vi.name not in drop]
            del g.value_info[:]
            g.value_info.extend(kept_vi + [helper.make_tensor_value_info(t, types.get(t, 1), list(self.shapes[t] or ()))
                                           for t in hints])
        if new:  # an inlined tensor's old value_info (from inference before its value was known) would win
            gone = {t.name for t in new}
            kept_vi = [vi for vi in g.value_info if vi.name not in gone]
            del g.value_info[:]
            g.value_info.extend(kept_vi)
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(new)
        return True

    def _count_uses(self) -> None:
        self.users: dict[str, list[Node]] = {}
        for n in self.nodes:
            if all(o in self.static or not o for o in n.outputs):
                continue
            for t in n.inputs:
                if t:
                    self.users.setdefault(t, []).append(n)
        self.graph_outputs = [vi.name for vi in self.model.graph.output]

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
            if maker is not None and not _has_schema(maker):
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
        refused by --strict."""
        self.unsupported[n.op if n.domain in converters.ONNX_DOMAINS else f"{n.domain}.{n.op}"] += 1
        outs = [t for t in n.outputs if t]
        shapes = [self.shape_of(t) for t in outs]
        srcs = [self.src(t) for t in self.dyn(n)]
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


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _bodies(attrs: dict) -> list:
    """The subgraphs (If branches, Loop and Scan bodies) among a node's attribute values."""
    from onnx import GraphProto

    return [g for v in attrs.values() for g in (v if isinstance(v, list) else [v]) if isinstance(g, GraphProto)]


def _outer_reads(attrs: dict) -> set[str]:
    """The tensors of the enclosing graph that a node's subgraphs read (at any depth): its inputs
    too, though ONNX does not list them."""
    out: set[str] = set()
    for g in _bodies(attrs):
        made = {vi.name for vi in g.input} | {t.name for t in g.initializer}
        for p in g.node:
            out |= {t for t in list(p.input) + sorted(_outer_reads(node_attrs(p))) if t and t not in made}
            made.update(p.output)
    return out


def _shapeless_outputs(p) -> list:
    """ValueInfos of control-flow node `p`'s outputs with their types from its subgraph's outputs
    (a Loop's after its condition) and no shapes."""
    from onnx import TensorProto, ValueInfoProto, helper

    sub = next(iter(onnx_control.subgraphs(p)), None)
    skip = 1 if p.op_type == "Loop" else 0
    types = [o.type for o in sub.output[skip:]] if sub is not None else []
    out = []
    for k, t in enumerate(p.output):
        if not t:
            continue
        if k < len(types):
            vi = ValueInfoProto(name=t)
            vi.type.CopyFrom(types[k])
            if vi.type.HasField("tensor_type"):
                vi.type.tensor_type.ClearField("shape")
        else:
            vi = helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
        out.append(vi)
    return out


def _computes_condition(body) -> bool:
    """A Loop body computes its own exit condition (a while loop, as torch exports one with a trip
    count of INT64_MAX): its condition output is made by a body node, not the incoming condition or
    a constant passed through."""
    if body is None or len(body.output) < 1:
        return False
    made = {o: p for p in body.node for o in p.output}
    t = body.output[0].name
    while t in made and made[t].op_type == "Identity":
        t = made[t].input[0]
    return t in made and made[t].op_type != "Constant"


def _body_ops(attrs: dict) -> set[str]:
    """The op types in a node's subgraphs, at any depth."""
    return {op for g in _bodies(attrs) for p in g.node for op in {p.op_type} | _body_ops(node_attrs(p))}


def _trim(model, gone: set[str], outputs: list[str], shapes: dict, types: dict) -> None:
    """Drop from `model` the nodes that make any tensor in `gone`; its graph outputs become `outputs`."""
    from onnx import TensorProto, helper

    g = model.graph
    keep = [p for p in g.node if not any(t in gone for t in p.output)]
    del g.node[:]
    g.node.extend(keep)
    old = {vi.name: vi for vi in g.output}
    new = [old[t] if t in old else helper.make_tensor_value_info(t, types.get(t, TensorProto.FLOAT),
                                                                 list(shapes.get(t) or ()))
           for t in outputs]
    del g.output[:]
    g.output.extend(new)
    kept_vi = [vi for vi in g.value_info if vi.name not in gone]
    del g.value_info[:]
    g.value_info.extend(kept_vi)


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
