"""The DLFusion synthetic-layer study on the simulator, as tables (`autotune study` writes CSVs and plots).

Three views of the two knobs: latency against core count for layers spanning op counts, the
best core count over (op count, channel size), and the speed-up of fusing chains of small
and large layers against group length; the device effects are effects_study.py's (`autotune study` runs both).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .graph import Graph, GraphBuilder
from .hardware import HardwareConfig


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


def _latency_table(graphs: list[Graph], hw: HardwareConfig) -> np.ndarray:
    """Latency (ms) of each whole graph as one group at every core count: shape (len(graphs), K)."""
    from .device import Simulator

    ks = list(hw.core_counts)
    groups = [g.group(0, len(g)) for g in graphs for _ in ks]
    cores = np.tile(ks, len(graphs))
    return Simulator(hw).measure(groups, cores).reshape(len(graphs), len(ks))


def latency_vs_cores(hw: HardwareConfig, channels: int = 64) -> pd.DataFrame:
    rows = []
    for macs in np.logspace(5, 10, 6):
        s = size_for_macs(macs, channels)
        if s:
            g = conv_chain(channels, s)
            for k, ms in zip(hw.core_counts, _latency_table([g], hw)[0]):
                rows.append({"macs": g.total_macs, "channels": channels, "size": s, "cores": k, "latency_ms": ms})
    return pd.DataFrame(rows)


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


def best_cores_map(hw: HardwareConfig, latency_table=None) -> pd.DataFrame:
    """Best core count over the study grid; `latency_table(graphs)` -> (n, K) ms, default the simulator."""
    df, graphs = study_grid()
    lat = latency_table(graphs) if latency_table is not None else _latency_table(graphs, hw)
    df["macs"] = [g.total_macs for g in graphs]
    df["best_cores"] = np.asarray(hw.core_counts)[lat.argmin(1)]
    df["speedup_vs_1core"] = lat[:, 0] / lat.min(1)
    return df


def fusion_speedup(hw: HardwareConfig) -> pd.DataFrame:
    """Best fused latency of an n-layer chain against the sum of its layers' best solo latencies."""
    cases = {"small (c32, 14x14)": (32, 14), "medium (c128, 28x28)": (128, 28), "large (c256, 112x112)": (256, 112)}
    rows = []
    for label, (c, s) in cases.items():
        solo = _latency_table([conv_chain(c, s)], hw)[0].min()
        chains = [conv_chain(c, s, n) for n in range(1, hw.max_fusion + 1)]
        lat = _latency_table(chains, hw)
        for n, row in zip(range(1, hw.max_fusion + 1), lat):
            rows.append({"case": label, "length": n, "fused_ms": row.min(), "unfused_ms": n * solo,
                         "best_cores": hw.core_counts[int(row.argmin())], "speedup": n * solo / row.min()})
    return pd.DataFrame(rows)
