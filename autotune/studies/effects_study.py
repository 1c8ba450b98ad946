"""The device's effects with no closed form in datasheet terms, each shown on its own and by what
it does to the oracle's plans (part of `autotune study`).

Each panel measures the device (the simulator) with the effect on and with that one effect
switched off in `device:`, on a probe that exposes it: a conv over map sizes (tiling), a weight
stream over core counts (DRAM contention), a compute-bound fused chain over core counts (power),
fused chains of distinct against repeated layers (descriptors), a windowed conv over channel
counts (banks), and repeated measurements of one kernel (timing noise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from autotune.device.base import Simulator
from autotune.frontends import zoo
from autotune.frontends.study_layers import conv_chain
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import GraphBuilder
from autotune.planning import strategies
from autotune.planning.planner import verify

#: `device:` sections that switch one effect on or off.
EFFECTS = ("tiling", "contention", "power", "descriptors", "banks")


def _without(hw: HardwareConfig, effect: str) -> HardwareConfig:
    return hw.updated({f"device.{effect}": None})


def _lat(groups, cores, hw: HardwareConfig) -> np.ndarray:
    return Simulator(hw).measure(groups, cores)


def _measure(groups, cores, hw: HardwareConfig, seed: int) -> np.ndarray:
    """One seeded measurement of each pair, timing noise included."""

    return Simulator(hw).measure(groups, cores, seed=seed)


def effect_curves(hw: HardwareConfig) -> pd.DataFrame:
    """Long table (panel, x, variant, y) of the six probes, with the effect on and off."""
    rows = []

    def add(panel: str, xs, ys_on, ys_off=None) -> None:
        for x, y in zip(xs, ys_on):
            rows.append({"panel": panel, "x": float(x), "variant": "device", "y": float(y)})
        if ys_off is not None:
            for x, y in zip(xs, ys_off):
                rows.append({"panel": panel, "x": float(x), "variant": "effect off", "y": float(y)})

    dev = hw.require_device()
    k1 = hw.core_counts[0]
    # tiling: latency of a 64-channel 3x3 conv on one core over the map size, over the same without tiling
    if dev.tiling is not None:
        sizes = np.arange(8, 161)
        grp = [conv_chain(64, int(s)).group(0, 1) for s in sizes]
        cores = [k1] * len(grp)
        add("tiling: latency / latency without tiling vs map size", sizes,
            _lat(grp, cores, hw) / _lat(grp, cores, _without(hw, "tiling")))
    ks = np.asarray(hw.core_counts)
    # contention: effective GB/s of a batch-1 fc streaming its weights, over core counts
    if dev.contention is not None:
        b = GraphBuilder("fc")
        b.fc(b.input("x", (1, 4096)), 4096)
        fc = b.build()
        nbytes = fc.order[0].weight_elems * hw.dtype_bytes
        g = [fc.group(0, 1)] * len(ks)
        add("contention: weight stream GB/s vs cores", ks, nbytes / _lat(g, ks, hw) / 1e6,
            nbytes / _lat(g, ks, _without(hw, "contention")) / 1e6)
    # power: speed-up over one core of a compute-bound fused chain (4 x 3x3 conv, 256 ch, batch 8)
    if dev.power is not None:
        chain = conv_chain(256, 16, 4, batch=8)
        g = [chain.group(0, 4)] * len(ks)
        on, off = _lat(g, ks, hw), _lat(g, ks, _without(hw, "power"))
        add("power: speed-up over 1 core vs cores", ks, on[0] / on, off[0] / off)
    # descriptors: what reloads add to fused chains of n distinct layers, and of n repeats of one
    if dev.descriptors is not None:
        lengths = np.arange(1, hw.max_fusion + 1)
        bd = GraphBuilder("distinct")
        x = bd.input("x", (1, 64, 28, 28))
        for i in range(hw.max_fusion):
            x = bd.conv(x, 64 + 16 * i, 1 + 2 * (i % 2))
        distinct = bd.build()
        same = conv_chain(64, 28, hw.max_fusion)
        cores = [hw.core_counts[len(ks) // 2]] * len(lengths)
        for label, chain in (("distinct layers", distinct), ("one layer repeated", same)):
            grp = [chain.group(0, int(n)) for n in lengths]
            extra = (_lat(grp, cores, hw) - _lat(grp, cores, _without(hw, "descriptors"))) * 1e3
            rows.extend({"panel": "descriptors: us added by reloads vs fused length", "x": float(n),
                         "variant": label, "y": float(v)} for n, v in zip(lengths, extra))
    # banks: latency of a 3x3 conv at 28x28 on one core over channel counts, over the same without banks
    if dev.banks is not None:
        chans = np.arange(32, 1057, 16)
        grp = [conv_chain(int(c), 28).group(0, 1) for c in chans]
        cores = [k1] * len(grp)
        add("banks: latency / latency without bank conflicts vs channels", chans,
            _lat(grp, cores, hw) / _lat(grp, cores, _without(hw, "banks")))
    # noise: measured / true latency of one kernel measured many times
    g = [conv_chain(64, 28).group(0, 1)] * 20000
    k = hw.core_counts[(len(ks) - 1) // 2]  # one of the part's own counts, mid-range (4 on mlu100)
    ratio = _measure(g, [k] * len(g), hw, seed=0) / _lat(g[:1], [k], hw)[0]
    edges = np.linspace(0.85, 1.6, 61)
    hist, _ = np.histogram(np.clip(ratio, edges[0], edges[-1]), bins=edges)
    add("noise: measurements per bin vs measured / true", (edges[:-1] + edges[1:]) / 2, hist)
    return pd.DataFrame(rows)


def effects_on_plans(hw: HardwareConfig, models: list[str] | None = None) -> pd.DataFrame:
    """For each effect: the oracle's plans on the zoo with the effect and without it. Columns:
    effect, model, ms (device with the effect), kernels and work-weighted mean cores of both
    plans, and the regret of planning as if the effect did not exist (measured with it)."""

    rows = []
    for name in models or zoo.names():
        g = zoo.build(name)
        full = strategies.run("oracle", g, hw)
        for effect in EFFECTS:
            if getattr(hw.require_device(), effect) is None:
                continue
            blind = verify(strategies.run("oracle", g, _without(hw, effect)), g, hw)
            assert blind.device_ms is not None  # verify fills it in
            rows.append({"effect": effect, "model": name, "ms": full.predicted_ms,
                         "kernels": len(full.groups), "kernels_without": len(blind.groups),
                         "mean_cores": _mean_cores(full, g), "mean_cores_without": _mean_cores(blind, g),
                         "regret_if_ignored": blind.device_ms / full.predicted_ms - 1})
    return pd.DataFrame(rows)


def _mean_cores(p, graph) -> float:
    """Core count per kernel, weighted by the kernel's work (MACs and vector ops)."""
    work = np.array([sum(lyr.macs + lyr.vector_ops for lyr in graph.order[g.i:g.j]) for g in p.groups], dtype=float)
    return float((np.array([g.cores for g in p.groups]) * work).sum() / max(work.sum(), 1.0))


def summary_lines(plans: pd.DataFrame) -> list[str]:
    """One line per effect: what it does to the oracle's core counts and fusion over the zoo."""
    lines = []
    for effect, d in plans.groupby("effect", sort=False):
        gm = float(np.exp(np.log1p(d["regret_if_ignored"]).mean()) - 1)
        cores = f"{d['mean_cores_without'].mean():5.1f} -> {d['mean_cores'].mean():5.1f}"
        lines.append(f"  {effect:12s} mean cores {cores}, "
                     f"kernels {d['kernels_without'].mean():5.1f} -> {d['kernels'].mean():5.1f}; "
                     f"planning blind to it costs {gm:.2%} geomean, {d['regret_if_ignored'].max():.2%} worst")
    return lines
