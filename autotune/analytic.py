"""Datasheet-only latency estimates: what a compiler engineer can write without the device.

Used three ways: as feature columns (features.py), as the prior the learned model corrects
(log latency = log estimate + trees), and alone as the `analytic` strategy's cost source.
It reads the graph and `hw.datasheet` only. How the device behaves (launch and barrier costs,
DMA engines, tiling, contention, clocks) is unknown here, so the fixed costs are generic rules
of thumb for NPU kernels, the same for every config and never read from `device:`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .graph import Group
from .hardware import Datasheet
from .tables import GroupBatch, LayerRows

# Generic fixed costs (not any device's values): a kernel launch through a driver queue is
# of the order of 10 us on NPUs and GPUs alike, a layer inside a kernel pays a pipeline setup
# of about 1 us, and a barrier across k cores costs about 0.5 us per doubling of k.
GENERIC_LAUNCH_US = 10.0
GENERIC_LAYER_US = 1.0
GENERIC_BARRIER_US = 0.5
# A single core's DMA engines rarely saturate a shared DRAM: assume k cores reach
# dram_gbps * min(1, k / (GENERIC_DRAM_SATURATION * cores)), i.e. half the cores saturate it.
GENERIC_DRAM_SATURATION = 0.5


def reachable_gbps(k: np.ndarray, ds: Datasheet) -> np.ndarray:
    """DRAM bandwidth k cores are assumed to reach (the datasheet gives only the shared peak)."""
    return ds.dram_gbps * np.minimum(1.0, np.asarray(k, dtype=np.float64) / (GENERIC_DRAM_SATURATION * ds.cores))


@dataclass
class LayerSplit:
    """How a layer's work is best spread over k cores, from its shape alone (per flat row)."""

    imbalance: np.ndarray  # busiest core's work over an even 1/k share (>= 1)
    by_rows: np.ndarray  # bool: split by output rows of a feature map (halos arise)
    rows_per_core: np.ndarray  # output rows on the busiest core (1 for non-row splits)


def split(L: LayerRows, k: np.ndarray, ds: Datasheet) -> LayerSplit:
    """The better of a split by output rows (ceil(H/k) rows on the busiest core, when H >= k)
    and by output-channel tiles of the MAC array's width; layers without MACs split by elements."""
    h = np.maximum(L.out_h, 1).astype(np.float64)
    tiles = np.ceil(np.maximum(L.out_ch, 1) / ds.mac_array.co).astype(np.float64)
    e = np.maximum(L.out_elems, 1).astype(np.float64)
    row = np.where((h >= k) & (h > 1), np.ceil(h / k) * k / h, np.inf)
    chan = np.ceil(tiles / k) * k / tiles
    mac = L.macs > 0
    by_rows = mac & (row <= chan)
    imb = np.where(mac, np.minimum(row, chan), np.ceil(e / k) * k / e)
    rows = np.where(by_rows, np.ceil(h / k), 1.0)
    return LayerSplit(imb, by_rows & L.spatial, rows)


def aligned_cycles(L: LayerRows, ds: Datasheet) -> tuple[np.ndarray, np.ndarray]:
    """(MAC-array cycles, vector-unit cycles) of each layer on one core: channels padded to the
    array's ci x co lanes; a depthwise conv reduces over one input channel, so fills 1 of ci."""
    ci, co = ds.mac_array.ci, ds.mac_array.co
    cig = L.in_ch_per_group.astype(np.float64)
    cog = L.out_ch_per_group.astype(np.float64)
    eff = (cig / (np.ceil(cig / ci) * ci)) * (cog / (np.ceil(cog / co) * co))
    ch = np.maximum(L.out_ch, 1).astype(np.float64)
    eff = np.where(L.depthwise, (1.0 / ci) * ch / (np.ceil(ch / co) * co), eff)
    mac = np.where(L.macs > 0, L.macs / np.maximum(eff, 1e-12) / ds.macs_per_cycle, 0.0)
    return mac, L.vector_ops / ds.vector_lanes


@dataclass
class LayerTraffic:
    """Per flat row: one core's weight share, and the layer's weight (and re-read) bytes from DRAM."""

    weight_share: np.ndarray
    total: np.ndarray


def layer_traffic_bytes(L: LayerRows, k: np.ndarray, sp: LayerSplit, ds: Datasheet) -> LayerTraffic:
    """Weight bytes a layer pulls from DRAM on k cores: a row split gives every core all weights,
    a channel split a 1/k share (each core then reads the whole input). When a core's share of
    weights, input and output exceeds on-chip memory, it works in passes over the larger operand
    and re-reads the smaller one each extra pass."""
    db = float(ds.dtype_bytes)
    w = L.weight_elems * db
    share = np.where(sp.by_rows, w, w / k)
    in_share = np.where(sp.by_rows, L.in_elems * db / k, L.in_elems * db)
    ws = share + in_share + L.out_elems * db / k
    passes = np.ceil(ws / ds.onchip_bytes)
    reread = (passes - 1.0) * np.minimum(share, in_share)
    return LayerTraffic(share, (share + np.where(w > 0, reread, 0.0)) * k)


@dataclass
class Estimate:
    """Per (group, cores) pair, in us: the parts of the datasheet estimate and their total."""

    compute_us: np.ndarray  # aligned MAC and vector work of the busiest core at the nominal clock
    halo_us: np.ndarray  # rows recomputed at split boundaries for the fused windowed layers below
    dram_us: np.ndarray  # boundary activations, weights (per core on a row split), spills at dram_gbps
    fixed_us: np.ndarray  # generic launch, per-layer setup and barriers
    spill_bytes: np.ndarray
    total_us: np.ndarray  # max(compute + halo, dram) + fixed: a roofline with fixed costs


def estimate(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, ds: Datasheet) -> Estimate:
    """The datasheet estimate of every pair (batch group gidx[i], cores[i]), vectorised."""
    gidx = np.asarray(gidx, dtype=np.int64)
    k_pair = np.asarray(cores, dtype=np.float64)
    n = len(gidx)
    rows, pair, start = batch.pair_rows(gidx)
    L = batch.layers.take(rows)
    k = k_pair[pair]
    sp = split(L, k, ds)
    mac_c, vec_c = aligned_cycles(L, ds)
    layer_us = (mac_c + vec_c) * sp.imbalance / k / (ds.clock_ghz * 1e3)
    # halo: each row-split layer recomputes the window overlap of the windowed layers after it
    need = np.where(sp.by_rows, L.halo, 0).astype(np.float64)
    incl = np.cumsum(need)
    before = np.concatenate([[0.0], incl])[start]
    after = np.bincount(pair, weights=need, minlength=n)[pair] - (incl - before)
    halo = np.where(sp.by_rows & (k > 1), layer_us * after / sp.rows_per_core, 0.0)
    compute = np.bincount(pair, weights=layer_us, minlength=n)
    halo_us = np.bincount(pair, weights=halo, minlength=n)
    G = batch.groups
    db = float(ds.dtype_bytes)
    traffic = layer_traffic_bytes(L, k, sp, ds)
    wmax = np.zeros(n)
    np.maximum.at(wmax, pair, traffic.weight_share)
    live = G.max_internal_elems[gidx] * db / k_pair + wmax
    spill = np.where((live > ds.onchip_bytes) & (G.internal_elems[gidx] > 0), 2.0 * G.internal_elems[gidx] * db, 0.0)
    nbytes = (G.in_elems[gidx] + G.out_elems[gidx]) * db + np.bincount(pair, weights=traffic.total, minlength=n) + spill
    dram = nbytes / reachable_gbps(k_pair, ds) / 1e3
    n_layers = G.n_layers[gidx].astype(np.float64)
    fixed = GENERIC_LAUNCH_US + n_layers * (GENERIC_LAYER_US + GENERIC_BARRIER_US * np.log2(np.maximum(k_pair, 1)))
    total = np.maximum(compute + halo_us, dram) + fixed
    return Estimate(compute, halo_us, dram, fixed, spill, total)


def analytic_ms(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, ds: Datasheet) -> np.ndarray:
    """The datasheet estimate's latency in ms: the `analytic` cost source."""
    return estimate(batch, gidx, cores, ds).total_us / 1e3


def roofline_ms(groups: Sequence[Group], ds: Datasheet,
                cores: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Lower bound per group: all MACs at the peak of `cores[i]` cores (default: the whole chip),
    or the boundary bytes at full DRAM bandwidth."""
    b = GroupBatch.build(groups)
    k = np.full(b.n_groups, ds.cores) if cores is None else np.asarray(cores, dtype=np.float64)
    peak = k * ds.macs_per_cycle * ds.clock_ghz * 1e9
    bytes_ = (b.groups.in_elems + b.groups.out_elems) * ds.dtype_bytes
    return np.maximum(b.groups.macs / peak, bytes_ / (ds.dram_gbps * 1e9)) * 1e3
