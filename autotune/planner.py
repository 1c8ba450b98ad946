"""Fusion planner: dynamic programming over the topological order, the oracle, and baselines.

best[j] = min over i in [j - max_fusion, j) of best[i] + min_k cost([i, j), k): the exact optimum
over partitions of the order into contiguous groups with one core count each, in
O(n * max_fusion * |core_counts|) cost evaluations, all sent to the cost source in one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .graph import Graph, Group
from .hardware import HardwareConfig
from .tables import GroupBatch


# -- cost sources -------------------------------------------------------------------------------
@dataclass
class CostSource:
    """Latency (ms) of (group, cores) pairs; counts the pairs it was asked for and simulator calls."""

    name: str
    fn: Callable[[GroupBatch, np.ndarray, np.ndarray], np.ndarray]
    simulated: bool
    pairs: int = 0
    sim_pairs: int = 0

    def __call__(self, batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray) -> np.ndarray:
        self.pairs += len(gidx)
        if self.simulated:
            self.sim_pairs += len(gidx)
        return self.fn(batch, gidx, cores)


def simulator_cost(hw: HardwareConfig) -> CostSource:
    """The noise-free simulator: the oracle's cost."""
    from .simulator import simulate_batch

    return CostSource("simulator", lambda b, g, k: simulate_batch(b, g, k, hw), simulated=True)


def model_cost(model, hw: HardwareConfig) -> CostSource:
    """The learned model: features + predict, never the simulator."""
    from .features import featurize_batch

    return CostSource("learned", lambda b, g, k: model.predict(featurize_batch(b, g, k, hw)), simulated=False)


def analytic_cost(hw: HardwareConfig) -> CostSource:
    """The datasheet estimate alone (`analytic.py`): no learning, no simulation."""
    from .analytic import analytic_ms

    return CostSource("analytic", lambda b, g, k: analytic_ms(b, g, k, hw.datasheet), simulated=False)


# -- plans --------------------------------------------------------------------------------------
@dataclass
class PlanGroup:
    i: int
    j: int
    layers: list[str]
    cores: int
    predicted_ms: float
    simulated_ms: float | None = None


@dataclass
class Plan:
    model: str
    hardware: str
    hardware_hash: str
    batch: int
    strategy: str
    groups: list[PlanGroup]
    predicted_ms: float
    simulated_ms: float | None = None
    sim_calls: int = 0  # (group, cores) pairs simulated while planning
    plan_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The design's plan JSON."""
        d = {"model": self.model, "hardware": self.hardware, "hardware_hash": self.hardware_hash,
             "batch": self.batch, "strategy": self.strategy, "predicted_ms": self.predicted_ms}
        if self.simulated_ms is not None:
            d["simulated_ms"] = self.simulated_ms
        d["groups"] = []
        for g in self.groups:
            e = {"layers": g.layers, "cores": g.cores, "predicted_ms": g.predicted_ms}
            if g.simulated_ms is not None:
                e["simulated_ms"] = g.simulated_ms
            d["groups"].append(e)
        return d

    @classmethod
    def from_dict(cls, d: dict, graph: Graph) -> Plan:
        groups, pos = [], 0
        for e in d["groups"]:
            n = len(e["layers"])
            groups.append(PlanGroup(pos, pos + n, list(e["layers"]), int(e["cores"]), float(e["predicted_ms"]),
                                    e.get("simulated_ms")))
            pos += n
        return cls(d["model"], d["hardware"], d["hardware_hash"], d["batch"], d["strategy"], groups,
                   float(d["predicted_ms"]), d.get("simulated_ms"))


def candidates(graph: Graph, hw: HardwareConfig) -> list[Group]:
    """Every legal group [i, j): at most hw.max_fusion layers; an unfusable layer only alone.
    Ordered by j, then i ascending."""
    si, sj = _spans(graph, hw)
    return [graph.group(int(i), int(j)) for i, j in zip(si, sj)]


def _spans(graph: Graph, hw: HardwareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Legal (i, j) spans as arrays, ordered by j, then i ascending."""
    n = len(graph.order)
    bad = np.array([not lyr.spec.fusable for lyr in graph.order], dtype=np.int64)
    cb = np.concatenate([[0], np.cumsum(bad)])
    L = hw.max_fusion
    j = np.repeat(np.arange(1, n + 1), [min(L, jj) for jj in range(1, n + 1)])
    i = j - np.concatenate([np.arange(min(L, jj), 0, -1) for jj in range(1, n + 1)]) if n else j
    ok = (j - i == 1) | (cb[j] - cb[i] == 0)
    return i[ok], j[ok]


def _meta(graph: Graph, hw: HardwareConfig, strategy: str, groups: list[PlanGroup], total: float) -> Plan:
    return Plan(graph.name, hw.name, hw.hash, graph.batch, strategy, groups, total)


def _groups_of(graph: Graph, spans: Sequence[tuple[int, int]]) -> list[Group]:
    return [graph.group(i, j) for i, j in spans]


def cost_table(graph: Graph, hw: HardwareConfig, cost: CostSource, spans_i: np.ndarray,
               spans_j: np.ndarray) -> np.ndarray:
    """Cost (ms) of every span at every core count in one batched call: shape (n_spans, n_cores)."""
    return cost_table_of([graph.group(int(i), int(j)) for i, j in zip(spans_i, spans_j)], hw, cost)


def cost_table_of(groups: Sequence[Group], hw: HardwareConfig, cost: CostSource) -> np.ndarray:
    """Cost (ms) of each group at every core count in one batched call: shape (len(groups), n_cores)."""
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    batch = GroupBatch.build(groups)
    gidx = np.repeat(np.arange(len(groups)), len(ks))
    return cost(batch, gidx, np.tile(ks, len(groups))).reshape(len(groups), len(ks))


def dp_plan(graph: Graph, hw: HardwareConfig, cost: CostSource, strategy: str) -> Plan:
    """The exact optimum under `cost` over contiguous partitions and per-group core counts."""
    si, sj = _spans(graph, hw)
    return dp_from_table(graph, hw, si, sj, cost_table(graph, hw, cost, si, sj), strategy)


def dp_from_table(graph: Graph, hw: HardwareConfig, si: np.ndarray, sj: np.ndarray, table: np.ndarray,
                  strategy: str) -> Plan:
    """The DP over a cost table (spans x core counts, ms), spans as `_spans` orders them."""
    n = len(graph.order)
    kbest = table.argmin(1)
    cbest = table[np.arange(len(si)), kbest]
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    arg = np.zeros(n + 1, dtype=np.int64)
    # spans are sorted by j: the spans ending at j are a contiguous slice
    ends = np.searchsorted(sj, np.arange(n + 2))
    for j in range(1, n + 1):
        lo, hi = ends[j], ends[j + 1]
        tot = best[si[lo:hi]] + cbest[lo:hi]
        m = int(np.argmin(tot))  # ties: the earliest i, i.e. the longest group
        best[j] = tot[m]
        arg[j] = lo + m
    groups, j = [], n
    order = graph.order
    while j > 0:
        s = arg[j]
        i = int(si[s])
        groups.append(PlanGroup(i, j, [lyr.name for lyr in order[i:j]], int(hw.core_counts[kbest[s]]), float(cbest[s])))
        j = i
    groups.reverse()
    return _meta(graph, hw, strategy, groups, float(best[n]))


def _fixed_plan(graph: Graph, hw: HardwareConfig, spans: list[tuple[int, int]], cores: list[int], strategy: str,
                cost: CostSource) -> Plan:
    """A plan with given groups and core counts, its predicted latency from `cost`."""
    groups = _groups_of(graph, spans)
    ms = cost(GroupBatch.build(groups), np.arange(len(groups)), np.asarray(cores, dtype=np.int64))
    order = graph.order
    pg = [PlanGroup(i, j, [lyr.name for lyr in order[i:j]], int(k), float(m)) for (i, j), k, m in zip(spans, cores, ms)]
    return _meta(graph, hw, strategy, pg, float(ms.sum()))


# -- baselines ----------------------------------------------------------------------------------
def plan_none(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """Every layer its own kernel on one core: the paper's no-optimisation baseline."""
    n = len(graph.order)
    return _fixed_plan(graph, hw, [(i, i + 1) for i in range(n)], [hw.core_counts[0]] * n, "none", cost)


def plan_cores_only(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """No fusion; each layer on its best core count under `cost`."""
    n = len(graph.order)
    si, sj = np.arange(n), np.arange(1, n + 1)
    t = cost_table(graph, hw, cost, si, sj)
    cores = [int(hw.core_counts[k]) for k in t.argmin(1)]
    order = graph.order
    pg = [PlanGroup(i, i + 1, [order[i].name], c, float(t[i].min())) for i, c in enumerate(cores)]
    return _meta(graph, hw, "cores-only", pg, float(t.min(1).sum()))


def plan_fuse_max(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """Longest legal groups from the start, every one on all cores."""
    order = graph.order
    spans, i = [], 0
    while i < len(order):
        j = i + 1
        if order[i].spec.fusable:
            while j < len(order) and j - i < hw.max_fusion and order[j].spec.fusable:
                j += 1
        spans.append((i, j))
        i = j
    return _fixed_plan(graph, hw, spans, [hw.core_counts[-1]] * len(spans), "fuse-max", cost)


def dlfusion_rule(hw: HardwareConfig, cost: CostSource) -> Callable[[float, int], int]:
    """Best core count by (op count, channel size), nearest point of the synthetic layer study
    (single 3x3 convs at every core count, costed by `cost`), as DLFusion derives its rules from
    measured layers. With the learned model as `cost` this measures nothing; with the simulator
    every study point counts as a simulator call."""
    from .study import best_cores_map

    def table(graphs: list[Graph]) -> np.ndarray:
        return cost_table_of([g.group(0, len(g)) for g in graphs], hw, cost)

    grid = best_cores_map(hw, table)
    pts = np.column_stack([np.log10(grid["macs"].to_numpy(float)), np.log2(grid["channels"].to_numpy(float))])
    best = grid["best_cores"].to_numpy()

    def rule(macs: float, channels: int) -> int:
        d = (pts[:, 0] - np.log10(max(macs, 1.0))) ** 2 + 0.25 * (pts[:, 1] - np.log2(max(channels, 1))) ** 2
        return int(best[int(np.argmin(d))])

    return rule


def plan_dlfusion(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """The paper's style of rule: a core count per layer from (op count, channels), then adjacent
    layers fused while they share a core count and the group fits on chip."""
    rule = dlfusion_rule(hw, cost)
    order = graph.order
    layer_k: list[int] = []
    for lyr in order:  # layers without MACs (pool, add, concat) ride along with their producer
        layer_k.append(rule(lyr.macs, lyr.out_channels) if (lyr.macs or not layer_k) else layer_k[-1])
    spans, cores, i = [], [], 0
    cap = hw.onchip_bytes
    while i < len(order):
        j, k = i + 1, layer_k[i]
        w = order[i].weight_bytes(hw.dtype_bytes)
        act = order[i].out_elems * hw.dtype_bytes
        while (order[i].spec.fusable and j < len(order) and j - i < hw.max_fusion
               and layer_k[j] == k and order[j].spec.fusable):
            w2 = w + order[j].weight_bytes(hw.dtype_bytes)
            act2 = max(act, order[j].out_elems * hw.dtype_bytes)
            if (w2 + act2) > cap * k:
                break
            w, act, j = w2, act2, j + 1
        spans.append((i, j))
        cores.append(k)
        i = j
    return _fixed_plan(graph, hw, spans, cores, "dlfusion", cost)


def plan_greedy(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """From cores-only, repeatedly merge the adjacent pair of groups whose merge (at its best core
    count) saves the most, until no merge helps."""
    n = len(graph.order)
    si, sj = _spans(graph, hw)
    table = cost_table(graph, hw, cost, si, sj)
    best = {(int(i), int(j)): (float(table[r].min()), int(hw.core_counts[int(table[r].argmin())]))
            for r, (i, j) in enumerate(zip(si, sj))}
    spans = [(i, i + 1) for i in range(n)]
    while True:
        gain, at = 0.0, -1
        for t in range(len(spans) - 1):
            a, b = spans[t], spans[t + 1]
            m = best.get((a[0], b[1]))
            if m is None:
                continue
            g = best[a][0] + best[b][0] - m[0]
            if g > gain:
                gain, at = g, t
        if at < 0:
            break
        spans[at: at + 2] = [(spans[at][0], spans[at + 1][1])]
    order = graph.order
    pg = [PlanGroup(i, j, [lyr.name for lyr in order[i:j]], best[(i, j)][1], best[(i, j)][0]) for i, j in spans]
    return _meta(graph, hw, "greedy", pg, float(sum(g.predicted_ms for g in pg)))


BASELINES = {"none": plan_none, "cores-only": plan_cores_only, "fuse-max": plan_fuse_max,
             "dlfusion": plan_dlfusion, "greedy": plan_greedy}
#: Strategies that run the DP on a cost source of their own.
DP_STRATEGIES = {"learned": None, "analytic": analytic_cost, "oracle": simulator_cost}
STRATEGIES = list(DP_STRATEGIES) + list(BASELINES)


def plan(graph: Graph, hw: HardwareConfig, model=None, *, cost: str | CostSource | None = None) -> Plan:
    """The DP plan: under the learned `model` by default (never simulating), or under another cost
    source by keyword: cost="analytic" (the datasheet estimate), cost="oracle" (the noise-free
    simulator, counted in `sim_calls`), or any CostSource."""
    from .errors import AutotuneError

    if cost is None:
        if model is None:
            raise AutotuneError("plan() needs a trained model, or cost='analytic' / 'oracle'")
        source, name = model_cost(model, hw), "learned"
    elif isinstance(cost, CostSource):
        source, name = cost, cost.name
    elif cost in ("analytic", "oracle"):
        source, name = DP_STRATEGIES[cost](hw), cost
    else:
        raise AutotuneError(f"unknown cost source {cost!r}; use 'analytic', 'oracle' or a CostSource")
    t0 = time.perf_counter()
    p = dp_plan(graph, hw, source, name)
    p.plan_s = time.perf_counter() - t0
    p.sim_calls = source.sim_pairs
    return p


def run_strategy(name: str, graph: Graph, hw: HardwareConfig, model=None, measure_budget: int = 0,
                 measure_seed: int = 0) -> Plan:
    """Plan with a named strategy. `learned` (the DP on the model) needs `model` and never simulates;
    `analytic` is the DP on the datasheet estimate, `oracle` the DP on the simulator. Baselines
    (cores-only, fuse-max, dlfusion's study map, greedy) use the same cost source as `learned` when
    a model is given, so they compare search strategies at equal knowledge; without a model they
    measure on the simulator, and every simulated pair counts in `sim_calls`. `learned+measure`
    is `measured_plan` with `measure_budget` device measurements (noisy, seeded by `measure_seed`)."""
    from .errors import AutotuneError

    if name == "learned+measure":
        if model is None:
            raise AutotuneError("the learned+measure strategy needs a trained model")
        from .refine import device_cost, measured_plan

        t0 = time.perf_counter()
        device = device_cost(hw, measure_seed)
        p = measured_plan(graph, hw, model, measure_budget, device)
        p.plan_s = time.perf_counter() - t0
        p.sim_calls = device.sim_pairs
        return p
    if name not in STRATEGIES:
        raise AutotuneError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    t0 = time.perf_counter()
    if name == "learned":
        if model is None:
            raise AutotuneError("the learned strategy needs a trained model")
        cost = model_cost(model, hw)
        p = dp_plan(graph, hw, cost, "learned")
    elif name in DP_STRATEGIES:
        cost = DP_STRATEGIES[name](hw)
        p = dp_plan(graph, hw, cost, name)
    else:
        cost = model_cost(model, hw) if model is not None else simulator_cost(hw)
        p = BASELINES[name](graph, hw, cost)
    p.plan_s = time.perf_counter() - t0
    p.sim_calls = cost.sim_pairs
    return p


def verify(p: Plan, graph: Graph, hw: HardwareConfig) -> Plan:
    """Fill in the noise-free simulated latency of every group and of the whole, in one batch."""
    from .simulator import simulate

    ms = simulate([graph.group(g.i, g.j) for g in p.groups], [g.cores for g in p.groups], hw)
    for g, m in zip(p.groups, ms):
        g.simulated_ms = float(m)
    p.simulated_ms = float(ms.sum())
    return p
