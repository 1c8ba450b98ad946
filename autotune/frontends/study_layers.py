"""DLFusion's synthetic layers: chains of identical 3x3 convolutions over channel sizes and op counts.

The study (autotune/studies/dlfusion_study.py) times them on the simulator; the `dlfusion` strategy derives its core
rule from them on any cost source (autotune/planning/strategies/baselines.py).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from autotune.ir.graph import Graph, GraphBuilder


def conv_chain(channels: int, size: int, n: int = 1, k: int = 3, batch: int = 1) -> Graph:
    """n identical k x k convolutions, channels -> channels, on a size x size map."""
    b = GraphBuilder(f"chain{n}_c{channels}_s{size}", batch)
    x = b.input("x", (batch, channels, size, size))
    for i in range(n):
        x = b.conv(x, channels, k, name=f"conv{i}")
    return b.build()


def size_for_macs(macs: float, channels: int, k: int = 3) -> int:
    """Spatial size whose k x k conv (channels -> channels) has about `macs` MACs (0 if impossible)."""
    s = math.sqrt(macs / (channels * channels * k * k))
    return int(round(s)) if 1 <= s <= 1024 else 0


def study_grid() -> tuple[pd.DataFrame, list[Graph]]:
    """DLFusion's synthetic layers: single 3x3 convs over channel sizes and op counts (no latencies)."""
    rows, graphs = [], []
    for c in [4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048]:
        for macs in np.logspace(4, 10.5, 14):
            s = size_for_macs(macs, c)
            if s:
                graphs.append(conv_chain(c, s))
                rows.append({"channels": c, "target_macs": macs, "size": s})
    return pd.DataFrame(rows), graphs
