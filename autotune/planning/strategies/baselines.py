"""Baselines a learned planner must beat: no optimisation, core counts only, maximal fusion,
DLFusion's rule and greedy merging. With a model they search on the model's costs (equal
knowledge with `learned`); without one, on the device, every pair counted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from autotune.frontends.study_layers import study_grid
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.planning.costs import CostSource
from autotune.planning.planner import Plan, PlanGroup, cost_table, cost_table_of, fixed_plan, plan_of
from autotune.planning.planner import spans as candidate_spans
from autotune.planning.strategies import Context, register_strategy


def plan_none(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """Every layer its own kernel on one core: the paper's no-optimisation baseline."""
    n = len(graph.order)
    return fixed_plan(graph, hw, [(i, i + 1) for i in range(n)], [hw.core_counts[0]] * n, "none", cost)


def plan_cores_only(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """No fusion; each layer on its best core count under `cost`."""
    n = len(graph.order)
    si, sj = np.arange(n), np.arange(1, n + 1)
    t = cost_table(graph, hw, cost, si, sj)
    cores = [int(hw.core_counts[k]) for k in t.argmin(1)]
    order = graph.order
    pg = [PlanGroup(i, i + 1, [order[i].name], c, float(t[i].min())) for i, c in enumerate(cores)]
    return plan_of(graph, hw, "cores-only", pg, float(t.min(1).sum()))


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
    return fixed_plan(graph, hw, spans, [hw.core_counts[-1]] * len(spans), "fuse-max", cost)


def best_cores_map(hw: HardwareConfig, latency_table: Callable[[list[Graph]], np.ndarray]) -> pd.DataFrame:
    """Best core count over DLFusion's study grid; `latency_table(graphs)` -> (n, K) ms."""
    df, graphs = study_grid()
    lat = latency_table(graphs)
    df["macs"] = [g.total_macs for g in graphs]
    df["best_cores"] = np.asarray(hw.core_counts)[lat.argmin(1)]
    df["speedup_vs_1core"] = lat[:, 0] / lat.min(1)
    return df


def dlfusion_rule(hw: HardwareConfig, cost: CostSource) -> Callable[[float, int], int]:
    """Best core count by (op count, channel size), nearest point of the synthetic layer study
    (single 3x3 convs at every core count, costed by `cost`), as DLFusion derives its rules from
    measured layers. With the learned model as `cost` this measures nothing; with the simulator
    every study point counts as a simulator call."""
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
    return fixed_plan(graph, hw, spans, cores, "dlfusion", cost)


def plan_greedy(graph: Graph, hw: HardwareConfig, cost: CostSource) -> Plan:
    """From cores-only, repeatedly merge the adjacent pair of groups whose merge (at its best core
    count) saves the most, until no merge helps."""
    n = len(graph.order)
    si, sj = candidate_spans(graph, hw)
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
    return plan_of(graph, hw, "greedy", pg, float(sum(g.predicted_ms for g in pg)))


@register_strategy("none", may_measure=True)
def none(ctx: Context) -> Plan:
    """Every layer its own kernel on one core: the paper's no-optimisation baseline."""
    return plan_none(ctx.graph, ctx.hw, ctx.search_cost())


@register_strategy("cores-only", may_measure=True)
def cores_only(ctx: Context) -> Plan:
    """No fusion; each layer on its best core count."""
    return plan_cores_only(ctx.graph, ctx.hw, ctx.search_cost())


@register_strategy("fuse-max", may_measure=True)
def fuse_max(ctx: Context) -> Plan:
    """The longest legal groups from the start, every one on all cores."""
    return plan_fuse_max(ctx.graph, ctx.hw, ctx.search_cost())


@register_strategy("dlfusion", may_measure=True)
def dlfusion(ctx: Context) -> Plan:
    """DLFusion's rule: a core count per layer from (op count, channels), fused while it agrees."""
    return plan_dlfusion(ctx.graph, ctx.hw, ctx.search_cost())


@register_strategy("greedy", may_measure=True)
def greedy(ctx: Context) -> Plan:
    """From cores-only, merge the adjacent pair that saves most, until no merge helps."""
    return plan_greedy(ctx.graph, ctx.hw, ctx.search_cost())
