"""Feature rows for (layer group, core count, hardware): the cost model's one input schema.

The paper's two characteristics (operation count, feature-map channel sizes) plus what decides
latency on a multi-core NPU: work per core and its imbalance, op mix, bytes at the group boundary
against bytes that stay inside, the on-chip working set, channel alignment, spatial sizes against
k, kernels and strides, and the hardware's own parameters, so one schema serves every config.
Computed vectorised over all rows: per-layer arrays are gathered into flat rows and reduced per group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .graph import Group
from .hardware import HardwareConfig
from .tables import GroupBatch

#: Bump when a feature is added, removed or changes meaning: models record it and refuse others.
FEATURE_VERSION = 2

GROUP_FEATURES = [
    "log_macs", "log_vector_ops", "n_layers", "n_conv", "n_dwconv", "n_fc", "n_matmul", "n_pool", "n_eltwise",
    "n_other", "n_spatial_k", "log_weight_bytes", "log_in_bytes", "log_out_bytes", "log_internal_bytes",
    "log_max_internal_bytes", "internal_share", "max_in_ch", "max_out_ch", "mean_ch_macs", "min_out_ch",
    "first_in_ch", "last_out_ch", "align_waste", "dw_macs_share", "max_h", "min_h", "last_h", "max_kernel",
    "max_stride", "halo_depth", "log_max_layer_macs", "max_layer_macs_share", "log_arith_intensity",
]
CORE_FEATURES = [
    "cores", "log2_cores", "log_macs_per_core", "row_imbalance", "chan_imbalance", "work_imbalance",
    "log_ws_per_core_ratio", "log_weights_per_core_ratio", "log_compute_est_us", "log_halo_est_us",
    "log_weight_traffic", "log_spill_bytes", "log_dram_est_us", "log_overhead_est_us",
]
HW_FEATURES = [
    "hw_cores", "hw_ci", "hw_co", "hw_clock_ghz", "hw_vector_lanes", "hw_log_onchip", "hw_dram_gbps",
    "hw_dma_gbps_per_core", "hw_launch_us", "hw_sync_base_us", "hw_sync_per_core_us", "hw_layer_overhead_us",
    "hw_dma_overlap", "hw_dispatch_us_per_core",
]
#: The one ordered list of feature names.
FEATURE_NAMES: list[str] = GROUP_FEATURES + CORE_FEATURES + HW_FEATURES


def _log(x: np.ndarray) -> np.ndarray:
    return np.log10(np.asarray(x, dtype=np.float64) + 1.0)


def group_features(batch: GroupBatch, hw: HardwareConfig) -> np.ndarray:
    """Core-independent features, one row per group of `batch` (shape: n_groups x len(GROUP_FEATURES))."""
    L, G = batch.layers, batch.groups
    gid = batch.gid
    n = batch.n_groups
    db = hw.dtype_bytes

    def gsum(v):
        return np.bincount(gid, weights=np.asarray(v, dtype=np.float64), minlength=n)

    def gmax(v, init=0.0):
        out = np.full(n, init, dtype=np.float64)
        np.maximum.at(out, gid, np.asarray(v, dtype=np.float64))
        return out

    def gmin(v):
        out = np.full(n, np.inf)
        np.minimum.at(out, gid, np.asarray(v, dtype=np.float64))
        return out

    macs = gsum(L.macs)
    ci, co = hw.mac_array.ci, hw.mac_array.co
    cig, cog = L.in_ch_per_group, L.out_ch_per_group
    aligned = np.where(L.macs > 0, L.macs * (np.ceil(cig / ci) * ci / cig) * (np.ceil(cog / co) * co / cog), 0.0)
    is_dw = L.depthwise.astype(float)
    spatial_k = ((L.op_code == L.OP["conv"]) & (L.kh > 1)).astype(float)
    in_b, out_b, int_b = G.in_elems * db, G.out_elems * db, G.internal_elems * db
    wb = gsum(L.weight_elems) * db
    last = G.last_row
    first = G.first_row
    feats = {
        "log_macs": _log(macs),
        "log_vector_ops": _log(gsum(L.vector_ops)),
        "n_layers": G.n_layers.astype(float),
        "n_conv": gsum((L.op_code == L.OP["conv"]) & ~L.depthwise),
        "n_dwconv": gsum(is_dw),
        "n_fc": gsum(L.op_code == L.OP["fc"]),
        "n_matmul": gsum(L.op_code == L.OP["matmul"]),
        "n_pool": gsum((L.op_code == L.OP["pool"]) | (L.op_code == L.OP["gpool"])),
        "n_eltwise": gsum(L.op_code == L.OP["eltwise"]),
        "n_other": gsum(~np.isin(L.op_code, [L.OP[k] for k in ("conv", "fc", "matmul", "pool", "gpool", "eltwise")])),
        "n_spatial_k": gsum(spatial_k),
        "log_weight_bytes": _log(wb),
        "log_in_bytes": _log(in_b),
        "log_out_bytes": _log(out_b),
        "log_internal_bytes": _log(int_b),
        "log_max_internal_bytes": _log(G.max_internal_elems * db),
        "internal_share": int_b / np.maximum(in_b + out_b + int_b, 1.0),
        "max_in_ch": gmax(L.in_ch),
        "max_out_ch": gmax(L.out_ch),
        "mean_ch_macs": gsum(L.macs * L.out_ch) / np.maximum(macs, 1.0),
        "min_out_ch": gmin(L.out_ch),
        "first_in_ch": L.in_ch[first].astype(float),
        "last_out_ch": L.out_ch[last].astype(float),
        "align_waste": gsum(aligned) / np.maximum(macs, 1.0),
        "dw_macs_share": gsum(L.macs * is_dw) / np.maximum(macs, 1.0),
        "max_h": gmax(L.out_h),
        "min_h": gmin(L.out_h),
        "last_h": L.out_h[last].astype(float),
        "max_kernel": gmax(L.kh),
        "max_stride": gmax(L.sh),
        "halo_depth": gsum(spatial_k * (L.kh - 1) / 2.0),
        "log_max_layer_macs": _log(gmax(L.macs)),
        "max_layer_macs_share": gmax(L.macs) / np.maximum(macs, 1.0),
        "log_arith_intensity": _log(macs / np.maximum(in_b + out_b + wb, 1.0)),
    }
    return np.column_stack([feats[k] for k in GROUP_FEATURES])


def _core_features(batch: GroupBatch, gf: np.ndarray, rows_gid: np.ndarray, k: np.ndarray,
                   hw: HardwareConfig) -> np.ndarray:
    """Core-dependent features for rows (group index `rows_gid`, core count `k`).

    Besides plain counts per core, generic analytic estimates a compiler engineer would write:
    compute at the aligned MAC rate with the busiest core's share (rows or channel tiles), halo
    rows recomputed for the fused layers below, DRAM bytes (weights replicated on every core of a
    row-split layer, intermediates that cannot stay on chip), and fixed costs per kernel and layer.
    How they combine (overlap of DMA and compute, which one binds) is left for the model to learn.
    """
    L, G = batch.layers, batch.groups
    col = {name: gf[:, i] for i, name in enumerate(GROUP_FEATURES)}
    ci, co = hw.mac_array.ci, hw.mac_array.co
    db = float(hw.dtype_bytes)
    n_rows = len(k)
    starts, lens = G.first_row[rows_gid], G.n_layers[rows_gid]
    flat_row = np.repeat(np.arange(n_rows), lens)
    flat_layer = np.repeat(starts - np.cumsum(np.r_[0, lens[:-1]]), lens) + np.arange(lens.sum())
    kk = k[flat_row].astype(np.float64)
    h = L.out_h[flat_layer].astype(np.float64)
    kh = L.kh[flat_layer].astype(np.float64)
    tiles = np.ceil(L.out_ch[flat_layer] / co).astype(np.float64)
    row_imb = np.ceil(h / kk) * kk / h
    chan_imb = np.ceil(tiles / kk) * kk / tiles
    by_rows = (h >= kk) & (L.spatial[flat_layer] | (h > 1))
    imb = np.where(by_rows, row_imb, chan_imb)
    m = L.macs[flat_layer].astype(np.float64)
    cig, cog = L.in_ch_per_group[flat_layer], L.out_ch_per_group[flat_layer]
    eff = np.where(m > 0, m * (np.ceil(cig / ci) * ci / cig) * (np.ceil(cog / co) * co / cog), 0.0)
    eff = np.where(L.depthwise[flat_layer], m * ci, eff)  # depthwise fills one of ci input lanes
    vec = L.vector_ops[flat_layer].astype(np.float64)
    layer_us = (eff / (hw.macs_per_cycle * hw.clock_ghz * 1e3)
                + vec / (hw.vector_lanes * hw.clock_ghz * 1e3)) * imb / kk
    # halo: rows of layer l recomputed for the spatial layers fused after it (suffix sum in the group)
    need = np.where(L.spatial[flat_layer] & (kh > 1) & by_rows, kh - 1, 0.0)
    incl = np.cumsum(need)
    first = np.repeat(np.cumsum(np.r_[0, lens[:-1]]), lens)
    before = np.r_[0.0, incl][first]
    after = np.bincount(flat_row, weights=need, minlength=n_rows)[flat_row] - (incl - before)
    halo_frac = np.where(by_rows & (kk > 1), after / np.maximum(np.ceil(h / kk), 1.0), 0.0)
    comp_us = np.bincount(flat_row, weights=layer_us * (1 + halo_frac), minlength=n_rows)
    halo_us = np.bincount(flat_row, weights=layer_us * halo_frac, minlength=n_rows)
    w = L.weight_elems[flat_layer] * db
    share = np.where(by_rows & L.spatial[flat_layer], w, w / kk)
    # a weight share over half the scratchpad is streamed again for every input tile beside it
    half = hw.onchip_bytes / 2
    restream = np.where(share > half, np.maximum(np.ceil(L.in_elems[flat_layer] * db / kk / half), 1.0), 1.0)
    w_traffic = np.bincount(flat_row, weights=share * kk * restream, minlength=n_rows)
    w_share = np.zeros(n_rows)
    np.maximum.at(w_share, flat_row, np.where(by_rows & L.spatial[flat_layer], w, w / kk))
    wsum = np.bincount(flat_row, weights=m * imb, minlength=n_rows) / np.maximum(
        np.bincount(flat_row, weights=m, minlength=n_rows), 1.0)
    row_any = np.bincount(flat_row, weights=np.minimum(row_imb, 64), minlength=n_rows) / lens
    chan_any = np.bincount(flat_row, weights=np.minimum(chan_imb, 64), minlength=n_rows) / lens
    bw = np.minimum(hw.dram_gbps, k * hw.dma_gbps_per_core) * 1e3  # bytes per us
    act = (G.in_elems[rows_gid] + G.out_elems[rows_gid]) * db
    internal = G.internal_elems[rows_gid] * db
    ws = G.max_internal_elems[rows_gid] * db / k + w_share
    spill = np.where(ws > hw.onchip_bytes, 2 * internal, 0.0)
    dram_us = (act + w_traffic + spill) / bw
    sync = np.where(k > 1, hw.sync.base_us * np.log2(np.maximum(k, 1)) + hw.sync.per_core_us * k, 0.0)
    overhead_us = hw.launch_us + hw.dispatch_us_per_core * k + lens * (hw.layer_overhead_us + sync)
    feats = {
        "cores": k.astype(float),
        "log2_cores": np.log2(k),
        "log_macs_per_core": _log((10 ** col["log_macs"][rows_gid] - 1) / k),
        "row_imbalance": row_any,
        "chan_imbalance": chan_any,
        "work_imbalance": wsum,
        "log_ws_per_core_ratio": np.log10(np.maximum(ws, 1.0) / hw.onchip_bytes),
        "log_weights_per_core_ratio": np.log10(np.maximum(w_share, 1.0) / hw.onchip_bytes),
        "log_compute_est_us": _log(comp_us),
        "log_halo_est_us": _log(halo_us),
        "log_weight_traffic": _log(w_traffic),
        "log_spill_bytes": _log(spill),
        "log_dram_est_us": _log(dram_us),
        "log_overhead_est_us": _log(overhead_us),
    }
    return np.column_stack([feats[k_] for k_ in CORE_FEATURES])


def hw_vector(hw: HardwareConfig) -> np.ndarray:
    """The hardware's parameters as the HW_FEATURES part of a row."""
    return np.array([
        hw.cores, hw.mac_array.ci, hw.mac_array.co, hw.clock_ghz, hw.vector_lanes, math.log10(hw.onchip_bytes),
        hw.dram_gbps, hw.dma_gbps_per_core, hw.launch_us, hw.sync.base_us, hw.sync.per_core_us,
        hw.layer_overhead_us, hw.dma_overlap, hw.dispatch_us_per_core,
    ], dtype=np.float64)


def featurize(groups: Sequence[Group], cores: Sequence[int] | np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Feature matrix (float32, len(groups) x len(FEATURE_NAMES)) for pairs (groups[i], cores[i])."""
    cores = np.asarray(cores, dtype=np.int64)
    if len(groups) != len(cores):
        raise ValueError(f"{len(groups)} groups but {len(cores)} core counts")
    # featurise each distinct group once, then expand over its rows
    uniq: dict[tuple[int, int, int], int] = {}
    rows_gid = np.empty(len(groups), dtype=np.int64)
    distinct: list[Group] = []
    for r, g in enumerate(groups):
        key = (id(g.graph), g.i, g.j)
        u = uniq.get(key)
        if u is None:
            u = uniq[key] = len(distinct)
            distinct.append(g)
        rows_gid[r] = u
    return featurize_batch(GroupBatch.build(distinct), rows_gid, cores, hw)


def featurize_batch(batch: GroupBatch, rows_gid: np.ndarray, cores: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Rows for (batch group rows_gid[r], cores[r]): lets callers reuse one GroupBatch for many core counts."""
    gf = group_features(batch, hw)
    cf = _core_features(batch, gf, rows_gid, np.asarray(cores, dtype=np.int64), hw)
    hv = np.broadcast_to(hw_vector(hw), (len(rows_gid), len(HW_FEATURES)))
    return np.hstack([gf[rows_gid], cf, hv]).astype(np.float32)
