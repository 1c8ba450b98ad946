"""Control flow resolved at import: Loops with a constant trip count and Scans over inputs of known
length unrolled, tensor sequences folded, and an If whose condition is known replaced by its branch.

Scripted list code (torchvision MViT's pooled attention, split-and-gather helpers) exports as a
Loop with a constant trip count that appends Slices to a tensor sequence, read back by SequenceAt.
A compiler for a fixed-shape accelerator runs such a loop unrolled, and so does the importer: each
iteration becomes straight-line nodes, and a sequence whose every position is known at import
becomes the tensors it holds. An If on a shape (`if x.shape[1] == 1: x = x.squeeze(1)`) runs one
branch for a given input size, so it becomes that branch once shapes are known. What cannot be
done exactly is left as it was.
"""

from __future__ import annotations

import itertools

import numpy as np

from autotune.frontends.onnx_nodes import Node, fold_values, node_attrs
from autotune.frontends.onnx_proto import tensor_value

#: A Loop or Scan whose unrolled body would pass this many nodes stays as it is (its work is not planned).
MAX_UNROLLED_NODES = 20_000
#: Ops whose value folding at this stage may compute (no shapes known yet).
_CHEAP = frozenset({"Constant", "Identity", "Cast", "Add", "Sub", "Mul", "Div", "Neg", "Gather", "Concat",
                    "Unsqueeze", "Squeeze", "Slice", "Equal", "Less", "Greater", "Not", "And", "Or", "Min", "Max"})
SEQUENCE_OPS = frozenset({"SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceAt",
                          "SequenceLength", "ConcatFromSequence", "SplitToSequence"})


def unroll(model, known: dict[str, np.ndarray] | None = None):
    """`model` (changed in place and returned) with its constant-trip Loops unrolled, then its
    sequences folded when every sequence op can be (else they stay, and the importer reports them).
    `known`: values the importer found for tensors of the graph (a trip count read off a shape)."""
    budget = MAX_UNROLLED_NODES
    names = _all_names(model.graph)
    opset = _opset(model)
    while True:  # an inner Loop's trip count may be known only once the outer one is unrolled
        values = _constants(model.graph, known)
        nodes: list = []
        alias: dict[str, str] = {}
        changed = False
        for p in model.graph.node:
            loop = p.op_type in ("Loop", "Scan") and p.domain in ("", "ai.onnx")
            body = _body(p) if loop else None
            if body is None:
                m = None
            elif p.op_type == "Loop":
                m = _trip_count(p, body, values)
            else:
                m = _scan_length(p, body, values, opset)
            cost = _unrolled_size(p, body, m) if m and body else 0
            if m is None or body is None or cost > budget:
                nodes.append(p)
                continue
            budget -= cost
            unroll_node = _unroll_one if p.op_type == "Loop" else _unroll_scan
            nodes += unroll_node(model.graph, p, body, m, names, opset, alias)
            changed = True
        if not changed:
            break
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        _apply_alias(model.graph, alias, names)
    if any(p.op_type in SEQUENCE_OPS for p in model.graph.node):
        _fold_sequences(model, names)
    return model


def _opset(model) -> int:
    return next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 1)


def _body(p):
    return next((a.g for a in p.attribute if a.name == "body" and a.type == a.GRAPH), None)


def subgraphs(q) -> list:
    """NodeProto `q`'s subgraphs (If branches, Loop and Scan bodies)."""
    return [g for a in q.attribute for g in ([a.g] if a.HasField("g") else []) + list(a.graphs)]


def _all_names(g, skip: int = -1) -> set[str]:
    """Every tensor and node name in graph `g` and its subgraphs, but node `skip`'s (new names must
    avoid them)."""
    out = {vi.name for vi in list(g.input) + list(g.output) + list(g.value_info)} | {t.name for t in g.initializer}
    for i, p in enumerate(g.node):
        if i == skip:
            continue
        out.update(p.input)
        out.update(p.output)
        out.add(p.name)
        for sub in subgraphs(p):
            out |= _all_names(sub)
    return out


def _fresh(base: str, names: set[str]) -> str:
    name = base
    for k in itertools.count(1):
        if name not in names:
            break
        name = f"{base}_{k}"
    names.add(name)
    return name


def _constants(g, outer: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Values known from the file alone: initializers, Constant nodes and cheap ops on them (a
    subgraph's on top of the enclosing graph's `outer`)."""
    values: dict[str, np.ndarray] = dict(outer or {})
    for t in g.initializer:
        v = tensor_value(t)
        if v is not None:
            values[t.name] = v
    for p in g.node:
        if p.op_type not in _CHEAP or p.domain not in ("", "ai.onnx"):
            continue
        if not all(t in values for t in p.input if t):
            continue
        try:
            got = fold_values(Node.of(p), [values.get(t) if t else None for t in p.input], {})
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            got = None
        for t, v in zip(p.output, got or []):
            if t and v is not None:
                values[t] = np.asarray(v)
    return values


def _scalar(values: dict, t: str):
    v = values.get(t)
    return v.reshape(-1)[0].item() if v is not None and v.size == 1 else None


def _trip_count(p, body, values: dict) -> int | None:
    """The Loop's trip count when it is a constant and no condition can stop it early, else None."""
    m = _scalar(values, p.input[0]) if p.input and p.input[0] else None
    if not isinstance(m, int) or m < 1 or len(body.input) < 2 or len(body.output) < 1:
        return None
    if len(p.input) > 1 and p.input[1] and _scalar(values, p.input[1]) is not True:
        return None
    made = {o: q for q in body.node for o in q.output}
    t = body.output[0].name  # the condition each iteration hands on: passed through, or a constant true
    while t in made and made[t].op_type == "Identity":
        t = made[t].input[0]
    if t == body.input[1].name:
        return m
    if t in made:  # the body's own names hide the enclosing graph's
        local = {vi.name for vi in body.input} | set(made)
        values = _constants(body, {k: v for k, v in values.items() if k not in local})
    return m if _scalar(values, t) is True else None


def _unroll_one(g, p, body, m: int, names: set[str], opset: int, alias: dict[str, str]) -> list:
    """The nodes that replace Loop node `p`: `m` renamed copies of its body, chained through its
    carried values (its final carried values recorded in `alias`), its scan outputs stacked (one
    nothing reads is dropped with its steps by the importer's dead-node pass); constants go to `g`."""
    from onnx import TensorProto, helper, numpy_helper

    n_carried = len(p.input) - 2
    carried = list(p.input[2:])
    scans: list[list[str]] = [[] for _ in body.output[1 + n_carried:]]
    new_nodes: list = []
    consts = _hoist_constants(g, body, "loop", names)
    read = _reads(body)
    true = _fresh(f"{p.name or 'loop'}/cond", names)
    if body.input[1].name in read:
        g.initializer.append(numpy_helper.from_array(np.array(True), true))
    elem = helper.tensor_dtype_to_np_dtype(body.input[0].type.tensor_type.elem_type or TensorProto.INT64)
    for k in range(m):
        it = _fresh(f"{p.name or 'loop'}/iter{k}", names)
        if body.input[0].name in read:
            g.initializer.append(numpy_helper.from_array(np.array(k, dtype=elem), it))
        rename = dict(consts)
        rename[body.input[0].name] = it
        rename[body.input[1].name] = true
        rename.update({vi.name: t for vi, t in zip(body.input[2:], carried)})
        outs = _body_copy(body, rename, f"{p.name or 'loop'}/iter{k}", f"__iter{k}", names, new_nodes)
        carried = outs[1:1 + n_carried]
        for s, t in zip(scans, outs[1 + n_carried:]):
            s.append(t)
    alias.update({o: t for o, t in zip(p.output[:n_carried], carried) if o})
    for o, parts in zip(p.output[n_carried:], scans):
        if not o:
            continue
        new_nodes += _stack(parts, o, 0, opset, names, g.initializer)  # each iteration's value on a new axis
    return new_nodes


def _unrolled_size(p, body, m: int) -> int:
    """About how many nodes unrolling Loop or Scan `p` `m` times adds: per trip its body's nodes, an
    iteration number (Loop) or a Gather per scan input (Scan), a scan output's Unsqueeze."""
    if p.op_type == "Loop":
        return m * (len(body.node) + 1 + 2 * max(0, len(body.output) - len(p.input) + 1))
    n_scan = len(scan_inputs(list(p.input), node_attrs(p)))
    return m * (len(body.node) + 2 * n_scan + 2 * (len(body.output) - len(p.input) + n_scan))


def shape_key(t: str) -> str:
    """The name under which the importer hands `unroll` tensor `t`'s shape (as a value), for a Scan
    whose length is read off its scan inputs."""
    return f"{t}::shape"


def scan_inputs(inputs: list[str], attrs: dict) -> list[str]:
    """A Scan node's scan inputs (after its carried states) from its `inputs` and attributes, or none
    if it declares no valid count."""
    m = attrs.get("num_scan_inputs")
    return list(inputs[len(inputs) - m:]) if isinstance(m, int) and 0 < m <= len(inputs) else []


def _scan_length(p, body, values: dict, opset: int) -> int | None:
    """How many iterations Scan node `p` runs: its scan inputs' length along their scan axes, when
    their shapes are known (`shape_key`) and agree; None otherwise, or for opset 8's Scan (batched,
    with run-time sequence lengths)."""
    a = node_attrs(p)
    ins = scan_inputs(list(p.input), a)
    if opset < 9 or not ins or len(body.input) != len(p.input) or len(body.output) < len(p.input) - len(ins):
        return None
    axes = a.get("scan_input_axes") or [0] * len(ins)
    lengths = set()
    for t, ax in zip(ins, axes):
        shape = values.get(shape_key(t))
        if shape is None or not -len(shape) <= ax < len(shape):
            return None
        lengths.add(int(shape[ax]))
    m = lengths.pop() if len(lengths) == 1 else 0
    return m if m >= 1 else None


def _unroll_scan(g, p, body, m: int, names: set[str], opset: int, alias: dict[str, str]) -> list:
    """The nodes that replace Scan node `p` (opset 9 on): `m` renamed copies of its body, chained
    through its states, each reading its scan inputs' element k (a Gather, from the back for a
    reversed input), and its scan outputs stacked on their axes (in reverse for a reversed one)."""
    from onnx import helper, numpy_helper

    a = node_attrs(p)
    ins = scan_inputs(list(p.input), a)
    n_state = len(p.input) - len(ins)
    n_out = len(body.output) - n_state
    in_axes = list(a.get("scan_input_axes") or [0] * len(ins))
    in_dirs = list(a.get("scan_input_directions") or [0] * len(ins))
    out_axes = list(a.get("scan_output_axes") or [0] * n_out)
    out_dirs = list(a.get("scan_output_directions") or [0] * n_out)
    states = list(p.input[:n_state])
    scans: list[list[str]] = [[] for _ in range(n_out)]
    new_nodes: list = []
    consts = _hoist_constants(g, body, "scan", names)
    where = p.name or "scan"
    for k in range(m):
        rename = dict(consts)
        rename.update({vi.name: t for vi, t in zip(body.input[:n_state], states)})
        for vi, t, ax, rev in zip(body.input[n_state:], ins, in_axes, in_dirs):
            idx = _fresh(f"{where}/iter{k}/{t}__index", names)
            g.initializer.append(numpy_helper.from_array(np.array(m - 1 - k if rev else k, dtype=np.int64), idx))
            elem = _fresh(f"{t}__iter{k}", names)
            new_nodes.append(helper.make_node("Gather", [t, idx], [elem], axis=int(ax),
                                              name=_fresh(f"{where}/iter{k}/Gather", names)))
            rename[vi.name] = elem
        outs = _body_copy(body, rename, f"{where}/iter{k}", f"__iter{k}", names, new_nodes)
        states = outs[:n_state]
        for s, t in zip(scans, outs[n_state:]):
            s.append(t)
    alias.update({o: t for o, t in zip(p.output[:n_state], states) if o})
    for o, parts, ax, rev in zip(p.output[n_state:], scans, out_axes, out_dirs):
        if o:
            new_nodes += _stack(parts[::-1] if rev else parts, o, int(ax), opset, names, g.initializer)
    return new_nodes


def _hoist_constants(g, body, kind: str, names: set[str]) -> dict[str, str]:
    """Copy `body`'s initializers into graph `g` under fresh names; returns old name -> new."""
    consts = {t.name: _fresh(f"{t.name}__{kind}", names) for t in body.initializer}
    for t in body.initializer:
        c = type(t)()
        c.CopyFrom(t)
        c.name = consts[t.name]
        g.initializer.append(c)
    return consts


def _body_copy(body, rename: dict[str, str], prefix: str, suffix: str, names: set[str], into: list) -> list[str]:
    """Append to `into` a copy of `body`'s nodes reading through `rename` (which learns their
    outputs' fresh names); returns the names that hold the body's outputs."""
    for q in body.node:
        c = type(q)()
        c.CopyFrom(q)
        c.name = _fresh(f"{prefix}/{q.name or q.op_type}", names)
        for j, t in enumerate(c.input):
            c.input[j] = rename.get(t, t)
        _rename_outer(c, rename)
        for j, t in enumerate(c.output):
            if t:
                rename[t] = c.output[j] = _fresh(f"{t}{suffix}", names)
        into.append(c)
    return [rename.get(o.name, o.name) for o in body.output]


def _stack(parts: list[str], out: str, axis: int, opset: int, names: set[str], inits) -> list:
    """Nodes that stack tensors `parts` on a new axis `axis` into `out` (Unsqueeze each, then
    Concat); the axes constants they need are appended to `inits`."""
    from onnx import helper, numpy_helper

    nodes, ups = [], []
    for t in parts:
        u = _fresh(f"{out}/{t}__unsqueezed", names)
        name = _fresh(f"{u}/Unsqueeze", names)
        if opset >= 13:  # axes became an input in opset 13
            ax = _fresh(f"{u}/axes", names)
            inits.append(numpy_helper.from_array(np.array([axis], dtype=np.int64), ax))
            nodes.append(helper.make_node("Unsqueeze", [t, ax], [u], name=name))
        else:
            nodes.append(helper.make_node("Unsqueeze", [t], [u], axes=[axis], name=name))
        ups.append(u)
    return nodes + [helper.make_node("Concat", ups, [out], axis=axis, name=_fresh(f"{out}/Concat", names))]


def _reads(g) -> set[str]:
    """The names graph `g`'s nodes read, in their subgraphs too."""
    out = {t for q in g.node for t in q.input}
    for q in g.node:
        for sub in subgraphs(q):
            out |= _reads(sub)
    return out | {o.name for o in g.output}


def _rename_outer(q, rename: dict[str, str]) -> None:
    """Rename, inside node `q`'s subgraphs at any depth, the names they read from outside."""
    for sub in subgraphs(q):
        local = {vi.name for vi in sub.input} | {t.name for t in sub.initializer}
        for r in sub.node:
            for j, t in enumerate(r.input):
                if t not in local and t in rename:
                    r.input[j] = rename[t]
            _rename_outer(r, {k: v for k, v in rename.items() if k not in local})
            local.update(r.output)


def _apply_alias(g, alias: dict[str, str], names: set[str]) -> None:
    """Point every reader of a name in `alias` at what it stands for; a graph output keeps its name
    through an Identity."""
    from onnx import helper

    def find(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    if not alias:
        return
    flat = {k: find(k) for k in alias}
    for q in g.node:
        for j, t in enumerate(q.input):
            if t in flat:
                q.input[j] = flat[t]
        _rename_outer(q, flat)
    for o in g.output:
        if o.name in flat:
            g.node.append(helper.make_node("Identity", [flat[o.name]], [o.name],
                                           name=_fresh(f"{o.name}/Identity", names)))


def _fold_sequences(model, names: set[str]) -> None:
    """Replace tensor sequences by the tensors they hold, when every sequence op's positions are
    known; otherwise leave the graph as it is."""
    from onnx import helper, numpy_helper

    g = model.graph
    values = _constants(g)
    seqs: dict[str, list[str]] = {}
    alias: dict[str, str] = {}
    keep, new_inits = [], []
    opset = _opset(model)
    for p in g.node:
        op, ins = p.op_type, list(p.input)
        if p.domain not in ("", "ai.onnx") or (op not in SEQUENCE_OPS and not (op == "Identity" and ins[0] in seqs)):
            if any(t in seqs for t in ins) or any(t in seqs for sub in subgraphs(p) for t in _reads(sub)):
                return  # a sequence read by an op that is not folded here: leave every sequence as it is
            keep.append(p)
            continue
        a = node_attrs(p)
        out = p.output[0]
        if op == "SequenceEmpty":
            seqs[out] = []
        elif op == "SequenceConstruct":
            seqs[out] = ins
        elif op == "Identity":
            seqs[out] = seqs[ins[0]]
        elif ins[0] not in seqs and op != "SplitToSequence":
            return
        elif op in ("SequenceInsert", "SequenceErase"):
            s, k = list(seqs[ins[0]]), (2 if op == "SequenceInsert" else 1)
            n = len(s)
            pos = _scalar(values, ins[k]) if len(ins) > k and ins[k] else (n if op == "SequenceInsert" else -1)
            hi = n if op == "SequenceInsert" else n - 1
            if not isinstance(pos, int) or not -n <= pos <= hi:
                return
            if op == "SequenceInsert":
                s.insert(pos + n if pos < 0 else pos, ins[1])
            else:
                del s[pos]
            seqs[out] = s
        elif op == "SequenceAt":
            pos = _scalar(values, ins[1])
            if not isinstance(pos, int) or not -len(seqs[ins[0]]) <= pos < len(seqs[ins[0]]):
                return
            alias[out] = seqs[ins[0]][pos]
        elif op == "SequenceLength":
            new_inits.append(numpy_helper.from_array(np.array(len(seqs[ins[0]]), dtype=np.int64), out))
        elif op == "ConcatFromSequence":
            parts, axis = seqs[ins[0]], int(a.get("axis", 0))
            if not parts:
                return
            if a.get("new_axis", 0):
                keep += _stack(parts, out, axis, opset, names, new_inits)
            else:
                keep.append(helper.make_node("Concat", parts, [out], axis=axis,
                                             name=p.name or _fresh(f"{out}/Concat", names)))
        elif op == "SplitToSequence":
            split = values.get(ins[1]) if len(ins) > 1 and ins[1] else None
            if split is None or split.ndim != 1 or a.get("keepdims", 1) == 0:
                return  # equal parts need the input's shape, not known before inference
            parts = [_fresh(f"{out}/part{k}", names) for k in range(len(split))]
            axis = int(a.get("axis", 0))
            if opset >= 13:  # Split takes int64 sizes (SplitToSequence int32 too)
                sizes = _fresh(f"{out}/split", names)
                new_inits.append(numpy_helper.from_array(split.astype(np.int64), sizes))
                keep.append(helper.make_node("Split", [ins[0], sizes], parts, axis=axis, name=p.name or parts[0]))
            else:
                keep.append(helper.make_node("Split", [ins[0]], parts, axis=axis, split=[int(x) for x in split],
                                             name=p.name or parts[0]))
            seqs[out] = parts
    if any(o.name in seqs for o in g.output):
        return
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    _apply_alias(g, alias, names)


def inline_branch(g, at: int, take_then: bool) -> list | None:
    """Replace If node `at` of graph `g` by the nodes of the branch it takes (its outputs through
    Identity nodes, its names that `g` already has made fresh) and return them; None, with `g`
    unchanged, for a malformed If."""
    from onnx import helper

    p = g.node[at]
    branch = next((a.g for a in p.attribute if a.name == ("then_branch" if take_then else "else_branch")), None)
    if branch is None or len(branch.output) != len(p.output):
        return None
    taken = _all_names(g, skip=at) | set(p.output)
    names = taken | _all_names(branch)
    made = [t.name for t in branch.initializer] + [t for q in branch.node for t in q.output if t]
    rename = {t: _fresh(f"{t}__{p.name or 'if'}", names) for t in made if t in taken}  # another copy's names
    new = [type(q)() for q in branch.node]
    for c, q in zip(new, branch.node):
        c.CopyFrom(q)
        for j, t in enumerate(c.input):
            c.input[j] = rename.get(t, t)
        for j, t in enumerate(c.output):
            c.output[j] = rename.get(t, t)
        _rename_outer(c, rename)
        if not c.name:  # a branch's nodes are often unnamed: named after the If, as warnings and layers say
            c.name = _fresh(f"{p.name or 'if'}/{c.op_type}", names)
    new += [helper.make_node("Identity", [rename.get(b.name, b.name)], [o], name=_fresh(f"{p.name or 'if'}/{o}", names))
            for b, o in zip(branch.output, p.output) if o]
    for t in branch.initializer:
        c = type(t)()
        c.CopyFrom(t)
        c.name = rename.get(t.name, t.name)
        g.initializer.append(c)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(nodes[:at] + new + nodes[at + 1:])
    return new
