"""Simulator throughput in (group, cores) pairs per second, for groups of 1, 4 and 16 layers.

Groups are slices of one long conv chain at every core count (as the planner's oracle asks).
Columns: "from Groups" times `simulate` on (Group, cores) lists, building the GroupBatch (the
per-graph table is built once beforehand and cached, its time printed below); "+ Group objects"
also creates the Group objects; "model only" times `simulate_batch` on a prebuilt GroupBatch.
Single process; numpy runs these kernels on one core. Usage: python bench/bench_simulator.py [--hw mlu100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from autotune.cli.report import format_table
from autotune.device.simulator import simulate, simulate_batch
from autotune.hardware.config import load_hardware
from autotune.ir.graph import GraphBuilder
from autotune.ir.tables import GroupBatch, graph_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", default="mlu100")
    ap.add_argument("--layers", type=int, default=4000)
    a = ap.parse_args()
    hw = load_hardware(a.hw)
    b = GraphBuilder("chain")
    x = b.input("x", (1, 64, 56, 56))
    for i in range(a.layers):
        x = b.conv(x, 64 + 32 * (i % 3), 3 if i % 2 else 1)
    g = b.build()
    t0 = time.perf_counter()
    graph_table(g)
    table_s = time.perf_counter() - t0
    ks = np.asarray(hw.core_counts)
    rows = []
    for n in (1, 4, 16):
        t0 = time.perf_counter()
        groups = [g.group(i, i + n) for i in range(0, len(g) - n, max(1, n // 2))]
        make = time.perf_counter() - t0
        pairs = [gr for gr in groups for _ in ks]
        cores = np.tile(ks, len(groups))
        simulate(pairs[:60], cores[:60], hw)  # warm-up
        t0 = time.perf_counter()
        simulate(pairs, cores, hw)
        full = time.perf_counter() - t0
        batch = GroupBatch.build(groups)
        gidx = np.repeat(np.arange(len(groups)), len(ks))
        t0 = time.perf_counter()
        simulate_batch(batch, gidx, cores, hw)
        model = time.perf_counter() - t0
        rows.append([n, len(pairs), f"{len(pairs) / (full + make):,.0f}", f"{len(pairs) / full:,.0f}",
                     f"{len(pairs) / model:,.0f}"])
    print(f"simulator throughput on {hw.name}, one process, {len(g)}-layer chain "
          f"(its table: {table_s * 1e3:.0f} ms, once per graph)")
    print(format_table(rows, ["layers/group", "pairs", "pairs/s (+ Group objects)", "pairs/s (from Groups)",
                              "pairs/s (model only)"], right={0, 1, 2, 3, 4}))


if __name__ == "__main__":
    main()
