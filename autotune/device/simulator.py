"""Latency of layer groups on k cores of a multi-core accelerator: the stand-in for the device.

Vectorised over all (group, core count) pairs at once. Each mechanism is one small function over
flat (pair, layer) rows; docs/simulator.md gives every formula and where each constant comes from
(the config's datasheet and its `device:` section). This module is the only reader of `device:`:
nothing the cost model, the features or the planner use may import it (docs/architecture.md, "The device boundary").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotune.hardware import analytic
from autotune.hardware.config import Banks, Device, HardwareConfig, Noise, Tiling
from autotune.ir.graph import Group
from autotune.ir.ops import COUNT_BUCKETS
from autotune.ir.tables import GroupBatch, LayerRows, bucket, windowed


@dataclass
class _Rows:
    """Flat (pair, layer) rows: the layer arrays repeated for each pair, with the pair's core count."""

    L: LayerRows
    pair: np.ndarray  # pair index of each row
    k: np.ndarray  # core count of each row (float)
    n_pairs: int


def _expand(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray) -> _Rows:
    rows, pair, _ = batch.pair_rows(gidx)
    return _Rows(batch.layers.take(rows), pair, cores[pair].astype(np.float64), len(gidx))


def _per_pair(r: _Rows, v: np.ndarray) -> np.ndarray:
    return np.bincount(r.pair, weights=v, minlength=r.n_pairs)


# -- mechanisms -------------------------------------------------------------------------------
def split_imbalance(L: LayerRows, k: np.ndarray, co: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Work of the busiest core relative to an even 1/k share, whether the layer splits by rows,
    and whether by rows of a feature map (where halos arise).

    Feature maps split by output rows when there are at least k of them: ceil(H/k) rows on the
    busiest core. Otherwise, and for fc / matmul on tokens, by output-channel tiles of width `co`
    (each core reads the whole input and its share of the weights). Layers without MACs (vector
    unit only) split by elements.
    """
    h = L.out_h.astype(np.float64)
    tiles = np.ceil(L.out_ch / co).astype(np.float64)
    e = np.maximum(L.out_elems, 1).astype(np.float64)
    by_rows = (h >= k) & L.spatial
    imb = np.where(by_rows, np.ceil(h / k) * k / h, np.ceil(tiles / k) * k / tiles)
    imb = np.where(L.macs > 0, imb, np.ceil(e / k) * k / e)
    return imb, by_rows, by_rows & L.spatial


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


def tiling(r: _Rows, by_rows: np.ndarray, hw: HardwareConfig, t: Tiling | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (padding factor >= 1, tiles on the busiest core) of the compiler's tiling.

    A MAC layer's per-core extent D (output rows when split by rows, else output-channel tiles of
    width co) is cut into tiles of the largest power of two up to `max_tile` whose working set
    (per unit: its input and output bytes, plus weight bytes for channel tiles; plus the part
    held whole, capped at half the budget) fits in `buffer_fraction` of on-chip memory. The last
    tile costs at least `min_fill` of a full one, so latency steps as D crosses tile multiples.
    """
    L, k = r.L, r.k
    if t is None:
        return np.ones_like(k), np.zeros_like(k)
    db = float(hw.dtype_bytes)
    h = np.maximum(L.out_h, 1).astype(np.float64)
    ctiles = np.ceil(L.out_ch / hw.mac_array.co).astype(np.float64)
    extent = np.where(by_rows, np.ceil(h / k), np.ceil(ctiles / k))
    unit = np.where(by_rows, (L.in_elems + L.out_elems) / h, (L.weight_elems + L.out_elems) / ctiles) * db
    held = np.where(by_rows, L.weight_elems, L.in_elems) * db
    budget = hw.onchip_bytes * t.buffer_fraction
    fit = (budget - np.minimum(held, budget / 2)) / np.maximum(unit, 1.0)
    cap = np.minimum(np.minimum(fit, 2.0 ** np.floor(np.log2(t.max_tile))), extent)
    tile = 2.0 ** np.floor(np.log2(np.maximum(cap, 1.0)))
    n = np.ceil(extent / tile)
    last = extent - (n - 1) * tile
    padded = (n - 1) * tile + np.maximum(last, t.min_fill * tile)
    mac = L.macs > 0
    return np.where(mac, padded / extent, 1.0), np.where(mac, n, 0.0)


def bank_factor(L: LayerRows, hw: HardwareConfig, b: Banks | None) -> np.ndarray:
    """Slowdown of windowed layers (conv, pool with a window over 1x1) whose channel vector spans
    a number of bank words sharing a factor d with the bank count: d accesses collide."""
    if b is None:
        return np.ones(len(L.macs))
    banks = max(1, int(round(b.count)))
    if banks == 1:
        return np.ones(len(L.macs))
    words = np.ceil(L.in_ch * hw.dtype_bytes / b.width_bytes).astype(np.int64)
    d = np.gcd(np.maximum(words, 1), banks)
    reads_window = (L.kh * L.kw > 1) & windowed(L.op_code)
    return np.where(reads_window, 1.0 + b.penalty * (d - 1) / (banks - 1), 1.0)


def compute_parts(r: _Rows, hw: HardwareConfig, dev: Device) -> dict[str, np.ndarray]:
    """Per row: compute time (us) on the busiest core split into its parts, the MAC part, and
    whether the layer splits spatially. base: aligned MACs and vector ops with the split's
    imbalance; tiling: padding of the last tile plus per-tile setup; banks: conflicts;
    halo: rows recomputed for the fused layers below."""
    L, k = r.L, r.k
    imb, by_rows, spatial = split_imbalance(L, k, hw.mac_array.co)
    eff = np.where(L.macs > 0, mac_efficiency(L, hw.mac_array.ci, hw.mac_array.co), 1.0)
    us_per_cycle = 1.0 / (hw.clock_ghz * 1e3)
    mac_us = (L.macs / eff / hw.macs_per_cycle) * imb / k * us_per_cycle
    base = mac_us + (L.vector_ops / hw.vector_lanes) * imb / k * us_per_cycle
    pad, n_tiles = tiling(r, by_rows, hw, dev.tiling)
    tiles = base * (pad - 1.0) + n_tiles * (dev.tiling.tile_us if dev.tiling else 0.0)
    bf = bank_factor(L, hw, dev.banks)
    banks = base * pad * (bf - 1.0)
    rows_per_core = np.maximum(np.ceil(L.out_h / k), 1.0)
    halo = base * pad * bf * halo_rows(r, spatial) / rows_per_core
    return {"base": base, "mac": mac_us * pad * bf, "tiling": tiles, "banks": banks, "halo": halo,
            "spatial": spatial}


def weight_traffic_bytes(r: _Rows, spatial: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Weight (and re-read input) bytes from DRAM: every core needs all of a row-split layer's
    weights and 1/k of its input, 1/k of a channel-split one's weights and all of its input. A
    share W larger than half the scratchpad (h = M/2) is tiled in the cheaper loop order: weights
    streamed again per input tile, W * (ceil(I/h) - 1), or the input share I re-read per weight
    block, I * (ceil(W/h) - 1)."""
    db = float(hw.dtype_bytes)
    w = r.L.weight_elems * db
    share = np.where(spatial, w, w / r.k)
    half = hw.onchip_bytes / 2
    in_share = r.L.in_elems * db / np.where(spatial, r.k, 1.0)
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


def dram_bw_bytes_per_us(cores: np.ndarray, hw: HardwareConfig, dev: Device) -> np.ndarray:
    """DRAM bandwidth k streaming cores get: the shared DRAM, capped by their DMA engines, less
    what contention costs beyond `contention.onset_cores` (a share per doubling)."""
    bw = np.minimum(hw.dram_gbps, cores * dev.dma_gbps_per_core) * 1e3
    c = dev.contention
    if c is not None:
        doublings = np.maximum(np.log2(np.maximum(cores, 1) / c.onset_cores), 0.0)
        bw = bw * (1.0 - c.loss_per_doubling) ** doublings
    return bw


def clock_factor(cores: np.ndarray, mac_us: np.ndarray, busy_us: np.ndarray, dev: Device) -> np.ndarray:
    """Share of the nominal clock a kernel runs at: k cores each busy with dense MACs for a share
    u of the kernel draw k * u cores' worth of power; above `power.budget_cores` the clock drops
    as (budget / (k * u)) ** exponent."""
    p = dev.power
    if p is None:
        return np.ones_like(mac_us)
    activity = cores * np.clip(mac_us / np.maximum(busy_us, 1e-12), 0.0, 1.0)
    return np.minimum(1.0, (p.budget_cores / np.maximum(activity, 1e-12)) ** p.exponent)


#: Descriptor units of one distinct layer, by the op's bucket (ops.COUNT_BUCKETS); a repeat of an
#: identical layer costs REPEAT_UNITS.
_DESC_UNITS = {"conv": 3.0, "fc": 2.0, "matmul": 2.0}
_DW_UNITS = 2.0
_REPEAT_UNITS = 0.25


def descriptor_units(batch: GroupBatch) -> np.ndarray:
    """Per batch group: descriptor units of its program (layers of one kind share a descriptor)."""
    L = batch.layers
    first = batch.first_of_kind()
    unit = np.ones(len(L.macs))
    kind = bucket(L.op_code)
    for name, u in _DESC_UNITS.items():
        unit[kind == COUNT_BUCKETS.index(name)] = u
    unit[L.depthwise] = _DW_UNITS
    n = batch.n_groups
    distinct = np.bincount(batch.gid, weights=unit * first, minlength=n)
    repeats = batch.groups.n_layers - np.bincount(batch.gid, weights=first, minlength=n)
    return distinct + _REPEAT_UNITS * repeats


# -- the model --------------------------------------------------------------------------------
def _components(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, hw: HardwareConfig) -> dict[str, np.ndarray]:
    """Latency components in us per pair (they add up to the total)."""
    dev = hw.require_device()
    G = batch.groups
    r = _expand(batch, gidx, cores)
    k = cores.astype(np.float64)
    c = compute_parts(r, hw, dev)
    spatial = c["spatial"]
    base, tiles, banks, halo = (_per_pair(r, c[name]) for name in ("base", "tiling", "banks", "halo"))
    comp0 = base + tiles + banks + halo
    db = float(hw.dtype_bytes)
    act = (G.in_elems[gidx] + G.out_elems[gidx]) * db
    wbytes = _per_pair(r, weight_traffic_bytes(r, spatial, hw))
    spill = spill_bytes(batch, gidx, cores, r, spatial, hw)
    bw = dram_bw_bytes_per_us(k, hw, dev)
    dram = (act + wbytes + spill) / bw
    clock = clock_factor(k, _per_pair(r, c["mac"]), np.maximum(comp0, dram), dev)
    comp = comp0 / clock
    busy = np.maximum(comp, dram) + dev.dma_exposed * np.minimum(comp, dram)
    exposed = busy - comp
    spill_us = exposed * np.where(dram > 0, (spill / bw) / np.maximum(dram, 1e-12), 0.0)
    n = G.n_layers[gidx].astype(np.float64)
    launch = dev.launch_us + dev.dispatch_us_per_core * k
    sync = n * (dev.layer_overhead_us + sync_us(cores, hw, dev))
    reload = np.zeros_like(k)
    if dev.descriptors is not None:
        units = descriptor_units(batch)[gidx]
        reload = np.maximum(np.ceil(units / dev.descriptors.capacity) - 1.0, 0.0) * dev.descriptors.reload_us
    return {"launch": launch, "compute": base, "tiling": tiles, "banks": banks, "halo": halo,
            "throttle": comp - comp0, "dram": exposed - spill_us, "spill": spill_us, "sync": sync,
            "reload": reload}


def sync_us(cores: np.ndarray, hw: HardwareConfig, dev: Device) -> np.ndarray:
    """Barrier between layers on k cores: `Device.sync_us(k)`, looked up per core count."""
    table = np.array([dev.sync_us(c) for c in hw.core_counts])
    return table[np.searchsorted(hw.core_counts, cores)]


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
    distinct: list[Group] = [groups[0]] * len(index)
    for g, r in zip(groups, gidx):
        distinct[int(r)] = g
    return simulate_batch(GroupBatch.build(distinct), gidx, cores, hw, noise, seed)


def simulate_batch(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, hw: HardwareConfig,
                   noise: bool = False, seed: int = 0) -> np.ndarray:
    """As `simulate`, for pairs (batch group gidx[i], cores[i]) of a prebuilt GroupBatch."""
    parts = _components(batch, np.asarray(gidx), np.asarray(cores), hw)
    ms = np.asarray(sum(parts.values()), dtype=np.float64) / 1e3
    return measurement_noise(ms, hw.require_device().noise, seed) if noise else ms


def measurement_noise(ms: np.ndarray, nz: Noise, seed: int) -> np.ndarray:
    """Latencies as a timer reports them: log-normal spread (mean kept), and rare heavy-tailed
    slowdowns (a preempted run, a DRAM refresh storm): x (1 + outlier_scale * Lomax(2))."""
    rng = np.random.default_rng(seed)
    out = ms * np.exp(rng.normal(-nz.sigma**2 / 2, nz.sigma, size=len(ms))) if nz.sigma > 0 else ms.copy()
    if nz.outlier_rate > 0 and nz.outlier_scale > 0:
        hit = rng.random(len(ms)) < nz.outlier_rate
        out = out * np.where(hit, 1.0 + nz.outlier_scale * rng.pareto(2.0, size=len(ms)), 1.0)
    return out


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
    """Lower bound per group from the datasheet (`analytic.roofline_ms`): no latency is below it."""
    return analytic.roofline_ms(groups, hw.datasheet, cores)
