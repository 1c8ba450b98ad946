"""The DLFusion synthetic-layer study on the simulator, as tables (`autotune study` writes CSVs and plots).

Three views of the two knobs: latency against core count for layers spanning op counts, the
best core count over (op count, channel size), and the speed-up of fusing chains of small
and large layers against group length; the device effects are effects_study.py's (`autotune study` runs both).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from autotune.device.base import Simulator
from autotune.frontends.study_layers import conv_chain, size_for_macs
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.planning.strategies.baselines import best_cores_map


def _latency_table(graphs: list[Graph], hw: HardwareConfig) -> np.ndarray:
    """Latency (ms) of each whole graph as one group at every core count: shape (len(graphs), K)."""

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


def best_cores(hw: HardwareConfig) -> pd.DataFrame:
    """Best core count over the study grid on the simulator."""
    return best_cores_map(hw, lambda graphs: _latency_table(graphs, hw))


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
