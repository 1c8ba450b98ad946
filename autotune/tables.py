"""Vectorised views of layer groups: per-layer arrays of a graph and flat batches of many groups.

The simulator and the feature extractor both work on a `GroupBatch`: the layers of every group
laid out as flat rows (with the group index of each row, for bincount-style reductions) plus
per-group boundary sizes. Per-layer numbers come from `Layer` (graph.py), the one source of truth.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from .graph import OPS, Graph, Group

OP_CODE = {op: k for k, op in enumerate(OPS)}
_BIG = np.iinfo(np.int64).max // 4


@dataclass
class LayerRows:
    """Per-layer arrays (one entry per layer row)."""

    op_code: np.ndarray
    macs: np.ndarray
    vector_ops: np.ndarray
    weight_elems: np.ndarray
    in_elems: np.ndarray  # all inputs of the layer
    out_elems: np.ndarray
    in_ch: np.ndarray
    out_ch: np.ndarray
    in_ch_per_group: np.ndarray  # channels per conv group (in_ch for non-grouped layers)
    out_ch_per_group: np.ndarray
    depthwise: np.ndarray  # bool
    kh: np.ndarray
    sh: np.ndarray
    out_h: np.ndarray  # spatial rows of the output (tokens for 3-D, 1 for 2-D)
    spatial: np.ndarray  # bool: 4-D output, split by rows across cores
    last_use: np.ndarray  # position of the last reader of the output in its graph (_BIG if a graph output)
    pos: np.ndarray  # position in its graph's order
    OP = OP_CODE

    def take(self, idx: np.ndarray) -> LayerRows:
        return LayerRows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass
class _GraphTable:
    rows: LayerRows
    edge_start: np.ndarray  # per layer: first edge index
    edge_count: np.ndarray  # per layer: number of distinct input tensors
    edge_key: np.ndarray  # per edge: max(producer position, previous reader position); -1 for a first read of an input
    edge_elems: np.ndarray


_CACHE: weakref.WeakKeyDictionary[Graph, _GraphTable] = weakref.WeakKeyDictionary()


def graph_table(g: Graph) -> _GraphTable:
    """Per-layer and per-edge arrays of a graph in topological order (cached per Graph object)."""
    t = _CACHE.get(g)
    if t is not None:
        return t
    order = g.order
    n = len(order)
    pos = {l.name: k for k, l in enumerate(order)}
    cols: dict[str, list] = {f.name: [] for f in fields(LayerRows)}
    edge_start, edge_count, edge_key, edge_elems = [], [], [], []
    last_reader: dict[str, int] = {}
    outputs = set(g.outputs)
    for k, l in enumerate(order):
        a = l.attrs
        grp = a.groups if l.op == "conv" else 1
        s = l.out_shape
        cols["op_code"].append(OP_CODE[l.op])
        cols["macs"].append(l.macs)
        cols["vector_ops"].append(l.vector_ops)
        cols["weight_elems"].append(l.weight_elems)
        cols["in_elems"].append(l.in_elems)
        cols["out_elems"].append(l.out_elems)
        cols["in_ch"].append(l.in_channels)
        cols["out_ch"].append(l.out_channels)
        cols["in_ch_per_group"].append(max(1, (l.fc_in_features if l.op == "fc" else l.in_channels) // grp))
        cols["out_ch_per_group"].append(max(1, l.out_channels // grp))
        cols["depthwise"].append(l.depthwise)
        cols["kh"].append(a.kernel[0] if l.op in ("conv", "pool") else 1)
        cols["sh"].append(a.stride[0] if l.op in ("conv", "pool") else 1)
        cols["out_h"].append(s[2] if len(s) == 4 else (s[-2] if len(s) >= 3 else 1))
        cols["spatial"].append(len(s) == 4)
        lu = max(g.last_use(t) for t in l.outputs)
        cols["last_use"].append(_BIG if any(t in outputs for t in l.outputs) else lu)
        cols["pos"].append(k)
        edge_start.append(len(edge_key))
        seen = set()
        for t, shp in zip(l.inputs, l.in_shapes):
            if t in seen:
                continue
            seen.add(t)
            p = pos[g.producer[t].name] if t in g.producer else -1
            edge_key.append(max(p, last_reader.get(t, -1)))
            edge_elems.append(int(np.prod(shp)))
            last_reader[t] = k
        edge_count.append(len(seen))
    dtypes = {"depthwise": bool, "spatial": bool}
    rows = LayerRows(**{k: np.asarray(v, dtype=dtypes.get(k, np.int64 if k != "macs" else np.float64))
                        for k, v in cols.items()})
    rows.macs = rows.macs.astype(np.float64)
    t = _GraphTable(rows, np.asarray(edge_start, np.int64), np.asarray(edge_count, np.int64),
                    np.asarray(edge_key, np.int64), np.asarray(edge_elems, np.float64))
    assert len(t.edge_start) == n
    _CACHE[g] = t
    return t


@dataclass
class GroupRows:
    """Per-group arrays."""

    first_row: np.ndarray  # index of the group's first layer row in the batch
    last_row: np.ndarray
    n_layers: np.ndarray
    in_elems: np.ndarray  # boundary inputs, read from DRAM
    out_elems: np.ndarray  # boundary outputs, written to DRAM
    internal_elems: np.ndarray  # produced and consumed inside: may stay on chip
    max_internal_elems: np.ndarray  # largest single internal tensor


@dataclass
class GroupBatch:
    """Many groups as flat layer rows (`gid` = group index of each row) plus per-group boundary sizes."""

    layers: LayerRows
    groups: GroupRows
    gid: np.ndarray

    @property
    def n_groups(self) -> int:
        return len(self.groups.n_layers)

    @classmethod
    def build(cls, groups: Sequence[Group]) -> GroupBatch:
        """Gather the layers of `groups` (from any graphs) into one batch, vectorised per graph."""
        n = len(groups)
        by_graph: dict[int, list[int]] = {}
        graphs: dict[int, Graph] = {}
        for r, g in enumerate(groups):
            by_graph.setdefault(id(g.graph), []).append(r)
            graphs[id(g.graph)] = g.graph
        gi = np.fromiter((g.i for g in groups), np.int64, n)
        gj = np.fromiter((g.j for g in groups), np.int64, n)
        lens = gj - gi
        first_row = np.concatenate([[0], np.cumsum(lens)[:-1]]) if n else np.zeros(0, np.int64)
        total = int(lens.sum())
        layer_parts: list[tuple[np.ndarray, np.ndarray, LayerRows]] = []
        in_elems = np.zeros(n)
        out_elems = np.zeros(n)
        internal = np.zeros(n)
        max_internal = np.zeros(n)
        for key, rows_idx in by_graph.items():
            t = graph_table(graphs[key])
            ridx = np.asarray(rows_idx, np.int64)
            i, j, ln = gi[ridx], gj[ridx], lens[ridx]
            # local layer positions of every (group, layer) row, in group order
            loc_gid = np.repeat(np.arange(len(ridx)), ln)
            starts = np.repeat(i - np.concatenate([[0], np.cumsum(ln)[:-1]]), ln)
            lpos = starts + np.arange(int(ln.sum()))
            lr = t.rows.take(lpos)
            # boundary outputs vs internal tensors
            jj = j[loc_gid]
            is_out = lr.last_use >= jj
            oe = lr.out_elems.astype(np.float64)
            out_elems[ridx] = np.bincount(loc_gid, weights=oe * is_out, minlength=len(ridx))
            internal[ridx] = np.bincount(loc_gid, weights=oe * ~is_out, minlength=len(ridx))
            mx = np.zeros(len(ridx))
            np.maximum.at(mx, loc_gid, oe * ~is_out)
            max_internal[ridx] = mx
            # boundary inputs: an edge counts once, at its first reader inside the group
            ec = t.edge_count[lpos]
            e_gid = np.repeat(loc_gid, ec)
            eidx = (np.repeat(t.edge_start[lpos] - np.concatenate([[0], np.cumsum(ec)[:-1]]), ec)
                    + np.arange(int(ec.sum())))
            first_read = t.edge_key[eidx] < i[e_gid]
            in_elems[ridx] = np.bincount(e_gid, weights=t.edge_elems[eidx] * first_read, minlength=len(ridx))
            # destination rows in the flat batch
            dest = np.repeat(first_row[ridx], ln) + (np.arange(int(ln.sum())) - np.repeat(
                np.concatenate([[0], np.cumsum(ln)[:-1]]), ln))
            layer_parts.append((dest, ridx, lr))
        if layer_parts:
            proto = layer_parts[0][2]
            flat = {}
            for f in fields(LayerRows):
                arr = np.empty(total, dtype=getattr(proto, f.name).dtype)
                for dest, _, lr in layer_parts:
                    arr[dest] = getattr(lr, f.name)
                flat[f.name] = arr
            layers = LayerRows(**flat)
        else:
            layers = graph_table_empty()
        gid = np.repeat(np.arange(n), lens)
        groups_rows = GroupRows(first_row, first_row + lens - 1, lens, in_elems, out_elems, internal, max_internal)
        return cls(layers, groups_rows, gid)


def graph_table_empty() -> LayerRows:
    return LayerRows(**{f.name: np.zeros(0, dtype=bool if f.name in ("depthwise", "spatial") else np.int64)
                        for f in fields(LayerRows)})
