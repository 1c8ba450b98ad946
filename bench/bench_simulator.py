"""Simulator throughput in (group, cores) pairs per second, for groups of 1, 4 and 16 layers.

Groups are slices of one long conv chain at every core count (as the planner's oracle asks);
the second column counts building the vectorised group tables too, the third only the model.
Usage: python bench/bench_simulator.py [--hw mlu100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from autotune.graph import GraphBuilder
from autotune.hardware import load_hardware
from autotune.report import format_table
from autotune.simulator import simulate, simulate_batch
from autotune.tables import GroupBatch


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
    ks = np.asarray(hw.core_counts)
    rows = []
    for n in (1, 4, 16):
        groups = [g.group(i, i + n) for i in range(0, len(g) - n, max(1, n // 2))]
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
        rows.append([n, len(pairs), f"{len(pairs) / full:,.0f}", f"{len(pairs) / model:,.0f}"])
    print(f"simulator throughput on {hw.name}, one process")
    print(format_table(rows, ["layers/group", "pairs", "pairs/s (with tables)", "pairs/s (model only)"],
                       right={0, 1, 2, 3}))


if __name__ == "__main__":
    main()
