"""Latency of layer groups on k cores of a multi-core accelerator: the stand-in for the device.

Vectorised over all (group, core count) pairs at once. Each mechanism is one small function over
flat (pair, layer) rows; docs/simulator.md gives every formula and where each constant comes from
(all of them from the HardwareConfig).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .graph import Group
from .hardware import HardwareConfig
from .tables import GroupBatch, LayerRows


@dataclass
class _Rows:
    """Flat (pair, layer) rows: the layer arrays repeated for each pair, with the pair's core count."""

    L: LayerRows
    pair: np.ndarray  # pair index of each row
    k: np.ndarray  # core count of each row (float)
    n_pairs: int


def _expand(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray) -> _Rows:
    G = batch.groups
    lens = G.n_layers[gidx]
    pair = np.repeat(np.arange(len(gidx)), lens)
    offs = np.repeat(G.first_row[gidx] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    rows = offs + np.arange(int(lens.sum()))
    return _Rows(batch.layers.take(rows), pair, cores[pair].astype(np.float64), len(gidx))


def _per_pair(r: _Rows, v: np.ndarray) -> np.ndarray:
    return np.bincount(r.pair, weights=v, minlength=r.n_pairs)


# -- mechanisms -------------------------------------------------------------------------------
def split_imbalance(L: LayerRows, k: np.ndarray, co: int) -> tuple[np.ndarray, np.ndarray]:
    """Work of the busiest core relative to an even 1/k share, and whether the split is by rows.

    Feature maps (and token rows of 3-D activations) split by output rows when there are at least
    k of them: ceil(H/k) rows on the busiest core. Otherwise, and for fc / 2-D matmul, by
    output-channel tiles of width `co`. Layers without MACs (vector unit only) split by elements.
    """
    h = L.out_h.astype(np.float64)
    tiles = np.ceil(L.out_ch / co).astype(np.float64)
    e = np.maximum(L.out_elems, 1).astype(np.float64)
    by_rows = (h >= k) & (L.spatial | (h > 1))
    imb = np.where(by_rows, np.ceil(h / k) * k / h, np.ceil(tiles / k) * k / tiles)
    imb = np.where(L.macs > 0, imb, np.ceil(e / k) * k / e)
    return imb, by_rows & L.spatial


def mac_efficiency(L: LayerRows, ci: int, co: int) -> np.ndarray:
    """Useful / issued MACs: channels padded to the array's ci x co; depthwise fills 1 of ci lanes."""
    cig = L.in_ch_per_group.astype(np.float64)
    cog = L.out_ch_per_group.astype(np.float64)
    dense = (cig / (np.ceil(cig / ci) * ci)) * (cog / (np.ceil(cog / co) * co))
    ch = L.out_ch.astype(np.float64)
    dw = (1.0 / ci) * ch / (np.ceil(ch / co) * co)
    return np.where(L.depthwise, dw, dense)


def halo_rows(r: _Rows, spatial: np.ndarray) -> np.ndarray:
    """Extra output rows a core recomputes for layer l: the halo that later fused layers need,
    the sum of dilation * (kernel - 1) of the row-split layers after l in the group (0 on one core)."""
    need = np.where(spatial, r.L.halo, 0).astype(np.float64)
    tot = _per_pair(r, need)
    incl = np.cumsum(need)
    start = np.concatenate([[0.0], np.cumsum(_per_pair(r, np.ones_like(need)))[:-1]]).astype(np.int64)
    before = np.concatenate([[0.0], incl])[start][r.pair]
    after = tot[r.pair] - (incl - before)
    return np.where(spatial & (r.k > 1), after, 0.0)


def compute_us(r: _Rows, hw: HardwareConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: compute time (us) on the busiest core, its halo part, and whether split spatially."""
    L, k = r.L, r.k
    imb, spatial = split_imbalance(L, k, hw.mac_array.co)
    eff = np.where(L.macs > 0, mac_efficiency(L, hw.mac_array.ci, hw.mac_array.co), 1.0)
    mac_cycles = L.macs / eff / hw.macs_per_cycle
    vec_cycles = L.vector_ops / hw.vector_lanes
    base = (mac_cycles + vec_cycles) * imb / k / (hw.clock_ghz * 1e3)
    rows_per_core = np.maximum(np.ceil(L.out_h / k), 1.0)
    halo = base * halo_rows(r, spatial) / rows_per_core
    return base + halo, halo, spatial


def weight_traffic_bytes(r: _Rows, spatial: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Weight (and re-read input) bytes from DRAM: every core needs all of a row-split layer's
    weights, 1/k of a channel-split one's. A share W larger than half the scratchpad (h = M/2) is
    tiled in the cheaper loop order: weights streamed again per input tile, W * (ceil(I/h) - 1),
    or the input I re-read per weight block, I * (ceil(W/h) - 1)."""
    db = float(hw.dtype_bytes)
    w = r.L.weight_elems * db
    share = np.where(spatial, w, w / r.k)
    half = hw.onchip_bytes / 2
    in_share = r.L.in_elems * db / r.k
    extra = np.minimum(share * (np.ceil(in_share / half) - 1), in_share * (np.ceil(share / half) - 1))
    return (share + np.where(share > half, np.maximum(extra, 0.0), 0.0)) * r.k


def spill_bytes(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, r: _Rows, spatial: np.ndarray,
                hw: HardwareConfig) -> np.ndarray:
    """Per pair: intermediates written out and read back when the largest one, per core, does not
    fit on chip beside the largest weight share."""
    G = batch.groups
    db = float(hw.dtype_bytes)
    w = r.L.weight_elems * db
    wshare = np.zeros(r.n_pairs)
    np.maximum.at(wshare, r.pair, np.where(spatial, w, w / r.k))
    live = G.max_internal_elems[gidx] * db / cores + wshare
    fits = (live <= hw.onchip_bytes) | (G.internal_elems[gidx] == 0)
    return np.where(fits, 0.0, 2.0 * G.internal_elems[gidx] * db)


def dram_bw_bytes_per_us(cores: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Shared DRAM bandwidth, capped by what k cores' DMA engines can pull."""
    return np.minimum(hw.dram_gbps, cores * hw.dma_gbps_per_core) * 1e3


def overlap(c: np.ndarray, d: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Double buffering hides `dma_overlap` of the shorter of compute and DMA."""
    return np.maximum(c, d) + (1.0 - hw.dma_overlap) * np.minimum(c, d)


def sync_us(cores: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Barrier between layers on k cores: `HardwareConfig.sync_us(k)`, looked up per core count."""
    table = np.array([hw.sync_us(c) for c in hw.core_counts])
    return table[np.searchsorted(hw.core_counts, cores)]


# -- the model --------------------------------------------------------------------------------
def _components(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, hw: HardwareConfig) -> dict[str, np.ndarray]:
    """Latency components in us per pair (they add up to the total)."""
    G = batch.groups
    r = _expand(batch, gidx, cores)
    k = cores.astype(np.float64)
    comp_rows, halo_rows_us, spatial = compute_us(r, hw)
    comp = _per_pair(r, comp_rows)
    halo = _per_pair(r, halo_rows_us)
    db = float(hw.dtype_bytes)
    act = (G.in_elems[gidx] + G.out_elems[gidx]) * db
    wbytes = _per_pair(r, weight_traffic_bytes(r, spatial, hw))
    spill = spill_bytes(batch, gidx, cores, r, spatial, hw)
    bw = dram_bw_bytes_per_us(k, hw)
    dram = (act + wbytes + spill) / bw
    busy = overlap(comp, dram, hw)
    exposed = busy - comp
    spill_us = exposed * np.where(dram > 0, (spill / bw) / np.maximum(dram, 1e-12), 0.0)
    n = G.n_layers[gidx].astype(np.float64)
    launch = hw.launch_us + hw.dispatch_us_per_core * k
    sync = n * (hw.layer_overhead_us + sync_us(cores, hw))
    return {"launch": launch, "compute": comp - halo, "halo": halo, "dram": exposed - spill_us,
            "spill": spill_us, "sync": sync}


def _check(groups: Sequence[Group], cores: np.ndarray, hw: HardwareConfig) -> None:
    if len(groups) != len(cores):
        raise ValueError(f"{len(groups)} groups but {len(cores)} core counts")
    bad = ~np.isin(cores, hw.core_counts)
    if bad.any():
        raise ValueError(f"core count {int(cores[bad][0])} is not one of {hw.name}'s {list(hw.core_counts)}")


def simulate(groups: Sequence[Group], cores: Sequence[int] | np.ndarray, hw: HardwareConfig,
             noise: bool = False, seed: int = 0) -> np.ndarray:
    """Latency in ms of each (groups[i], cores[i]) pair; noise=True adds seeded label noise."""
    cores = np.asarray(cores, dtype=np.int64)
    _check(groups, cores, hw)
    if len(groups) == 0:
        return np.zeros(0)
    # each distinct group enters the batch once, however many core counts it is paired with
    index: dict[tuple[int, int, int], int] = {}
    gidx = np.fromiter((index.setdefault((id(g.graph), g.i, g.j), len(index)) for g in groups), np.int64, len(groups))
    distinct = [None] * len(index)
    for g, r in zip(groups, gidx):
        distinct[r] = g
    return simulate_batch(GroupBatch.build(distinct), gidx, cores, hw, noise, seed)


def simulate_batch(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, hw: HardwareConfig,
                   noise: bool = False, seed: int = 0) -> np.ndarray:
    """As `simulate`, for pairs (batch group gidx[i], cores[i]) of a prebuilt GroupBatch."""
    parts = _components(batch, np.asarray(gidx), np.asarray(cores), hw)
    ms = sum(parts.values()) / 1e3
    if noise and hw.label_noise > 0:
        s = hw.label_noise
        ms = ms * np.exp(np.random.default_rng(seed).normal(-s * s / 2, s, size=len(ms)))
    return ms


def breakdown(group: Group, cores: int, hw: HardwareConfig) -> dict[str, float]:
    """Components (ms) of one pair's latency, from the same code path as `simulate`, plus total."""
    c = np.asarray([cores], dtype=np.int64)
    _check([group], c, hw)
    parts = _components(GroupBatch.build([group]), np.zeros(1, np.int64), c, hw)
    out = {k: float(v[0]) / 1e3 for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def roofline_ms(groups: Sequence[Group], hw: HardwareConfig,
                cores: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Lower bound per group: all MACs at the peak of `cores[i]` cores (default: the whole chip),
    or the boundary bytes at full DRAM bandwidth."""
    b = GroupBatch.build(groups)
    k = np.full(b.n_groups, hw.cores) if cores is None else np.asarray(cores, dtype=np.float64)
    peak = k * hw.macs_per_cycle * hw.clock_ghz * 1e9
    bytes_ = (b.groups.in_elems + b.groups.out_elems) * hw.dtype_bytes
    return np.maximum(b.groups.macs / peak, bytes_ / (hw.dram_gbps * 1e9)) * 1e3
