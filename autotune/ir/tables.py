"""Vectorised views of layer groups: per-layer arrays of a graph and flat batches of many groups.

The simulator and the feature extractor both work on a `GroupBatch`: the layers of every group
laid out as flat rows, `gid` giving the group index of each row (for `np.bincount(gid, w)` or
`np.add.reduceat(v, groups.first_row)` reductions), plus per-group arrays (`GroupRows`).

Per-layer numbers are read from `Layer` (graph.py), the one source of truth for shapes and costs.
A group's boundary follows `Group.inputs` / `outputs` / `internal` exactly (tests compare them):
an input tensor counts once, at its first reader in the group, if it was produced before the group
(or is a graph input); an output tensor is a boundary output if it is a graph output or read at or
after the group's end (`Graph.last_use`), else internal. `graph_table` turns that rule into per-edge
keys once per graph, so a batch of 160k groups needs no Python loop over groups.

Stable interface (features.py, simulator.py, planner.py rely on it):
- `graph_table(graph)` -> `GraphTable` (cached per Graph object, weakly);
- `GroupBatch.build(groups)` -> `GroupBatch` with `.layers` (`LayerRows`), `.groups` (`GroupRows`),
  `.gid`, `.n_groups`; groups may come from any number of graphs;
- `windowed(op_code)`, `bucket(op_code)`: per-row properties read from the op specs (autotune/ir/ops/).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from autotune.ir import ops
from autotune.ir.graph import Graph, Group, Layer


def windowed(op_code: np.ndarray) -> np.ndarray:
    """Per layer row: its op reads a window of neighbouring pixels (halos, bank strides)."""
    return ops.flag_array("windowed").astype(bool)[op_code]


def bucket(op_code: np.ndarray) -> np.ndarray:
    """Per layer row: the index in ops.COUNT_BUCKETS of its op's bucket of the op mix."""
    return ops.bucket_array()[op_code]
#: `last_use` of a graph output: read "after every group".
_BIG = np.iinfo(np.int64).max // 4
_BOOL = ("depthwise", "spatial")
_FLOAT = ("macs", "act_ops")


@dataclass
class LayerRows:
    """Per-layer arrays, one entry per layer row (int64 unless noted).

    Rows and columns: `out_h` is the dimension a row split divides (H of a 4-D output, the token
    axis M of a 3-D or higher (.., M, C) output, 1 for a 2-D (N, C) one); `out_w` is W of a 4-D
    output, else 1. Channels are those of `Layer` (axis 1 of 4-D, the last axis otherwise); an fc
    layer's `in_ch_per_group` is its input features (C*H*W for a 4-D input).
    """

    op_code: np.ndarray  # ops.code of the layer's op
    macs: np.ndarray  # float64: MACs on the MAC array (Layer.macs)
    vector_ops: np.ndarray  # element ops on the vector unit (Layer.vector_ops)
    act_ops: np.ndarray  # float64: element ops of its fused activation epilogue (Layer.act_ops)
    weight_elems: np.ndarray
    in_elems: np.ndarray  # all inputs of the layer
    out_elems: np.ndarray  # all outputs of the layer
    in_ch: np.ndarray
    out_ch: np.ndarray
    groups: np.ndarray  # conv groups (1 for other ops)
    in_ch_per_group: np.ndarray  # reduction channels per conv group (fc: input features)
    out_ch_per_group: np.ndarray
    depthwise: np.ndarray  # bool
    kh: np.ndarray  # window (conv, pool; 1 otherwise)
    kw: np.ndarray
    sh: np.ndarray  # stride (conv, pool; 1 otherwise)
    sw: np.ndarray
    halo: np.ndarray  # input rows a row-split output needs beyond its own: dilation * (kh - 1)
    out_h: np.ndarray  # rows of the output a row split divides (see above)
    out_w: np.ndarray
    spatial: np.ndarray  # bool: 4-D output (a feature map)
    last_use: np.ndarray  # last reader position of the layer's outputs (_BIG if a graph output)
    pos: np.ndarray  # position in its graph's order

    def take(self, idx: np.ndarray, only: Sequence[str] | None = None) -> LayerRows:
        """Rows `idx` of every column, or of the columns named in `only` (the others left empty,
        for hot paths that read a few columns of many rows)."""
        if only is None:
            return LayerRows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})
        return LayerRows(**{f.name: getattr(self, f.name)[idx] if f.name in only else
                            np.zeros(0, dtype=_dtype(f.name)) for f in fields(self)})

    @staticmethod
    def concat(parts: Sequence[LayerRows]) -> LayerRows:
        return LayerRows(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(LayerRows)})

    @staticmethod
    def empty() -> LayerRows:
        return LayerRows(**{f.name: np.zeros(0, dtype=_dtype(f.name)) for f in fields(LayerRows)})


def _dtype(name: str) -> type:
    return bool if name in _BOOL else np.float64 if name in _FLOAT else np.int64


@lru_cache(maxsize=1 << 16)  # a network's candidate groups rebuilt from JSON repeat its layers (equal, not the same)
def _layer_row(lyr: Layer) -> dict[str, int | float | bool]:
    sp, s = lyr.spec, lyr.out_shape
    grp = sp.groups(lyr)
    kh, kw, sh, sw, halo = sp.window(lyr)
    rows, cols = sp.plane(lyr)
    return {
        "op_code": ops.code(lyr.op), "macs": lyr.macs, "vector_ops": lyr.vector_ops, "act_ops": lyr.act_ops,
        "weight_elems": lyr.weight_elems,
        "in_elems": lyr.in_elems, "out_elems": lyr.out_elems, "in_ch": lyr.in_channels, "out_ch": lyr.out_channels,
        "groups": grp, "in_ch_per_group": max(1, sp.reduction_channels(lyr) // grp),
        "out_ch_per_group": max(1, lyr.out_channels // grp), "depthwise": lyr.depthwise,
        "kh": kh, "kw": kw, "sh": sh, "sw": sw, "halo": halo,
        "out_h": rows, "out_w": cols, "spatial": len(s) == 4 or sp.channels_first,
    }


@dataclass
class GraphTable:
    """One graph's layer rows plus its tensor edges (in-edges: distinct inputs of each layer;
    out-edges: outputs of each layer), laid out so a group's boundary is a comparison of keys."""

    rows: LayerRows
    in_start: np.ndarray  # per layer: first in-edge
    in_count: np.ndarray  # per layer: number of distinct input tensors
    in_key: np.ndarray  # per in-edge: max(producer position, previous reader position), -1 if none
    in_elems: np.ndarray  # per in-edge: elements (float64)
    out_start: np.ndarray
    out_count: np.ndarray
    out_last: np.ndarray  # per out-edge: last reader position (_BIG for a graph output, -1 if unread)
    out_elems: np.ndarray

    def __len__(self) -> int:
        return len(self.in_start)


_CACHE: weakref.WeakKeyDictionary[Graph, GraphTable] = weakref.WeakKeyDictionary()


def graph_table(g: Graph) -> GraphTable:
    """Per-layer and per-edge arrays of a graph in topological order (cached per Graph object)."""
    t = _CACHE.get(g)
    if t is not None:
        return t
    order = g.order
    pos = {lyr.name: k for k, lyr in enumerate(order)}
    graph_outputs = set(g.outputs)
    cols: dict[str, list] = {f.name: [] for f in fields(LayerRows)}
    in_start: list[int] = []
    in_count: list[int] = []
    in_key: list[int] = []
    in_el: list[float] = []
    out_start: list[int] = []
    out_count: list[int] = []
    out_last: list[int] = []
    out_el: list[float] = []
    last_reader: dict[str, int] = {}
    for k, lyr in enumerate(order):
        for name, v in _layer_row(lyr).items():
            cols[name].append(v)
        lasts = [_BIG if t in graph_outputs else g.last_use(t) for t in lyr.outputs]
        cols["last_use"].append(max(lasts))
        cols["pos"].append(k)
        out_start.append(len(out_last))
        out_count.append(len(lyr.outputs))
        out_last.extend(lasts)
        out_el.extend(float(math.prod(s)) for s in lyr.out_shapes)
        in_start.append(len(in_key))
        seen: set[str] = set()
        for tensor, shp in zip(lyr.inputs, lyr.in_shapes):
            if tensor in seen:
                continue
            seen.add(tensor)
            p = pos[g.producer[tensor].name] if tensor in g.producer else -1
            in_key.append(max(p, last_reader.get(tensor, -1)))
            in_el.append(float(math.prod(shp)))
            last_reader[tensor] = k
        in_count.append(len(seen))
    rows = LayerRows(**{name: np.asarray(v, dtype=_dtype(name)) for name, v in cols.items()})
    i64 = np.int64
    t = GraphTable(rows, np.asarray(in_start, i64), np.asarray(in_count, i64), np.asarray(in_key, i64),
                   np.asarray(in_el, np.float64), np.asarray(out_start, i64), np.asarray(out_count, i64),
                   np.asarray(out_last, i64), np.asarray(out_el, np.float64))
    _CACHE[g] = t
    return t


@dataclass
class GroupRows:
    """Per-group arrays (float64 sizes in elements; multiply by dtype bytes for bytes)."""

    first_row: np.ndarray  # index of the group's first layer row in the batch
    last_row: np.ndarray
    n_layers: np.ndarray
    in_elems: np.ndarray  # boundary inputs (Group.inputs): read from DRAM
    out_elems: np.ndarray  # boundary outputs (Group.outputs): written to DRAM
    internal_elems: np.ndarray  # produced and consumed inside (Group.internal): may stay on chip
    max_internal_elems: np.ndarray  # largest single internal tensor
    weight_elems: np.ndarray  # sum over the group's layers
    macs: np.ndarray
    vector_ops: np.ndarray


def _ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ranges [starts[r], starts[r] + counts[r]) and the owner r of each element."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offs = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
    idx = np.repeat(starts - offs, counts) + np.arange(int(counts.sum()))
    return idx, owner


@dataclass
class GroupBatch:
    """Many groups as flat layer rows (`gid` = group index of each row) plus per-group arrays.

    Every group is a contiguous range of its graph's order, so it is also the range
    [start, end) of `stack`, the distinct layer rows of the batch's graphs stacked: reductions over
    a group's layers can run on prefix sums of `stack` (`PairRanges`) instead of the flat rows."""

    layers: LayerRows
    groups: GroupRows
    gid: np.ndarray
    stack: LayerRows
    start: np.ndarray  # per group: its first row in `stack`
    end: np.ndarray  # per group: one past its last row in `stack`
    src: np.ndarray  # per flat row: its row in `stack`

    @property
    def n_groups(self) -> int:
        return len(self.groups.n_layers)

    def of_graph(self, graph: Graph) -> bool:
        """Whether the batch holds ranges of `graph` alone, so that `start`/`end` are its layer
        positions (a batch of several graphs stacks them, and its positions are the stack's)."""
        return self.stack is graph_table(graph).rows

    def first_of_kind(self) -> np.ndarray:
        """Per layer row: whether it is the first of its kind in its group (same op, window,
        stride, channels, conv groups and output size); repeats can share one compiled program.
        A row is the first when the previous stack row of its kind lies before the group's start."""
        S = self.stack
        if len(self.layers.macs) == 0:
            return np.zeros(0, dtype=bool)
        sig = np.column_stack([S.op_code, S.kh, S.kw, S.sh, S.sw, S.in_ch, S.out_ch, S.groups, S.out_h, S.out_w])
        _, kind = np.unique(sig, axis=0, return_inverse=True)
        kind = kind.reshape(-1)
        order = np.lexsort((np.arange(len(kind)), kind))  # by kind, then by position
        prev = np.full(len(kind), -1, dtype=np.int64)
        same = kind[order[1:]] == kind[order[:-1]]
        prev[order[1:][same]] = order[:-1][same]
        return prev[self.src] < self.start[self.gid]

    def distinct(self) -> tuple[np.ndarray, np.ndarray]:
        """(first group of each distinct content, content index of every group): groups with the same
        layer rows in the same order (positions aside) and the same boundary and internal tensors
        are the same kernel, and every cost that reads only a group's content costs them alike
        (a ResNet stage's repeated blocks, a transformer's repeated layers)."""
        n = self.n_groups
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        S = self.stack
        cols = [getattr(S, f.name).astype(np.float64) for f in fields(S) if f.name not in ("pos", "last_use")]
        _, kind = np.unique(np.column_stack(cols), axis=0, return_inverse=True)
        lens = self.end - self.start
        span = int(lens.max())
        at = self.start[:, None] + np.arange(span)[None, :]
        seq = np.where(at < self.end[:, None], kind.reshape(-1)[np.minimum(at, len(kind) - 1)], -1).astype(np.int64)
        G = self.groups
        sizes = np.column_stack([G.in_elems, G.out_elems, G.internal_elems, G.max_internal_elems]).view(np.int64)
        key = np.ascontiguousarray(np.hstack([seq, sizes]))
        _, first, inverse = np.unique(key.view(np.dtype((np.void, key.itemsize * key.shape[1]))).ravel(),
                                      return_index=True, return_inverse=True)
        return first.astype(np.int64), inverse.reshape(-1).astype(np.int64)

    def pair_rows(self, gidx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat (pair, layer) rows for pairs whose groups are `gidx`: (layer row of each, pair
        index of each, start of each row's pair among the flat rows). Layers keep their order."""
        lens = self.groups.n_layers[gidx]
        idx, pair = _ranges(self.groups.first_row[gidx], lens)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if len(lens) else lens
        return idx, pair, starts[pair]

    @classmethod
    def build(cls, groups: Sequence[Group]) -> GroupBatch:
        """Gather the layers of `groups` (from any graphs) into one batch, in one vectorised pass:
        the distinct graphs' tables are stacked with position offsets, so a group [i, j) of a graph
        becomes rows [off + i, off + j) of the stack."""
        n = len(groups)
        tables: list[GraphTable] = []
        base: dict[int, int] = {}  # id(graph) -> offset of its rows in the stack
        total = 0
        gi = np.empty(n, np.int64)
        gj = np.empty(n, np.int64)
        for r, g in enumerate(groups):
            off = base.get(id(g.graph))
            if off is None:
                t = graph_table(g.graph)
                off = base[id(g.graph)] = total
                tables.append(t)
                total += len(t)
            gi[r], gj[r] = g.i + off, g.j + off
        return cls._assemble(tables, gi, gj)

    @classmethod
    def from_ranges(cls, graph: Graph, i: np.ndarray, j: np.ndarray) -> GroupBatch:
        """The groups order[i[r]:j[r]] of one graph, without making Group objects (the planner's
        hot path: every candidate span of a network)."""
        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        n = len(graph.order)
        if len(i) != len(j) or np.any(i < 0) or np.any(j > n) or np.any(i >= j):
            raise IndexError(f"group ranges out of range for {n} layers")
        return cls._assemble([graph_table(graph)] if len(i) else [], i, j)

    @classmethod
    def _assemble(cls, tables: list[GraphTable], gi: np.ndarray, gj: np.ndarray) -> GroupBatch:
        n = len(gi)
        if not tables:
            z, zi = np.zeros(0), np.zeros(0, np.int64)
            return cls(LayerRows.empty(), GroupRows(*(zi,) * 3, *(z,) * 7), zi, LayerRows.empty(), zi, zi, zi)
        st = _stack(tables)
        lens = gj - gi
        lidx, gid = _ranges(gi, lens)
        layers = st.rows.take(lidx)
        first_row = np.concatenate([[0], np.cumsum(lens)[:-1]])
        # inputs: an edge counts once, at its first reader inside the group
        eidx, e_row = _ranges(st.in_start[lidx], st.in_count[lidx])
        e_gid = gid[e_row]
        first_read = st.in_key[eidx] < gi[e_gid]
        in_elems = np.bincount(e_gid, weights=st.in_elems[eidx] * first_read, minlength=n)
        # outputs: boundary when read at or after the group's end (or a graph output), else internal
        oidx, o_row = _ranges(st.out_start[lidx], st.out_count[lidx])
        o_gid = gid[o_row]
        is_out = st.out_last[oidx] >= gj[o_gid]
        oe = st.out_elems[oidx]
        out_elems = np.bincount(o_gid, weights=oe * is_out, minlength=n)
        internal = np.bincount(o_gid, weights=oe * ~is_out, minlength=n)
        max_internal = np.zeros(n)
        np.maximum.at(max_internal, o_gid, oe * ~is_out)

        def gsum(v: np.ndarray) -> np.ndarray:
            return np.bincount(gid, weights=v.astype(np.float64), minlength=n)

        rows = GroupRows(first_row, first_row + lens - 1, lens, in_elems, out_elems, internal, max_internal,
                         gsum(layers.weight_elems), gsum(layers.macs), gsum(layers.vector_ops))
        return cls(layers, rows, gid, st.rows, gi, gj, lidx)


def _stack(tables: list[GraphTable]) -> GraphTable:
    """Tables of several graphs as one, with positions and edge indices offset per graph."""
    if len(tables) == 1:
        return tables[0]
    sizes = np.array([len(t) for t in tables])
    loff = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ioff = np.concatenate([[0], np.cumsum([len(t.in_key) for t in tables])[:-1]])
    ooff = np.concatenate([[0], np.cumsum([len(t.out_last) for t in tables])[:-1]])

    def cat(name: str, off: np.ndarray | None = None, keep: int | None = None) -> np.ndarray:
        parts = []
        for k, t in enumerate(tables):
            v = getattr(t, name)
            if off is not None:
                v = v + off[k] if keep is None else np.where(v == keep, v, v + off[k])
            parts.append(v)
        return np.concatenate(parts)

    # -1 keys ("no earlier producer or reader") become off - 1: still before any group of that graph
    return GraphTable(LayerRows.concat([t.rows for t in tables]), cat("in_start", ioff), cat("in_count"),
                      cat("in_key", loff), cat("in_elems"), cat("out_start", ooff), cat("out_count"),
                      cat("out_last", loff, keep=_BIG), cat("out_elems"))


class PairRanges:
    """(group, core count) pairs of a batch as ranges [lo, hi) of its `stack` rows, for reductions
    of per-(layer, core count) values: sums, maxima and ordered pair sums over each pair's layers.

    Values are (stack rows, len(ks)) arrays, one column per distinct core count (`k` is the core
    counts as a (1, K) row to broadcast against). Sums use prefix sums that restart every `span`
    rows of each graph (`span` = the longest group), so a group covers at most two chunks, rounds
    like a sum over its neighbours and gets the same value in any batch with the same longest
    group (a whole-graph group: in any batch). Maxima use a sparse table. The cost is
    O(rows x K + pairs) instead of O(pairs x group length)."""

    def __init__(self, batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray):
        gidx = np.asarray(gidx, dtype=np.int64)
        self.ks, col = np.unique(np.asarray(cores, dtype=np.int64), return_inverse=True)
        self.col = col.reshape(-1)
        self.k = self.ks.astype(np.float64)[None, :]
        self.n_rows = len(batch.stack.macs)
        lo, hi = batch.start[gidx], batch.end[gidx]
        self.lo, self.hi = lo, hi
        self.span = span = int(max(1, (hi - lo).max())) if len(gidx) else 1
        # chunks: `span` consecutive rows of one graph, the first starting at the graph's first layer
        off = batch.stack.pos % span
        chunk = np.cumsum(off == 0) - 1
        self._chunk, self._off = chunk, off
        self.n_chunks = int(chunk[-1]) + 1 if self.n_rows else 1
        if len(gidx):
            self._c1, self._o1 = chunk[lo], off[lo]
            self._c2, self._o2 = chunk[hi - 1], off[hi - 1] + 1
        else:
            self._c1 = self._o1 = self._c2 = self._o2 = np.zeros(0, np.int64)
        self._cross = self._c2 != self._c1

    def _full(self, v: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64), (self.n_rows, len(self.ks)))

    def _prefix(self, v: np.ndarray) -> np.ndarray:
        """Chunk-local exclusive prefix sums (chunks, span + 1, K): [c, o] = sum of chunk c's first o rows."""
        out = np.zeros((self.n_chunks, self.span + 1, len(self.ks)))
        out[self._chunk, self._off + 1] = self._full(v)
        np.cumsum(out, axis=1, out=out)
        return out

    def _range(self, E: np.ndarray) -> np.ndarray:
        """Per pair: the sum over its rows, from prefix sums E (see `_prefix`)."""
        c1, o1, c2, o2, col = self._c1, self._o1, self._c2, self._o2, self.col
        within = E[c1, np.where(self._cross, self.span, o2), col] - E[c1, o1, col]
        return within + np.where(self._cross, E[c2, o2, col], 0.0)

    def sum(self, *values: np.ndarray) -> np.ndarray:
        """(pairs, len(values)): each value summed over each pair's rows at the pair's core count."""
        return np.column_stack([self._range(self._prefix(v)) for v in values])

    def max(self, value: np.ndarray) -> np.ndarray:
        """Per pair: the largest value over its rows at the pair's core count."""
        v = self._full(value)
        levels = [v]
        while (1 << len(levels)) <= self.span:
            prev, step = levels[-1], 1 << (len(levels) - 1)
            nxt = prev.copy()
            nxt[: self.n_rows - step] = np.maximum(prev[: self.n_rows - step], prev[step:])
            levels.append(nxt)
        table = np.stack(levels)
        lvl = np.floor(np.log2(np.maximum(self.hi - self.lo, 1))).astype(np.int64)
        return np.maximum(table[lvl, self.lo, self.col], table[lvl, self.hi - (1 << lvl), self.col])

    def ordered_sum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per pair: sum over its rows l < m of a[l] * b[m] (work of a layer times what the layers
        after it in the group need), from chunk-local prefix sums A, B and Q = prefix of b * A:
        within a chunk it is sum_m b[m] (A[m] - A[lo]); a pair crossing chunks adds the cross term
        of its two parts. Rounding residue where the true sum is 0 is snapped to 0."""
        A, B = self._prefix(a), self._prefix(b)
        Q = self._prefix(self._full(b) * A[self._chunk, self._off])
        c1, o1, c2, o2, col, span = self._c1, self._o1, self._c2, self._o2, self.col, self.span
        end1 = np.where(self._cross, span, o2)
        first = (Q[c1, end1, col] - Q[c1, o1, col]) - A[c1, o1, col] * (B[c1, end1, col] - B[c1, o1, col])
        second = Q[c2, o2, col]  # the second chunk's part starts at its first row, where A is 0
        cross = (A[c1, span, col] - A[c1, o1, col]) * B[c2, o2, col]
        out = first + np.where(self._cross, second + cross, 0.0)
        b_total = (B[c1, end1, col] - B[c1, o1, col]) + np.where(self._cross, B[c2, o2, col], 0.0)
        scale = (A[c1, end1, col] + np.where(self._cross, A[c2, o2, col], 0.0)) * np.abs(b_total)
        return np.where(out > 1e-12 * scale, out, 0.0)
