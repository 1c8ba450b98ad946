"""Fusion planner: plans, candidate groups and the dynamic program over the topological order.

best[j] = min over i in [j - max_fusion, j) of best[i] + min_k cost([i, j), k): the exact optimum
over partitions of the order into contiguous groups with one core count each, in
O(n * max_fusion * |core_counts|) cost evaluations, all sent to the cost source in one batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotune.device.base import Simulator
from autotune.errors import AutotuneError
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph, Group
from autotune.ir.tables import GroupBatch
from autotune.planning.costs import CostSource, make_cost


# -- plans --------------------------------------------------------------------------------------
def candidate_id(network: str, i: int, j: int) -> str:
    """The id of the group of layers [i, j) of a network (j exclusive), as export-groups names it."""
    return f"{network}:{i}-{j}"


@dataclass
class PlanGroup:
    i: int
    j: int
    layers: list[str]
    cores: int
    predicted_ms: float
    device_ms: float | None = None


#: Facts a strategy may add to a plan that its JSON carries (planner.sure_plan).
PLAN_EXTRAS = ("kernels_measured", "unmeasured_margin")


@dataclass
class Plan:
    model: str
    hardware: str
    hardware_hash: str
    batch: int
    strategy: str
    groups: list[PlanGroup]
    predicted_ms: float
    device_ms: float | None = None
    device_calls: int = 0  # (group, cores) pairs the device measured while planning
    plan_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The design's plan JSON."""
        d: dict[str, Any] = {"model": self.model, "hardware": self.hardware, "hardware_hash": self.hardware_hash,
             "batch": self.batch, "strategy": self.strategy, "predicted_ms": self.predicted_ms}
        if self.device_ms is not None:
            d["device_ms"] = self.device_ms
        d.update({k: v for k, v in self.extra.items() if k in PLAN_EXTRAS})
        d["groups"] = []
        for g in self.groups:
            e = {"span": [g.i, g.j], "candidate_id": candidate_id(self.model, g.i, g.j), "layers": g.layers,
                 "cores": g.cores, "predicted_ms": g.predicted_ms}
            if g.device_ms is not None:
                e["device_ms"] = g.device_ms
            d["groups"].append(e)
        return d

    @classmethod
    def from_dict(cls, d: dict, graph: Graph) -> Plan:
        groups, pos = [], 0
        for e in d["groups"]:
            n = len(e["layers"])
            i, j = e.get("span", (pos, pos + n))
            groups.append(PlanGroup(int(i), int(j), list(e["layers"]), int(e["cores"]), float(e["predicted_ms"]),
                                    e.get("device_ms", e.get("simulated_ms"))))
            pos = int(j)
        return cls(d["model"], d["hardware"], d["hardware_hash"], d["batch"], d["strategy"], groups,
                   float(d["predicted_ms"]), d.get("device_ms", d.get("simulated_ms")))  # older files


def candidates(graph: Graph, hw: HardwareConfig) -> list[Group]:
    """Every legal group [i, j): at most hw.max_fusion layers; an unfusable layer only alone.
    Ordered by j, then i ascending."""
    si, sj = spans(graph, hw)
    return [graph.group(int(i), int(j)) for i, j in zip(si, sj)]


def spans(graph: Graph, hw: HardwareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Legal (i, j) spans as arrays, ordered by j, then i ascending."""
    n = len(graph.order)
    bad = np.array([not lyr.spec.fusable for lyr in graph.order], dtype=np.int64)
    cb = np.concatenate([[0], np.cumsum(bad)])
    ends = np.arange(1, n + 1)
    counts = np.minimum(hw.max_fusion, ends)  # spans ending at j: i = j - counts .. j - 1
    j = np.repeat(ends, counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n else counts
    i = np.repeat(ends - counts, counts) + (np.arange(len(j)) - np.repeat(first, counts))
    ok = (j - i == 1) | (cb[j] - cb[i] == 0)
    return i[ok], j[ok]


def plan_of(graph: Graph, hw: HardwareConfig, strategy: str, groups: list[PlanGroup], total: float) -> Plan:
    return Plan(graph.name, hw.name, hw.hash, graph.batch, strategy, groups, total)


def groups_of(graph: Graph, spans: Sequence[tuple[int, int]]) -> list[Group]:
    return [graph.group(i, j) for i, j in spans]


def cost_table(graph: Graph, hw: HardwareConfig, cost: CostSource, spans_i: np.ndarray,
               spans_j: np.ndarray) -> np.ndarray:
    """Cost (ms) of every span at every core count in one batched call: shape (n_spans, n_cores).
    A source that does not measure is asked once per distinct group content (`GroupBatch.distinct`):
    repeated blocks cost alike, and a deep network's table costs what its distinct kernels do."""
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    batch = GroupBatch.from_ranges(graph, spans_i, spans_j)
    if not cost.measures and len(spans_i):
        first, inverse = batch.distinct()
        if len(first) < len(spans_i):
            sub = GroupBatch.from_ranges(graph, spans_i[first], spans_j[first])
            return cost_table_batch(sub, ks, cost)[inverse]
    return cost_table_batch(batch, ks, cost)


def cost_table_batch(batch: GroupBatch, ks: np.ndarray, cost: CostSource) -> np.ndarray:
    """Cost (ms) of every group of `batch` at every core count in `ks`: shape (n_groups, len(ks))."""
    n = batch.n_groups
    return cost(batch, np.repeat(np.arange(n), len(ks)), np.tile(ks, n)).reshape(n, len(ks))


def cost_table_of(groups: Sequence[Group], hw: HardwareConfig, cost: CostSource) -> np.ndarray:
    """Cost (ms) of each group at every core count in one batched call: shape (len(groups), n_cores)."""
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    batch = GroupBatch.build(groups)
    gidx = np.repeat(np.arange(len(groups)), len(ks))
    return cost(batch, gidx, np.tile(ks, len(groups))).reshape(len(groups), len(ks))


def dp_plan(graph: Graph, hw: HardwareConfig, cost: CostSource, strategy: str) -> Plan:
    """The exact optimum under `cost` over contiguous partitions and per-group core counts."""
    si, sj = spans(graph, hw)
    return dp_from_table(graph, hw, si, sj, cost_table(graph, hw, cost, si, sj), strategy)


def span_index(si: np.ndarray, sj: np.ndarray) -> dict[tuple[int, int], int]:
    """Row of each (i, j) span in a cost table over spans `si`, `sj`."""
    return {(int(i), int(j)): s for s, (i, j) in enumerate(zip(si, sj))}


def sure_plan(graph: Graph, hw: HardwareConfig, cost: CostSource, model, strategy: str) -> Plan:
    """The DP on a model that remembers measured kernels (autotune/costmodel/memory.py), with every kernel it
    has not measured counted dearer by its validation error's 90th percentile (`unmeasured_doubt`):
    a search over thousands of predictions finds the ones that err low (the optimizer's curse), so
    it prefers what it is sure of unless a guess is better by more than the model's errors reach.
    The plan reports its predicted latency unpenalised, and how many of its kernels were measured.
    A model without a memory plans as `dp_plan` does."""
    si, sj = spans(graph, hw)
    table = cost_table(graph, hw, cost, si, sj)
    sure = measured_mask(graph, hw, model, si, sj)
    if sure is None or not sure.any():
        return dp_from_table(graph, hw, si, sj, table, strategy)
    doubt = unmeasured_doubt(model)
    p = dp_from_table(graph, hw, si, sj, np.where(sure, table, table * (1.0 + doubt)), strategy)
    at = span_index(si, sj)
    col = {int(k): c for c, k in enumerate(hw.core_counts)}
    measured = 0
    for g in p.groups:
        s, c = at[(g.i, g.j)], col[g.cores]
        g.predicted_ms = float(table[s, c])
        measured += int(sure[s, c])
    p.predicted_ms = float(sum(g.predicted_ms for g in p.groups))
    p.extra.update({"kernels_measured": measured, "unmeasured_margin": round(doubt, 4)})
    return p


def unmeasured_doubt(model, tail: bool = True) -> float:
    """How much dearer `sure_plan` counts a kernel the model has not measured, as a ratio: the 90th
    percentile of its validation error (the search picks the kernels the model errs low on, so a
    typical error is too little), or with `tail=False` (or a model that records no tail) its mean
    error; 0 for a model that records neither."""
    for attr in ("val_q90_log_", "val_mae_log_")[0 if tail else 1:]:
        doubt = float(np.expm1(getattr(model, attr, 0.0) or 0.0))
        if np.isfinite(doubt) and doubt > 0:
            return doubt
    return 0.0


def distinct_features(graph: Graph, hw: HardwareConfig, model, si: np.ndarray, sj: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s feature rows of each distinct span content at every core count (row d * n_cores +
    c), and the distinct content of every span (GroupBatch.distinct)."""
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    first, inverse = GroupBatch.from_ranges(graph, si, sj).distinct()
    sub = GroupBatch.from_ranges(graph, si[first], sj[first])
    return model.featurize_batch(sub, np.repeat(np.arange(len(first)), len(ks)), np.tile(ks, len(first)), hw), inverse


def measured_mask(graph: Graph, hw: HardwareConfig, model, si: np.ndarray, sj: np.ndarray) -> np.ndarray | None:
    """Which (span, core count) pairs `model` answers from its memory of measurements, as a
    spans x core counts table; None for a model without one."""
    memory = getattr(model, "memory_", None)
    if memory is None or not len(memory) or not len(si):
        return None
    X, inverse = distinct_features(graph, hw, model, si, sj)
    return memory.lookup(X)[0].reshape(-1, len(hw.core_counts))[inverse]


def dp_from_table(graph: Graph, hw: HardwareConfig, si: np.ndarray, sj: np.ndarray, table: np.ndarray,
                  strategy: str) -> Plan:
    """The DP over a cost table (spans x core counts, ms), spans as `_spans` orders them."""
    n = len(graph.order)
    kbest = table.argmin(1)
    cbest = table[np.arange(len(si)), kbest]
    best, arg = best_covers(si, sj, cbest, 0, n)  # ties: the earliest i, i.e. the longest group
    groups, j = [], n
    order = graph.order
    while j > 0:
        s = arg[j]
        i = int(si[s])
        groups.append(PlanGroup(i, j, [lyr.name for lyr in order[i:j]], int(hw.core_counts[kbest[s]]), float(cbest[s])))
        j = i
    groups.reverse()
    return plan_of(graph, hw, strategy, groups, float(best[n]))


def best_covers(si: np.ndarray, sj: np.ndarray, cost: np.ndarray, start: int, stop: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The DP's forward pass over spans [si, sj) sorted by sj, each costing `cost`: for every m in
    [start, stop], the least cost of covering layers [start, m) (index m; inf where nothing covers
    it) and the span that ends that cover (-1 for none). Among the spans that end at one m, the
    first listed wins a tie."""
    best = np.full(stop + 1, np.inf)
    best[start] = 0.0
    arg = np.full(stop + 1, -1, dtype=np.int64)
    ends = np.searchsorted(sj, np.arange(stop + 2))  # the spans ending at m are a contiguous slice
    for m in range(start + 1, stop + 1):
        lo, hi = ends[m], ends[m + 1]
        if lo == hi:
            continue
        tot = best[si[lo:hi]] + cost[lo:hi]  # a span from before `start` meets inf
        k = int(np.argmin(tot))
        best[m], arg[m] = tot[k], lo + k
    return best, arg


def fixed_plan(graph: Graph, hw: HardwareConfig, spans: list[tuple[int, int]], cores: list[int], strategy: str,
                cost: CostSource) -> Plan:
    """A plan with given groups and core counts, its predicted latency from `cost`."""
    groups = groups_of(graph, spans)
    ms = cost(GroupBatch.build(groups), np.arange(len(groups)), np.asarray(cores, dtype=np.int64))
    order = graph.order
    pg = [PlanGroup(i, j, [lyr.name for lyr in order[i:j]], int(k), float(m)) for (i, j), k, m in zip(spans, cores, ms)]
    return plan_of(graph, hw, strategy, pg, float(ms.sum()))


def plan(graph: Graph, hw: HardwareConfig, model=None, *, cost: str | CostSource | None = None) -> Plan:
    """The DP plan: under the learned `model` by default (never touching the device), or under
    another cost source by keyword: cost="analytic" (the datasheet estimate), cost="oracle" (the
    noise-free device, counted in `device_calls`), any registered name (`costs.cost_names()`), or a
    CostSource."""

    if cost is None:
        if model is None:
            raise AutotuneError("plan() needs a trained model, or cost='analytic' / 'oracle'")
        cost = "learned"
    source = cost if isinstance(cost, CostSource) else make_cost(cost, hw, model)
    t0 = time.perf_counter()
    p = dp_plan(graph, hw, source, cost if isinstance(cost, str) else source.name)
    p.plan_s = time.perf_counter() - t0
    p.device_calls = source.sim_pairs
    return p


def outside_training(p: Plan, graph: Graph, hw: HardwareConfig, model) -> tuple[int, dict[str, int], float]:
    """How the plan's kernels sit against `model`'s training data: how many lie outside it, how many
    exceed each feature's range (LatencyModel.outside), and their median novelty (1: like the
    labels; LatencyModel.novelty). (0, {}, nan) for a model that records no coverage."""
    if not hasattr(model, "outside") or not p.groups:
        return 0, {}, float("nan")
    X = _plan_rows(p, graph, hw, model)
    mask, counts = model.outside(X)
    nov = model.novelty(X)
    return int(mask.sum()), counts, float("nan") if nov is None else float(np.median(nov))


def _plan_rows(p: Plan, graph: Graph, hw: HardwareConfig, model) -> np.ndarray:
    """`model`'s feature rows of the plan's kernels, one per group."""
    groups = [graph.group(g.i, g.j) for g in p.groups]
    return model.featurize_batch(GroupBatch.build(groups), np.arange(len(groups)),
                                 np.array([g.cores for g in p.groups], dtype=np.int64), hw)


def known_unrunnable(p: Plan, graph: Graph, hw: HardwareConfig, model) -> list:
    """The plan's groups whose kernel `model`'s memory holds as one the part could not run (+inf,
    LatencyModel.block), whatever the plan predicted for it (a datasheet rule never asks the model)."""
    memory = getattr(model, "memory_", None)
    if memory is None or not memory.n_unrunnable or not p.groups:
        return []
    hit, vals = memory.lookup(np.asarray(_plan_rows(p, graph, hw, model), dtype=np.float32))
    bad = np.zeros(len(p.groups), bool)
    bad[np.flatnonzero(hit)[np.isinf(vals)]] = True
    return [g for g, b in zip(p.groups, bad) if b]


def verify(p: Plan, graph: Graph, hw: HardwareConfig, device: CostSource | None = None) -> Plan:
    """Fill in the noise-free device latency of every group and of the whole, in one batch: the
    simulator's, or `device`'s (e.g. a measured table, costs.table_cost)."""
    groups = [graph.group(g.i, g.j) for g in p.groups]
    if device is not None:
        ms = device(GroupBatch.build(groups), np.arange(len(groups)), np.array([g.cores for g in p.groups]))
    else:
        ms = Simulator(hw).measure(groups, [g.cores for g in p.groups])
    for g, m in zip(p.groups, ms):
        g.device_ms = float(m)
    p.device_ms = float(ms.sum())
    return p
