"""Datasheet-only latency estimates: what a compiler engineer can write without the device.

Used three ways: as feature columns (features.py), as the inputs of the roofline whose constants
the learned model fits to measurements (calibration.py), and alone as the `analytic` strategy's
cost source. It reads the graph and `hw.datasheet` only. How the device behaves (launch and
barrier costs, DMA engines, which split its compiler picks, tiling, contention, clocks) is
unknown here, so the analytic strategy's fixed costs and reachable bandwidth are generic rules of
thumb for NPU kernels, the same for every config and never read from `device:`.

The textbook mechanisms it does write down: channels padded to the MAC array's lanes; a kernel's
work split over k cores by output rows of feature maps or by output-channel tiles; halo rows that
a spatial split recomputes for the windowed layers fused below; weights every core needs in full
on a row split; re-reads when a weight share does not fit in half the on-chip memory (double
buffering), in the cheaper loop order; the power-of-two on-chip tiles each core's share is cut
into, and the compute the last tile's unused part costs; intermediates that spill when they do not
fit on chip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotune.hardware.config import Datasheet
from autotune.ir.graph import Group
from autotune.ir.tables import GroupBatch, LayerRows, PairRanges, windowed

# Generic fixed costs (not any device's values): a kernel launch through a driver queue is
# of the order of 10 us on NPUs and GPUs alike, a layer inside a kernel pays a pipeline setup
# of about 1 us, and a barrier across k cores costs about 0.5 us per doubling of k.
GENERIC_LAUNCH_US = 10.0
GENERIC_LAYER_US = 1.0
GENERIC_BARRIER_US = 0.5
# A single core's DMA engines rarely saturate a shared DRAM: assume k cores reach
# dram_gbps * min(1, k / (GENERIC_DRAM_SATURATION * cores)), i.e. half the cores saturate it.
GENERIC_DRAM_SATURATION = 0.5
#: The two split policies of `split_what_ifs`.
POLICIES = ("rows", "chan")
#: Classes of a windowed layer's channel stride (in_ch * dtype bytes) by its largest power-of-two
#: factor, 2^c bytes: <= 64, 128, 256, 512, 1024, >= 2048. Banked on-chip memories serve strides
#: with large power-of-two factors worse; how much worse, if at all, is the device's business.
STRIDE_CLASSES = (6, 7, 8, 9, 10, 11)


def stride_class(L: LayerRows, ds: Datasheet) -> np.ndarray:
    """Per layer row: index into STRIDE_CLASSES of its channel stride, or -1 if not windowed
    (a conv or pool with a window larger than 1x1 reads neighbouring pixels' channel vectors)."""
    stride = np.maximum(L.in_ch * ds.dtype_bytes, 1).astype(np.int64)
    e = np.log2((stride & -stride).astype(np.float64))
    cls = np.clip(e, STRIDE_CLASSES[0], STRIDE_CLASSES[-1]).astype(np.int64) - STRIDE_CLASSES[0]
    reads_window = (L.kh * L.kw > 1) & windowed(L.op_code)
    return np.where(reads_window, cls, -1)


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
    """The better-balanced of a split by output rows (ceil(H/k) rows on the busiest core, when
    H >= k) and by output-channel tiles of the MAC array's width; layers without MACs split by
    elements. `k` is per row, or a (1, K) row of core counts for (rows, K) results."""
    k = np.asarray(k, dtype=np.float64)

    def col(v: np.ndarray) -> np.ndarray:
        return v[:, None] if k.ndim == 2 else v

    h = col(np.maximum(L.out_h, 1).astype(np.float64))
    tiles = col(np.ceil(np.maximum(L.out_ch, 1) / ds.mac_array.co).astype(np.float64))
    e = col(np.maximum(L.out_elems, 1).astype(np.float64))
    row = np.where((h >= k) & (h > 1), np.ceil(h / k) * k / h, np.inf)
    chan = np.ceil(tiles / k) * k / tiles
    mac = col(L.macs > 0)
    by_rows = mac & (row <= chan)
    imb = np.where(mac, np.minimum(row, chan), np.ceil(e / k) * k / e)
    rows = np.where(by_rows, np.ceil(h / k), 1.0)
    return LayerSplit(imb, by_rows & col(L.spatial), rows)


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


def reread_bytes(weight_share: np.ndarray, in_share: np.ndarray, ds: Datasheet) -> np.ndarray:
    """Bytes one core reads again because its weight share does not fit: with double buffering a
    tile may take half the on-chip memory (h); weights that fit stay resident while the input
    streams through once. Otherwise the loop nest takes the cheaper order: the weights again for
    every input tile, W * (ceil(I / h) - 1), or the input again for every weight block,
    I * (ceil(W / h) - 1)."""
    h = ds.onchip_bytes / 2
    again = np.minimum(weight_share * (np.ceil(in_share / h) - 1), in_share * (np.ceil(weight_share / h) - 1))
    return np.where(weight_share > h, np.maximum(again, 0.0), 0.0)


def tile_shape(L: LayerRows, by_rows: np.ndarray, k: np.ndarray,
               ds: Datasheet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(extent, bytes per unit of it, bytes held whole) of each layer's share on the busiest of k
    cores: output rows of a row split (each row's input and output; every core holds all weights),
    else output-channel tiles of the array's width (each tile's weights and output; every core
    holds the whole input). `k` is per row, or a (1, K) row of core counts as in `split`."""
    k = np.asarray(k, dtype=np.float64)

    def col(v: np.ndarray) -> np.ndarray:
        return v[:, None] if k.ndim == 2 else v

    db = float(ds.dtype_bytes)
    h = col(np.maximum(L.out_h, 1).astype(np.float64))
    ctiles = col(np.ceil(np.maximum(L.out_ch, 1) / ds.mac_array.co))
    extent = np.where(by_rows, np.ceil(h / k), np.ceil(ctiles / k))
    unit = np.where(by_rows, col(L.in_elems + L.out_elems) / h, col(L.weight_elems + L.out_elems) / ctiles) * db
    held = np.where(by_rows, col(L.weight_elems), col(L.in_elems)) * db
    return extent, unit, held


def tile_counts(extent: np.ndarray, unit_bytes: np.ndarray, held_bytes: np.ndarray,
                ds: Datasheet) -> tuple[np.ndarray, np.ndarray]:
    """(tiles, padded extent over extent) of a core's `extent` (output rows, or output-channel tiles
    of the array's width) cut into power-of-two tiles whose working set fits half the on-chip
    memory (double buffering, as in `reread_bytes`): `unit_bytes` per unit of extent, beside the
    part held whole (`held_bytes`, at most half of that half). A compiler pays a fixed setup (DMA
    descriptors, synchronisation) per tile, and the last tile's unused part costs compute when the
    extent is not a multiple of the tile: kernels whose working set dwarfs the on-chip memory, or
    whose extent falls just past a power of two, pay both."""
    h = ds.onchip_bytes / 2
    fit = (h - np.minimum(held_bytes, h / 2)) / np.maximum(unit_bytes, 1.0)
    tile = 2.0 ** np.floor(np.log2(np.maximum(np.minimum(fit, extent), 1.0)))
    n = np.ceil(extent / tile)
    return n, n * tile / np.maximum(extent, 1.0)


@dataclass
class SplitWhatIf:
    """Per pair, for one split policy, in us at the datasheet's peak rates: compute of the busiest
    core, its halo recompute, and the DRAM time of boundary activations plus weights, of re-reads
    and of spilled intermediates."""

    compute_us: np.ndarray
    halo_us: np.ndarray
    bytes_us: np.ndarray
    reread_us: np.ndarray
    spill_us: np.ndarray
    mac_us: np.ndarray  # the MAC-array part of compute_us
    weight_share: np.ndarray  # per pair: the largest weight share one core holds
    stride_us: np.ndarray  # (pairs, len(STRIDE_CLASSES)): compute of windowed layers by channel-stride class
    tiles: np.ndarray  # on-chip tiles the busiest core works through, over the MAC layers (tile_counts)
    pad_us: np.ndarray  # compute of the last tiles' unused parts (tile_counts), at the peak rates


def split_what_ifs(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray,
                   ds: Datasheet) -> dict[str, SplitWhatIf]:
    """The two natural ways a kernel spreads over k cores, since which one the vendor compiler
    picks is not on the datasheet: "rows" splits feature maps spatially wherever they have at
    least k output rows (every core then reads all of a layer's weights and a 1/k slice of its
    input), "chan" always splits by output-channel tiles (a 1/k share of the weights each, the
    whole input). Layers without MACs spread their own work by elements either way."""
    gidx = np.asarray(gidx, dtype=np.int64)
    k_pair = np.asarray(cores, dtype=np.float64)
    rng = PairRanges(batch, gidx, cores)
    k = rng.k  # (1, K): every per-layer quantity below is (stack rows, K)
    # per-layer quantities once per distinct layer and core count; PairRanges reduces over each pair
    S = batch.stack
    mac_l, vec_l = aligned_cycles(S, ds)
    to_us = 1.0 / (k * ds.clock_ghz * 1e3)
    work_us = (mac_l + vec_l)[:, None] * to_us
    mac_us = mac_l[:, None] * to_us
    h = np.maximum(S.out_h, 1).astype(np.float64)[:, None]
    tiles = np.ceil(np.maximum(S.out_ch, 1) / ds.mac_array.co)[:, None]
    e = np.maximum(S.out_elems, 1).astype(np.float64)[:, None]
    mac = (S.macs > 0)[:, None]
    chan_imb = np.where(mac, np.ceil(tiles / k) * k / tiles, np.ceil(e / k) * k / e)
    # a spatially split group splits every feature map by rows, vector layers too (their own work
    # still spreads by elements), so every layer of it recomputes halo rows for the windows below
    map_rows = S.spatial[:, None] & (h >= k) & (h > 1)
    cls = stride_class(S, ds)[:, None]
    G = batch.groups
    db = float(ds.dtype_bytes)
    w = (S.weight_elems * db)[:, None]
    inp = (S.in_elems * db)[:, None]
    bw = ds.dram_gbps * 1e3  # bytes per us
    boundary = (G.in_elems[gidx] + G.out_elems[gidx]) * db
    internal = G.internal_elems[gidx] * db
    out = {}
    for policy in POLICIES:
        by_rows = map_rows if policy == "rows" else np.zeros_like(map_rows)
        imb = np.where(by_rows & mac, np.ceil(h / k) * k / h, chan_imb)
        layer_us = work_us * imb
        # halo: each row-split layer recomputes the halo rows the windows after it in the group need
        need = np.where(by_rows, S.halo[:, None], 0).astype(np.float64)
        per_row = np.where(by_rows & (k > 1), layer_us / np.ceil(h / k), 0.0)
        share = np.where(by_rows, w, w / k)
        in_share = np.where(by_rows, inp / k, inp)
        wmax = rng.max(share)
        live = G.max_internal_elems[gidx] * db / k_pair + wmax
        spill = np.where((live > ds.onchip_bytes) & (internal > 0), 2.0 * internal, 0.0)
        n_tiles, pad = tile_counts(*tile_shape(S, by_rows, k, ds), ds)
        sums = rng.sum(layer_us, share * k, reread_bytes(share, in_share, ds) * k, mac_us * imb,
                       np.where(mac, n_tiles, 0.0), np.where(mac, layer_us * (pad - 1.0), 0.0),
                       *(layer_us * (cls == c) for c in range(len(STRIDE_CLASSES))))
        out[policy] = SplitWhatIf(sums[:, 0], rng.ordered_sum(per_row, need), (boundary + sums[:, 1]) / bw,
                                  sums[:, 2] / bw, spill / bw, sums[:, 3], wmax, sums[:, 6:], sums[:, 4], sums[:, 5])
    return out


@dataclass
class Estimate:
    """Per (group, cores) pair, in us: the analytic strategy's estimate and its parts, for the
    split policy it would pick (the cheaper one)."""

    compute_us: np.ndarray  # aligned MAC and vector work of the busiest core, halo included
    dram_us: np.ndarray  # all DRAM traffic at the bandwidth k cores are assumed to reach
    fixed_us: np.ndarray  # generic launch, per-layer setup and barriers
    total_us: np.ndarray  # max(compute, dram) + fixed: a roofline with fixed costs


def estimate(batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray, ds: Datasheet,
             what: dict[str, SplitWhatIf] | None = None) -> Estimate:
    """The datasheet estimate of every pair (batch group gidx[i], cores[i]): the cheaper split
    policy's roofline with generic fixed costs and reachable bandwidth."""
    what = what if what is not None else split_what_ifs(batch, gidx, cores, ds)
    k = np.asarray(cores, dtype=np.float64)
    scale = ds.dram_gbps / reachable_gbps(k, ds)
    n_layers = batch.groups.n_layers[np.asarray(gidx, dtype=np.int64)].astype(np.float64)
    fixed = GENERIC_LAUNCH_US + n_layers * (GENERIC_LAYER_US + GENERIC_BARRIER_US * np.log2(np.maximum(k, 1)))
    best: Estimate | None = None
    for policy in POLICIES:
        w = what[policy]
        c = w.compute_us + w.halo_us
        d = (w.bytes_us + w.reread_us + w.spill_us) * scale
        e = Estimate(c, d, fixed, np.maximum(c, d) + fixed)
        if best is None:
            best = e
        else:
            pick = e.total_us < best.total_us * (1 - 1e-9)  # a tie within rounding keeps the first policy
            best = Estimate(*(np.where(pick, getattr(e, f), getattr(best, f))
                              for f in ("compute_us", "dram_us", "fixed_us", "total_us")))
    assert best is not None  # POLICIES is not empty
    return best


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
