"""Sizes of an ONNX model's inputs: which axis is the batch, symbolic dimensions set by name (`--dim`),
and the batch changed as a graph transform rather than by editing dim 0 of every input.

A model exported at a fixed batch B0 bakes B0 into its Reshape targets (and into constants such as a
class token joined to the tokens). Planning it at batch B re-derives every shape: the inputs' batch
axes change, ONNX shape inference runs again, and each Reshape with a baked target is rewritten so the
batch lands where it belongs in the output; where that cannot be decided, the import stops and names
the node. The result is checked: every tensor either keeps its size or scales by exactly B / B0, as
samples of a batch never interact at inference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from autotune.errors import GraphError
from autotune.frontends.onnx_nodes import fold_values
from autotune.frontends.onnx_proto import read_model_shapes_only, tensor_value

if TYPE_CHECKING:
    from autotune.frontends.onnx_import import Importer

#: Names exporters give a batch axis (torch dynamic_axes / Dim names, HF's, TF's "unk__" is not one).
BATCH_NAMES = re.compile(r"^(n|b|bs|batch|batch_?size|batches|num_?batch(es)?|nbatch|N|B)$", re.IGNORECASE)
#: The largest value `--dim` accepts: beyond any real sequence length or image side.
MAX_DIM = 10_000_000
_INT_TYPES = {2, 3, 4, 5, 6, 7, 9, 12, 13}  # TensorProto uint8..int64, bool, uint32, uint64


def parse_dims(items: Sequence[str] | None) -> dict[str, int]:
    """`--dim NAME=VALUE` items as a dict, one clear error for a malformed one or for a name given
    twice with different values."""
    out: dict[str, int] = {}
    for it in items or ():
        name, eq, val = it.partition("=")
        name, val = name.strip(), val.strip()
        v = int(val) if re.fullmatch(r"[0-9]{1,9}", val) else 0
        if not eq or not name or not 1 <= v <= MAX_DIM:
            raise GraphError(f"--dim {it!r}: expected NAME=VALUE with a whole number VALUE in 1..{MAX_DIM:,} "
                             "(e.g. --dim seq=128)")
        if out.get(name, v) != v:
            raise GraphError(f"--dim {name} is given twice, as {out[name]} and {v}; give it once")
        out[name] = v
    return out


def symbolic_names(path: str) -> set[str]:
    """The names of an ONNX file's symbolic input dimensions."""

    g = read_model_shapes_only(path).graph
    return {d.dim_param for vi in g.input for d in vi.type.tensor_type.shape.dim if d.dim_param}


@dataclass
class InputSizes:
    """What `resolve` decided: the batch axis of each input, the export batch and the wanted one."""

    axes: dict[str, int | None] = field(default_factory=dict)
    file_batch: int | None = None  # the batch the file fixes (None: symbolic or no batch axis)
    batch: int = 1  # the batch planned
    used: set[str] = field(default_factory=set)  # --dim names that matched

    @property
    def rescale(self) -> bool:
        return self.file_batch is not None and self.file_batch != self.batch


#: Recurrent ops whose X input is [seq, batch, features] unless their `layout` attribute is 1.
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})


def seq_first_inputs(graph) -> set[str]:
    """Names of the tensors that feed a recurrent op's X in its default [seq, batch, ...] layout."""
    return {n.input[0] for n in graph.node if n.op_type in RECURRENT_OPS and n.input
            and not any(a.name == "layout" and a.i == 1 for a in n.attribute)}


#: Ops an image passes through, unchanged in rank, before the graph adds its batch axis (normalisation).
_SAME_RANK = frozenset({"Sub", "Div", "Mul", "Add", "Cast", "Identity"})


def unbatched_inputs(graph) -> set[str]:
    """Names of the inputs the graph itself gives a leading batch axis: a single image [C, H, W] whose
    every reader is element-wise normalisation (with constants) or a Shape, ending in an Unsqueeze at
    axis 0 (torchvision's detection exports take a list of such images; their dim 0 is channels, not
    a batch). An input read any other way, say by a MatMul beside a stack, keeps its dim 0 as batch."""
    from onnx import TensorProto, helper

    consts: dict[str, object] = {t.name: t for t in graph.initializer}  # a TensorProto, or a Constant's value
    consts.update({o: helper.get_attribute_value(n.attribute[0]) if n.attribute else None
                   for n in graph.node if n.op_type == "Constant" for o in n.output})
    readers: dict[str, list] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)

    def axes(n) -> list[int]:
        attr = next((list(a.ints) for a in n.attribute if a.name == "axes"), None)
        if attr is not None:
            return attr
        v = consts.get(n.input[1]) if len(n.input) > 1 else None
        v = tensor_value(v) if isinstance(v, TensorProto) else v
        try:
            return [] if v is None else [int(x) for x in np.ravel(np.asarray(v))]
        except (TypeError, ValueError):  # a malformed axes tensor: the Unsqueeze's own mapping says so
            return []

    def one_image(name: str) -> bool:
        frontier, seen, unsqueezed = [name], {name}, False
        while frontier:
            t = frontier.pop()
            for n in readers.get(t, []):
                if n.op_type == "Unsqueeze" and n.input[0] == t and axes(n) in ([0], [-4]):
                    unsqueezed = True
                elif n.op_type in _SAME_RANK and all(u == t or u in consts for u in n.input):
                    frontier += [o for o in n.output if o not in seen]
                    seen.update(n.output)
                elif n.op_type != "Shape":
                    return False
        return unsqueezed

    return {vi.name for vi in graph.input
            if len(vi.type.tensor_type.shape.dim) == 3 and vi.name not in consts and one_image(vi.name)}


def _batch_axis(vi, seq_first: bool = False, unbatched: bool = False) -> int | None:
    """The axis of an input that is its batch: a dim named like one; else none for an input the graph
    batches itself (unbatched_inputs); else dim 0 of a map or sequence (rank >= 3; dim 1 where it feeds
    a recurrent op as [seq, batch, features]), of integer ids (rank 2, [batch, seq]) or of a
    [1, features] row; a rank-2 activation [tokens, features] with more than one row has none."""
    tt = vi.type.tensor_type
    dims = list(tt.shape.dim)
    for i, d in enumerate(dims):
        if d.dim_param and BATCH_NAMES.match(d.dim_param):
            return i
    if not dims or unbatched:
        return None
    if seq_first and len(dims) == 3:
        return 1
    if len(dims) >= 3 or (len(dims) == 2 and tt.elem_type in _INT_TYPES):
        return 0
    if len(dims) == 2 and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
        return 0
    return None


def resolve(inputs: list, batch: int | None, dims: dict[str, int], seq_first: set[str] | None = None,
            unbatched: set[str] | None = None) -> InputSizes:
    """Fix every input dimension in place: symbolic ones from `dims` (by name, or `input.axis`) or, on a
    batch axis, from `batch`; the batch axes at the export batch when the file fixes one (the rescale
    to `batch` comes later). A symbolic dimension left unset is an error naming it and the flag."""
    sz = InputSizes()
    for vi in inputs:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            raise GraphError(f"graph input {vi.name!r} has no shape")
        sz.axes[vi.name] = _batch_axis(vi, vi.name in (seq_first or set()), vi.name in (unbatched or set()))
    fixed = [vi.type.tensor_type.shape.dim[ax].dim_value for vi in inputs
             if (ax := sz.axes[vi.name]) is not None and vi.type.tensor_type.shape.dim[ax].HasField("dim_value")]
    if batch is not None and all(a is None for a in sz.axes.values()):
        shapes = ", ".join(f"{vi.name!r} {[d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]}"
                           for vi in inputs)
        why = ("; ".join(f"{n!r} is one image the graph batches itself" for n in sorted(unbatched or ()))
               or "a 2-D activation is read as [tokens, features]")
        raise GraphError(f"--batch {batch}: no input has a batch axis ({shapes}; {why}); set sizes with "
                         "--dim NAME=VALUE instead")
    sz.file_batch = fixed[0] if fixed else None
    params = sorted({d.dim_param for vi in inputs for d in vi.type.tensor_type.shape.dim if d.dim_param})
    sz.batch = batch or (sz.file_batch or 1)
    for vi in inputs:
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                if d.dim_value <= 0:
                    raise GraphError(f"graph input {vi.name!r} has dimension {i} = {d.dim_value}; dimensions must "
                                     "be positive")
                continue
            key = next((k for k in (d.dim_param, f"{vi.name}.{i}") if k and k in dims), None)
            if key is not None:
                v = dims[key]
                sz.used.add(key)
                if i == sz.axes[vi.name] and (key != d.dim_param or BATCH_NAMES.match(key)):
                    # --dim sizes the batch axis by a batch name or its position: that is the graph's batch
                    if batch is not None and v != batch:
                        raise GraphError(f"--batch {batch} and --dim {key}={v} both size input {vi.name!r}'s batch "
                                         "axis; give one of them")
                    sz.batch = v
            elif i == sz.axes[vi.name]:
                v = sz.file_batch or sz.batch
            else:
                what = f"{d.dim_param!r}" if d.dim_param else "unnamed"
                raise GraphError(f"graph input {vi.name!r} dimension {i} is symbolic ({what}): set it with "
                                 f"--dim {d.dim_param or f'{vi.name}.{i}'}=VALUE")
            d.Clear()
            d.dim_value = v
    unknown = sorted(set(dims) - sz.used)
    if unknown:
        raise GraphError(f"--dim {unknown[0]}: no input has a symbolic dimension of that name"
                         + (f" (it has: {', '.join(params)})" if params else " (every input size is fixed)"))
    return sz


def set_batch(inputs: list, sz: InputSizes, value: int) -> None:
    """Write `value` into every input's batch axis."""
    for vi in inputs:
        ax = sz.axes[vi.name]
        if ax is not None:
            vi.type.tensor_type.shape.dim[ax].dim_value = value


# -- rescaling a fixed-batch export ---------------------------------------------------------------
def _batch_axis_of(s0, sb, b0: int, b: int) -> int | None | str:
    """The axis on which a tensor's shape moved from s0 (export batch) to sb, None if it did not move,
    "bad" if it moved in any other way than one axis scaled by b / b0."""
    if s0 is None or sb is None:
        return "bad"
    if len(s0) != len(sb):
        return "bad"
    diff = [i for i, (x, y) in enumerate(zip(s0, sb)) if x != y]
    if not diff:
        return None
    if len(diff) > 1 or s0[diff[0]] * b != sb[diff[0]] * b0:
        return "bad"
    return diff[0]


def _place(in0: Sequence[int], a: int, lo: int, b0: int, t0: Sequence[int]) -> tuple[int, int] | None:
    """Where the batch goes when a (b0-batch) tensor of shape `in0`, whose batch sits on axis `a` above
    `lo` elements of that axis, is reshaped to `t0`: (output axis, elements of it below the batch).

    At b0 = 1 the batch is a size-1 atom between its neighbours, and several outputs fit; exporters'
    code decides them the same way: a size-b0 axis of its own; else the batch joins the split-off head
    of the next input axis (`bsz * num_heads`); else the axis before it (`tgt_len * bsz`, tokens); else
    the one after (`B * T` flattens)."""
    pre = math.prod(in0[:a]) * (in0[a] // (b0 * lo))  # elements before the batch atom
    post = lo * math.prod(in0[a + 1:])  # elements after it
    nxt = lo if lo > 1 else (in0[a + 1] if a + 1 < len(in0) else 1)  # the atom just after the batch
    own, right, left, after = None, None, None, None
    for j, d in enumerate(t0):
        below = math.prod(t0[j + 1:])
        above = math.prod(t0[:j])
        if d == b0 and below == post and above == pre:
            own = own or (j, 1)
        if d % b0:
            continue
        if above == pre and d > b0 and below * (d // b0) == post:  # batch is the high part of axis j
            cand = (j, d // b0)
            if d // b0 <= nxt and nxt % (d // b0) == 0:
                right = right or cand
            else:
                after = after or cand
        if below == post and d > b0 and above * (d // b0) == pre:  # batch is the low part of axis j
            left = left or (j, 1)
    return own or right or left or after


def rescale(imp: Importer, sz: InputSizes) -> None:
    """Re-derive every shape of a file exported at batch sz.file_batch for batch sz.batch (see module doc).

    Fast path: one topological pass with per-node ONNX inference decides every rewrite, then one full
    inference checks them. Where a node cannot be inferred on its own (an op of another domain, a
    function), rounds of full inference do it instead, each deciding the rewrites it can see."""
    b0, b = sz.file_batch, sz.batch
    assert b0 is not None
    s0: dict[str, tuple[int, ...]] = {k: v for k, v in imp.shapes.items() if v is not None}
    baked = _baked_targets(imp)
    pristine = type(imp.model)()
    pristine.CopyFrom(imp.pristine)
    fast = _forward_edits(imp, sz, s0, baked)
    if fast is not None:
        _apply(imp, pristine, fast, sz, b)
        _check(imp, s0, b0, b)
        return
    lo: dict[str, int] = {}  # tensors whose batch axis is merged: elements of that axis below the batch
    done: set[int] = set()
    edits: list = []  # (node output, input index, new constant): replayed on the file's own graph each round
    for _ in range(len(imp.nodes) + 1):
        # each round starts from the file's graph (folding inlines constants at the sizes it saw)
        _apply(imp, pristine, edits, sz, b)
        sb = imp.shapes
        tainted: set[str] = set()
        changed = False
        for n in imp.nodes:
            outs = [t for t in n.outputs if t]
            if any(t in tainted for t in n.inputs) or not outs:
                tainted.update(outs)
                continue
            if n.op == "Reshape" and n.index in done:
                continue  # decided in an earlier round (with the inner size of its output's batch axis)
            if n.op == "Reshape" and n.inputs[0] not in imp.static:
                done.add(n.index)
                ax = _batch_axis_of(s0.get(n.inputs[0]), sb.get(n.inputs[0]), b0, b)
                if ax is None or n.inputs[1] not in baked:
                    _carry_lo(lo, n, s0, sb, b0, b)
                    continue
                if ax == "bad":
                    raise GraphError(f"node {n.name or n.op!r} (Reshape): cannot re-derive its input's shape at batch "
                                     f"{b} (export with a dynamic batch axis)")
                in0, t0 = s0[n.inputs[0]], s0.get(outs[0])
                got = _place(in0, int(ax), lo.get(n.inputs[0], 1), b0, t0) if in0 and t0 else None
                if got is None or t0 is None:
                    raise GraphError(f"node {n.name or n.op!r} (Reshape): its target {list(t0 or [])} carries the "
                                     f"export batch {b0} in a way that cannot be rewritten for batch {b} (export with "
                                     "a dynamic batch axis)")
                j, lo_out = got
                target = list(t0)
                target[j] = t0[j] // b0 * b
                name = f"{n.inputs[1]}__batch{b}_{n.index}"
                edits.append(_retarget(imp, n, 1, np.array(target, dtype=np.int64), name))
                if lo_out > 1:
                    lo[outs[0]] = lo_out
                tainted.update(outs)
                changed = True
                continue
            if n.op == "Concat" and any(t in imp.static for t in n.inputs) and sb.get(outs[0]) is None:
                new = _broadcast_constants(imp, n, s0, sb, b0, b)
                _rename(imp, n, new)
                edits.extend(new)
                changed |= bool(new)
                tainted.update(outs)
                continue
            _carry_lo(lo, n, s0, sb, b0, b)
        if not changed:
            break
    _check(imp, s0, b0, b)


def _apply(imp: Importer, pristine, edits: list, sz: InputSizes, b: int) -> None:
    """The file's graph with `edits` applied, inferred at batch b."""
    imp.model = type(pristine)()
    imp.model.CopyFrom(pristine)
    imp.nodes = list(imp.pristine_nodes)  # an If inlined in the last round is an If again
    protos = {p.output[0]: p for p in imp.model.graph.node if p.output}
    for out, k, tensor in edits:
        protos[out].input[k] = tensor.name
        imp.model.graph.initializer.append(tensor)
    set_batch([vi for vi in imp.model.graph.input if vi.name in sz.axes], sz, b)
    imp._forget_shapes(b)
    imp._shape_loop()


def _forward_edits(imp: Importer, sz: InputSizes, s0: dict, baked: set[str]) -> list | None:
    """Every rewrite, decided in one topological pass that infers each node on its own at batch b;
    None when some node cannot be (then the round-based path runs). The rewritten nodes' inputs are
    pointed at their new constants, as the round-based path does."""
    import onnx
    from onnx import defs, helper, numpy_helper, shape_inference

    b0, b = sz.file_batch, sz.batch
    assert b0 is not None
    g = imp.pristine.graph
    protos = {p.output[0]: p for p in g.node if p.output}
    opset = {("" if op.domain == "ai.onnx" else op.domain): op.version for op in imp.pristine.opset_import}
    types: dict[str, onnx.TypeProto] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    values: dict[str, np.ndarray] = {}
    for vi in g.input:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        ax = sz.axes.get(vi.name)
        if ax is not None:
            dims[ax] = b
        types[vi.name] = helper.make_tensor_type_proto(vi.type.tensor_type.elem_type, dims)
        shapes[vi.name] = tuple(dims)
    for t in g.initializer:
        types[t.name] = helper.make_tensor_type_proto(t.data_type, list(t.dims))
        shapes[t.name] = tuple(int(d) for d in t.dims)
        if t.name in imp.values:
            values[t.name] = imp.values[t.name]
    lo: dict[str, int] = {}
    edits: list = []
    renamed: dict[tuple[str, int], str] = {}
    for n in imp.nodes:
        p = protos.get(n.outputs[0]) if n.outputs else None
        if p is None or n.domain not in ("", "ai.onnx"):
            return None
        ins = [renamed.get((n.outputs[0], k), t) for k, t in enumerate(p.input)]
        if n.op == "Reshape" and ins[0] not in imp.static and ins[1] in baked:
            where = _batch_axis_of(s0.get(ins[0]), shapes.get(ins[0]), b0, b)
            if where == "bad":
                return None
            if where is not None:
                ax = int(where)
                in0, t0 = s0.get(ins[0]), s0.get(n.outputs[0])
                got = _place(in0, ax, lo.get(ins[0], 1), b0, t0) if in0 and t0 else None
                if got is None or t0 is None:
                    return None
                j, lo_out = got
                target = list(t0)
                target[j] = t0[j] // b0 * b
                name = f"{ins[1]}__batch{b}_{n.index}"
                tensor = numpy_helper.from_array(np.array(target, np.int64), name)
                edits.append((n.outputs[0], 1, tensor))
                renamed[(n.outputs[0], 1)] = name
                ins[1] = name
                values[name] = np.array(target, np.int64)
                types[name] = helper.make_tensor_type_proto(onnx.TensorProto.INT64, [len(target)])
                if lo_out > 1:
                    lo[n.outputs[0]] = lo_out
        if n.op == "Concat" and any(t in imp.static for t in ins) and any(t not in imp.static for t in ins if t):
            for _, k, tensor in _broadcast_constants(imp, n, s0, shapes, b0, b, ins, values):
                edits.append((n.outputs[0], k, tensor))
                renamed[(n.outputs[0], k)] = ins[k] = tensor.name
                types[tensor.name] = helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
                shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
        static = n.op in ("Shape", "Size") or all(t in imp.static for t in ins if t)
        if static:
            vals = fold_values(n, [values.get(t) if t else None for t in ins], shapes)
            if vals and all(v is not None for v in vals):
                for t, v in zip(n.outputs, vals):
                    v = np.asarray(v)
                    values[t] = v
                    shapes[t] = tuple(int(d) for d in v.shape)
                    types[t] = helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
                continue
        try:
            schema = defs.get_schema(n.op, opset.get(n.domain or "", 1), n.domain or "")
            node = helper.make_node(p.op_type, ins, list(p.output), domain=p.domain)
            node.attribute.extend(p.attribute)
            data = {t: numpy_helper.from_array(values[t], t) for t in ins if t in values}
            got_types = shape_inference.infer_node_outputs(schema, node, {t: types[t] for t in ins if t}, data)
        except Exception:  # no schema, a missing input type, an inference error: the rounds decide
            return None
        for t, tp in got_types.items():
            types[t] = tp
            dims = tp.tensor_type.shape.dim
            shapes[t] = tuple(d.dim_value for d in dims) if all(d.HasField("dim_value") for d in dims) else None
        if n.op != "Reshape":
            _carry_lo(lo, n, s0, shapes, b0, b)
    by_out = {n.outputs[0]: n for n in imp.nodes if n.outputs}
    for out, k, tensor in edits:
        _rename(imp, by_out[out], [(out, k, tensor)])
    return edits


def _carry_lo(lo: dict[str, int], n, s0, sb, b0: int, b: int) -> None:
    """A merged batch axis keeps its inner size through ops that keep that axis's extent."""
    src = [lo[t] for t in n.inputs if t in lo]
    if not src:
        return
    for t in n.outputs:
        ax = _batch_axis_of(s0.get(t), sb.get(t), b0, b)
        if isinstance(ax, int) and s0[t][ax] != b0:
            lo[t] = src[0]


def _baked_targets(imp: Importer) -> set[str]:
    """Static tensors not computed from any Shape/Size: constants fixed at export (Reshape targets that
    may carry the export batch), as opposed to shape arithmetic that follows the new sizes."""
    derived: set[str] = set()
    for n in imp.nodes:
        if n.op in ("Shape", "Size") or any(t in derived for t in n.inputs):
            derived.update(t for t in n.outputs if t)
    return {t for t in imp.static if t not in derived}


def _retarget(imp: Importer, n, k: int, value: np.ndarray, name: str) -> tuple:
    """An edit pointing input k of node n at a new constant `value` (the original may be shared)."""
    from onnx import numpy_helper

    imp.static.add(name)
    n.inputs[k] = name
    return (n.outputs[0], k, numpy_helper.from_array(value, name))


def _broadcast_constants(imp: Importer, n, s0, sb, b0: int, b: int, inputs: list[str] | None = None,
                         values: dict | None = None) -> list:
    """A constant joined to batched tensors (a class token, a zero cache) is per sample: repeat it on
    the batch axis. Returns the edits (node output, input index, new constant); `inputs` and
    `values` default to the node's and the importer's."""
    from onnx import TensorProto, numpy_helper

    inputs = list(n.inputs) if inputs is None else inputs
    values = imp.values if values is None else values
    dyn = [t for t in inputs if t and t not in imp.static]
    axes = [_batch_axis_of(s0.get(t), sb.get(t), b0, b) for t in dyn]
    ax = next((a for a in axes if isinstance(a, int)), None)
    if ax is None:
        return []
    edits = []
    for k, t in enumerate(inputs):
        shape = s0.get(t)
        if t not in imp.static or shape is None or len(shape) <= ax or shape[ax] != b0:
            continue
        new = list(shape)
        new[ax] = shape[ax] // b0 * b
        name = f"{t}__batch{b}_{n.index}"
        val = values.get(t)
        if val is not None and val.size * b // b0 <= 65536:
            rep = np.repeat(val, b // b0, axis=ax) if b % b0 == 0 else np.broadcast_to(val.take([0], axis=ax), new)
            tensor = numpy_helper.from_array(np.ascontiguousarray(rep), name)
        else:  # shapes only, like every large payload here
            tensor = TensorProto(name=name, dims=new, data_type=TensorProto.FLOAT)
        edits.append((n.outputs[0], k, tensor))
    return edits


def _rename(imp: Importer, n, edits: list) -> None:
    """Point node n's inputs at the new constants of `edits` (the converters read node inputs)."""
    for _, k, tensor in edits:
        imp.static.add(tensor.name)
        n.inputs[k] = tensor.name


def _check(imp: Importer, s0: dict, b0: int, b: int) -> None:
    """Every dynamic tensor scales by b / b0, or keeps its size where no input it reads scaled; the first
    that does not names its node. A node that keeps the export batch while its input scales (a Resize
    to constant sizes, a Gather by constant indices, a Reshape target with the batch as a literal)
    would leave a graph of mixed batches that a broadcast later hides."""
    now = {t: s for t, s in imp.shapes.items() if s is not None}
    scaled = {t for t, s in s0.items() if t in now and math.prod(now[t]) * b0 == math.prod(s) * b}
    for n in imp.nodes:
        grew = any(t in scaled for t in n.inputs if t)
        for k, t in enumerate(n.outputs):
            if not t or t in imp.static or t not in s0:
                continue
            if k and n.op == "BatchNormalization":
                continue  # a training-mode export's running mean and variance: over the batch, per channel
            sb = imp.shapes.get(t)
            if sb is None:
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): its output shape cannot be re-derived at "
                                 f"batch {b} (export with a dynamic batch axis)")
            e0, eb = math.prod(s0[t]), math.prod(sb)
            if eb != e0 and eb * b0 != e0 * b:
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): at batch {b} its output {list(sb)} is not the "
                                 f"export's {list(s0[t])} scaled by the batch (a Reshape mixes samples; export with "
                                 "a dynamic batch axis)")
            if eb == e0 and grew and not n.op.startswith("Reduce") and n.op not in ("ArgMax", "ArgMin", "TopK"):
                # a reduction or selection over the batch axis (or the whole tensor) may keep its size
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): its output {list(sb)} keeps the export's batch "
                                 f"{b0} while its input is at batch {b} (the file fixes the batch here; export with "
                                 "a dynamic batch axis)")
