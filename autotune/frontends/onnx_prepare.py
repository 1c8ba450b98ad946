"""The passes an ONNX import runs before it emits any layer: opset check, toposort, shape inference and
constant folding, the host's tail. The base of `onnx_import.Importer`, kept apart from its emit API."""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections import Counter
from typing import Any

import numpy as np

from autotune.errors import GraphError
from autotune.frontends import converters, onnx_batch, onnx_control
from autotune.frontends.onnx_nodes import BROADCASTING, Node, fold_values
from autotune.frontends.onnx_proto import tensor_value
from autotune.ir.graph import Shape, make_layer

#: One error of ONNX's strict shape inference that is a shape contradiction (its op type, its text).
SHAPE_ERROR = re.compile(r"\(op_type:(\w+)(?:, node name: ([^)]*))?[^)]*\): \[ShapeInferenceError\] ([^\n]*)")
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


def has_schema(n) -> bool:
    """ONNX's shape inference knows the node's op (a default-domain op of the onnx package's opsets)."""
    import onnx

    return isinstance(n.op, str) and n.domain in ("", "ai.onnx") and onnx.defs.has(n.op)


class OnnxImportWarning(UserWarning):
    """Some ONNX ops had no IR mapping and became opaque layers (no MACs counted)."""


class TripCountsKnown(Exception):
    """Raised by an import that found Loop trip counts from shapes: import again with `values` known."""

    def __init__(self, values: dict[str, np.ndarray]):
        super().__init__("trip counts known")
        self.values = values


class Prepared:
    """The model on its way to layers: its nodes in topological order, every tensor's shape, type and
    folded value, and what reads each one. `Importer` (onnx_import.py) sets the attributes declared
    here and runs these passes before its converters emit layers."""

    path: str
    model: Any
    strict: bool
    known: dict[str, np.ndarray]
    again: bool
    dims: dict[str, int]
    _custom_vi: dict | None
    weight_inputs: set[str]
    ir_shape: dict[str, Shape]
    nodes: list[Node]
    check_inlined: bool
    _new_index: itertools.count[int]
    nothing_left: str | None
    static: set[str]
    inputs: list[Any]
    sizes: onnx_batch.InputSizes
    batch: int
    pristine: Any
    pristine_nodes: list[Node]

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
        can be unrolled like a constant one, and a Scan once its scan inputs' shapes are known: raise
        TripCountsKnown with those values (a shape under `onnx_control.shape_key`) so that `load_onnx`
        imports again with them given to `onnx_control.unroll`. Not while a fixed-batch
        file is re-derived at another batch (the count was read at the export's)."""
        found = {}
        for n in self.nodes:
            if n.op == "Loop" and n.domain in ("", "ai.onnx") and n.inputs and n.inputs[0] in self.values:
                for t in n.inputs[:2]:
                    if t and t in self.values and t not in self.known:
                        found[t] = self.values[t]
            if n.op == "Scan" and n.domain in ("", "ai.onnx"):  # its length is its scan inputs' along their axes
                for t in onnx_control.scan_inputs(n.inputs, n.attrs):
                    key = onnx_control.shape_key(t)
                    if self.shapes.get(t) and key not in self.known:
                        found[key] = np.asarray(self.shapes[t], dtype=np.int64)
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
        if not outs or all(t in self.shapes for t in outs) or not has_schema(n):
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
            reads = n.inputs + sorted(outer_reads(n.attrs))
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

    def _drop_dead(self) -> None:
        """Drop the nodes whose outputs nothing live reads (not a graph output, no live node's input,
        nor what a live node's subgraph reads): a compiler never runs them, so they are no layers and
        no data-dependent shape of theirs sends the plan's tail to the host. From the current nodes,
        the file's graph and `pristine` (which rescale starts from) alike."""
        needed = {vi.name for vi in self.model.graph.output}
        live = []
        for n in reversed(self.nodes):  # topological: every reader of a node's outputs comes later
            if any(t in needed for t in n.outputs if t):
                live.append(n)
                needed.update(t for t in n.inputs if t)
                needed |= outer_reads(n.attrs)
        if len(live) == len(self.nodes):
            return
        gone = {t for n in self.nodes for t in n.outputs if t and t not in needed}

        def dead(outputs) -> bool:
            made = [t for t in outputs if t]
            return bool(made) and all(t in gone for t in made)

        self.nodes = live[::-1]
        self.pristine_nodes = [n for n in self.pristine_nodes if not dead(n.outputs)]
        for m in (self.model, self.pristine):
            keep = [p for p in m.graph.node if not dead(p.output)]
            if len(keep) < len(m.graph.node):
                del m.graph.node[:]
                m.graph.node.extend(keep)

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
            for t in set(n.inputs) | {t for t in outer_reads(n.attrs) if t in prod}:  # a subgraph's reads too
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
        custom = {t for n in self.nodes if not has_schema(n) for t in n.outputs}
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
            ins += sorted(outer_reads(n.attrs))  # an If or Loop body reading an activation is no constant
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

def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _bodies(attrs: dict) -> list:
    """The subgraphs (If branches, Loop and Scan bodies) among a node's attribute values."""
    from onnx import GraphProto

    return [g for v in attrs.values() for g in (v if isinstance(v, list) else [v]) if isinstance(g, GraphProto)]


def outer_reads(attrs: dict) -> set[str]:
    """The tensors of the enclosing graph that a node's subgraphs read (at any depth): its inputs
    too, though ONNX does not list them."""
    return _graphs_outer_reads(_bodies(attrs))


def _graphs_outer_reads(graphs: list) -> set[str]:
    """The names `graphs` (GraphProtos) read from outside themselves, their nodes' subgraphs too."""
    out: set[str] = set()
    for g in graphs:
        made = {vi.name for vi in g.input} | {t.name for t in g.initializer}
        for p in g.node:
            inner = sorted(_graphs_outer_reads(onnx_control.subgraphs(p)))
            out |= {t for t in list(p.input) + inner if t and t not in made}
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
    return _graphs_ops(_bodies(attrs))


def _graphs_ops(graphs: list) -> set[str]:
    """The op types in `graphs` (GraphProtos) and their nodes' subgraphs."""
    return {op for g in graphs for p in g.node for op in {p.op_type} | _graphs_ops(onnx_control.subgraphs(p))}


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
