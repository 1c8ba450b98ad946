"""Feature rows for (layer group, core count, hardware): the cost model's one input schema.

Read from the graph and the hardware's *datasheet* only (docs/architecture.md, "The device boundary"): this
module, and everything it imports, never reads the `device:` section and never imports the simulator, so
the same features serve a simulated part and a real one measured through its vendor's tools.

The paper's two characteristics (operation count, feature-map channel sizes) plus what a
compiler engineer knows decides latency on a multi-core NPU: work per core and how evenly it
splits, op mix and variety, bytes at the group boundary against bytes that stay inside, the
on-chip working set, channel alignment to the MAC array and to powers of two, the dominant
layer's shape, and the datasheet estimate of `analytic.py` (its `log_prior_ms` column is the
prior the learned model corrects). Computed vectorised over all rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from autotune.hardware.analytic import (
    POLICIES,
    STRIDE_CLASSES,
    aligned_cycles,
    estimate,
    split,
    split_what_ifs,
    tile_shape,
)
from autotune.hardware.config import Datasheet, HardwareConfig
from autotune.ir.graph import Group
from autotune.ir.ops import COUNT_BUCKETS
from autotune.ir.tables import GroupBatch, PairRanges, bucket, windowed

#: Bump when a feature is added, removed or changes meaning: models and feature caches record it.
FEATURE_VERSION = 7

#: Parts of the two split policies' what-if estimates (analytic.split_what_ifs), each a feature.
WHAT_IF_PARTS = ("compute", "halo", "bytes", "reread", "spill", "mac", "pad")

GROUP_FEATURES = [
    "log_macs", "log_vector_ops", "log_act_ops", "n_layers", "n_conv", "n_dwconv", "n_fc", "n_matmul", "n_pool",
    "n_eltwise", "n_other", "n_spatial_k", "n_distinct", "n_distinct_conv", "n_distinct_lite", "log_weight_bytes",
    "log_in_bytes", "log_out_bytes",
    "log_internal_bytes", "log_max_internal_bytes", "internal_share", "max_in_ch", "max_out_ch", "mean_ch_macs",
    "min_out_ch", "first_in_ch", "last_out_ch", "align_waste", "dw_macs_share", "window_share", "window_pow2",
    "max_h", "min_h", "last_h", "max_kernel", "max_stride", "halo_depth", "log_max_layer_macs",
    "max_layer_macs_share", "log_arith_intensity", "log_max_layer_bytes_ratio",
    "dom_h", "dom_w", "dom_in_ch", "dom_out_ch", "dom_kernel", "dom_pow2", "dom_log_row_bytes",
    "dom_log_weight_bytes",
]
CORE_FEATURES = [
    "cores", "log2_cores", "log_macs_per_core", "imbalance", "row_split_share", "dom_extent", "dom_by_rows",
    "dom_log2_fit", "log_ws_per_core_ratio", "log_weights_per_core_ratio", "log_analytic_compute_us",
    "log_analytic_dram_us", "compute_share", "busy_cores_rows", "busy_cores_chan",
    "rows_ok_share", "layers_per_core",
    *[f"log_{part}_{policy}_us" for policy in POLICIES for part in WHAT_IF_PARTS],
    *[f"log_stride{c}_{policy}_us" for policy in POLICIES for c in STRIDE_CLASSES],
    *[f"log_tiles_{policy}" for policy in POLICIES],
    "log_prior_ms",
]
HW_FEATURES = [
    "hw_cores", "hw_ci", "hw_co", "hw_clock_ghz", "hw_vector_lanes", "hw_log_onchip", "hw_dram_gbps",
    "hw_dtype_bytes",
]
#: The one ordered list of feature names.
FEATURE_NAMES: list[str] = GROUP_FEATURES + CORE_FEATURES + HW_FEATURES
#: Features whose training range a model records: a kernel beyond it (bigger, longer, wider than
#: any label) is predicted by extrapolation, and tune and eval say so (LatencyModel.outside).
COVERAGE_FEATURES = ["log_macs", "log_vector_ops", "n_layers", "log_weight_bytes", "log_in_bytes", "log_out_bytes",
                     "log_internal_bytes", "max_h", "max_in_ch", "max_out_ch"]
#: The datasheet estimate, natural log of ms: the learned model's prior (its base margin).
PRIOR_FEATURE = "log_prior_ms"


def _log(x: np.ndarray) -> np.ndarray:
    return np.log10(np.asarray(x, dtype=np.float64) + 1.0)


def _pow2_factor(x: np.ndarray) -> np.ndarray:
    """log2 of the largest power of two dividing x (x >= 1), capped at 16: how evenly a byte
    stride lines up with power-of-two memory structures (banks, lines)."""
    x = np.maximum(np.asarray(x, dtype=np.int64), 1)
    return np.minimum(np.log2((x & -x).astype(np.float64)), 16.0)


def group_features(batch: GroupBatch, ds: Datasheet) -> tuple[np.ndarray, np.ndarray]:
    """Core-independent features, one row per group of `batch` (shape: n_groups x len(GROUP_FEATURES)),
    and the layer row of each group's dominant layer (the most aligned cycles)."""
    L, G = batch.layers, batch.groups
    gid = batch.gid
    n = batch.n_groups
    db = ds.dtype_bytes

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
    mac_c, vec_c = aligned_cycles(L, ds)
    work = mac_c + vec_c
    gwork = np.maximum(gsum(work), 1e-12)
    is_dw = L.depthwise.astype(float)
    kinds = bucket(L.op_code)

    def kind(name: str) -> np.ndarray:
        return kinds == COUNT_BUCKETS.index(name)

    dense_conv = kind("conv") & ~L.depthwise
    spatial_k = (kind("conv") & (L.kh > 1)).astype(float)
    windowed_w = ((L.kh * L.kw > 1) & windowed(L.op_code)).astype(float)
    in_b, out_b, int_b = G.in_elems * db, G.out_elems * db, G.internal_elems * db
    wb = gsum(L.weight_elems) * db
    first_kind = batch.first_of_kind()
    # the dominant layer: the most aligned cycles of its group (first on ties)
    order = np.lexsort((np.arange(len(work)), -work, gid))
    dom = order[np.concatenate([[0], np.cumsum(G.n_layers)[:-1]])] if n else np.zeros(0, np.int64)
    h = np.maximum(L.out_h, 1).astype(np.float64)
    row_bytes = (L.in_elems + L.out_elems) * db / h
    layer_bytes = (L.in_elems + L.out_elems + L.weight_elems) * db
    feats = {
        "log_macs": _log(macs),
        "log_vector_ops": _log(gsum(L.vector_ops)),
        # fused activation epilogues (a SiLU or GELU costs a vector unit more than a ReLU)
        "log_act_ops": _log(gsum(L.act_ops)),
        "n_layers": G.n_layers.astype(float),
        "n_conv": gsum(dense_conv),
        "n_dwconv": gsum(is_dw),
        "n_fc": gsum(kind("fc")),
        "n_matmul": gsum(kind("matmul")),
        "n_pool": gsum(kind("pool")),
        "n_eltwise": gsum(kind("eltwise")),
        "n_other": gsum(kind("other")),
        "n_spatial_k": gsum(spatial_k),
        "n_distinct": gsum(first_kind),
        # distinct layer programs by weight class: dense convs, other MAC layers (depthwise, fc,
        # matmul), vector-only layers; repeats of one layer can share its program
        "n_distinct_conv": gsum(first_kind & dense_conv),
        "n_distinct_lite": gsum(first_kind & (L.macs > 0) & ~dense_conv),
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
        "first_in_ch": L.in_ch[G.first_row].astype(float),
        "last_out_ch": L.out_ch[G.last_row].astype(float),
        "align_waste": gsum(mac_c) * ds.macs_per_cycle / np.maximum(macs, 1.0),
        "dw_macs_share": gsum(L.macs * is_dw) / np.maximum(macs, 1.0),
        "window_share": gsum(work * windowed_w) / gwork,
        "window_pow2": gsum(work * windowed_w * _pow2_factor(L.in_ch * db))
        / np.maximum(gsum(work * windowed_w), 1e-12),
        "max_h": gmax(L.out_h),
        "min_h": gmin(L.out_h),
        "last_h": L.out_h[G.last_row].astype(float),
        "max_kernel": gmax(L.kh),
        "max_stride": gmax(L.sh),
        "halo_depth": gsum(spatial_k * (L.kh - 1) / 2.0),
        "log_max_layer_macs": _log(gmax(L.macs)),
        "max_layer_macs_share": gmax(L.macs) / np.maximum(macs, 1.0),
        "log_arith_intensity": _log(macs / np.maximum(in_b + out_b + wb, 1.0)),
        "log_max_layer_bytes_ratio": np.log10(np.maximum(gmax(layer_bytes), 1.0) / ds.onchip_bytes),
        "dom_h": L.out_h[dom].astype(float),
        "dom_w": L.out_w[dom].astype(float),
        "dom_in_ch": L.in_ch[dom].astype(float),
        "dom_out_ch": L.out_ch[dom].astype(float),
        "dom_kernel": L.kh[dom].astype(float),
        "dom_pow2": _pow2_factor(L.in_ch[dom] * db),
        "dom_log_row_bytes": _log(row_bytes[dom]),
        "dom_log_weight_bytes": _log(L.weight_elems[dom] * db),
    }
    return np.column_stack([feats[k] for k in GROUP_FEATURES]), dom


def _core_features(batch: GroupBatch, gf: np.ndarray, dom: np.ndarray, rows_gid: np.ndarray, k: np.ndarray,
                   ds: Datasheet) -> np.ndarray:
    """Core-dependent features for rows (group index `rows_gid`, core count `k`): work per core,
    the split's imbalance, the dominant layer's per-core extent against what fits on chip, the
    working set and weights per core against on-chip memory, layers per core (a pipeline of the
    layers over the cores), the two split policies' what-if estimates (analytic.split_what_ifs)
    and the analytic strategy's estimate."""
    col = {name: gf[:, i] for i, name in enumerate(GROUP_FEATURES)}
    db = float(ds.dtype_bytes)
    kf = k.astype(np.float64)
    # work-weighted shares over each pair's layers, per distinct layer and core count (PairRanges)
    rng = PairRanges(batch, rows_gid, k)
    S = batch.stack
    sp = split(S, rng.k, ds)
    mac_l, vec_l = aligned_cycles(S, ds)
    work = (mac_l + vec_l)[:, None]
    rows_ok = S.spatial[:, None] & (S.out_h[:, None] >= rng.k) & (S.out_h[:, None] > 1)
    sums = rng.sum(work, work * sp.imbalance, work * sp.by_rows, work * rows_ok)
    wsum = np.maximum(sums[:, 0], 1e-12)
    imb, rows_share, rows_ok_share = sums[:, 1] / wsum, sums[:, 2] / wsum, sums[:, 3] / wsum
    # the dominant layer's per-core extent: rows, or output-channel tiles of the array's width
    Ld = batch.layers.take(dom[rows_gid])
    sd = split(Ld, kf, ds)
    extent, unit, _ = tile_shape(Ld, sd.by_rows, kf, ds)
    fit = ds.onchip_bytes / np.maximum(unit, 1.0)
    G = batch.groups
    what = split_what_ifs(batch, rows_gid, k, ds)
    est = estimate(batch, rows_gid, k, ds, what)
    w_share = what["rows"].weight_share
    ws = G.max_internal_elems[rows_gid] * db / kf + w_share
    feats = {
        "cores": kf,
        "log2_cores": np.log2(kf),
        "log_macs_per_core": _log((10 ** col["log_macs"][rows_gid] - 1) / kf),
        "imbalance": imb,
        "row_split_share": rows_share,
        "dom_extent": extent,
        "dom_by_rows": sd.by_rows.astype(float),
        "dom_log2_fit": np.log2(np.maximum(fit, 1e-3)),
        "log_ws_per_core_ratio": np.log10(np.maximum(ws, 1.0) / ds.onchip_bytes),
        "log_weights_per_core_ratio": np.log10(np.maximum(w_share, 1.0) / ds.onchip_bytes),
        "log_analytic_compute_us": _log(est.compute_us),
        "log_analytic_dram_us": _log(est.dram_us),
        "compute_share": est.compute_us / np.maximum(est.compute_us + est.dram_us, 1e-12),
        # cores busy with MACs at the datasheet's peak rates: what a power budget is about
        **{f"busy_cores_{p}": kf * _busy_share(what[p]) for p in POLICIES},
        "rows_ok_share": rows_ok_share,
        # a third split rule, the group's layers pipelined over the cores (as spatial dataflow
        # parts map a fused group): how many layers each core holds
        "layers_per_core": col["n_layers"][rows_gid] / kf,
        **{f"log_{part}_{policy}_us": _log(getattr(what[policy], f"{part}_us"))
           for policy in POLICIES for part in WHAT_IF_PARTS},
        **{f"log_stride{c}_{policy}_us": _log(what[policy].stride_us[:, i])
           for policy in POLICIES for i, c in enumerate(STRIDE_CLASSES)},
        **{f"log_tiles_{policy}": _log(what[policy].tiles) for policy in POLICIES},
        PRIOR_FEATURE: np.log(est.total_us / 1e3),
    }
    return np.column_stack([feats[k_] for k_ in CORE_FEATURES])


def _busy_share(w) -> np.ndarray:
    """Share of a kernel's time its cores run the MAC array, if compute and DRAM overlapped perfectly."""
    c = w.compute_us + w.halo_us
    d = w.bytes_us + w.reread_us + w.spill_us
    return w.mac_us / np.maximum(np.maximum(c, d), 1e-12)


def hw_vector(ds: Datasheet) -> np.ndarray:
    """The datasheet's values as the HW_FEATURES part of a row."""
    return np.array([ds.cores, ds.mac_array.ci, ds.mac_array.co, ds.clock_ghz, ds.vector_lanes,
                     math.log10(ds.onchip_bytes), ds.dram_gbps, ds.dtype_bytes], dtype=np.float64)


def featurize(groups: Sequence[Group], cores: Sequence[int] | np.ndarray, hw: HardwareConfig | Datasheet) -> np.ndarray:
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


def featurize_batch(batch: GroupBatch, rows_gid: np.ndarray, cores: np.ndarray,
                    hw: HardwareConfig | Datasheet) -> np.ndarray:
    """Rows for (batch group rows_gid[r], cores[r]): lets callers reuse one GroupBatch for many core counts."""
    ds = hw.datasheet if isinstance(hw, HardwareConfig) else hw
    rows_gid = np.asarray(rows_gid, dtype=np.int64)
    if len(rows_gid) == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    gf, dom = group_features(batch, ds)
    cf = _core_features(batch, gf, dom, rows_gid, np.asarray(cores, dtype=np.int64), ds)
    n_g, n_c = gf.shape[1], cf.shape[1]
    out = np.empty((len(rows_gid), len(FEATURE_NAMES)), dtype=np.float32)
    out[:, :n_g] = gf.astype(np.float32)[rows_gid]
    out[:, n_g:n_g + n_c] = cf
    out[:, n_g + n_c:] = hw_vector(ds)
    return out


# -- featurizers a model can name --------------------------------------------------------------------
@dataclass(frozen=True)
class Featurizer:
    """A named, versioned feature extractor: what a LatencyModel owns (TVM's XGBModel(extractor=...))."""

    name: str
    version: int
    names: tuple[str, ...]
    batch: Callable[[GroupBatch, np.ndarray, np.ndarray, HardwareConfig | Datasheet], np.ndarray]


#: What the universal featurizer adds: the datasheet's scale and balance, and the share of the part a
#: kernel uses. One model for many parts reads latency against these (autotune/costmodel/universal.py).
UNIVERSAL_EXTRA = ["hw_log_peak_macs", "hw_log_balance", "hw_log_dram_per_core", "hw_core_share"]
UNIVERSAL_VERSION = 1


def universal_columns(ds: Datasheet, cores: np.ndarray) -> np.ndarray:
    """The UNIVERSAL_EXTRA columns of rows at core counts `cores` on a part with datasheet `ds`."""
    k = np.asarray(cores, dtype=np.float64)
    peak = ds.peak_macs_per_s
    return np.column_stack([np.full(len(k), math.log10(peak)), np.full(len(k), math.log10(peak / (ds.dram_gbps * 1e9))),
                            np.full(len(k), math.log10(ds.dram_gbps / ds.cores)), k / ds.cores]).astype(np.float32)


def universal_batch(batch: GroupBatch, rows_gid: np.ndarray, cores: np.ndarray,
                    hw: HardwareConfig | Datasheet) -> np.ndarray:
    """The datasheet rows with UNIVERSAL_EXTRA appended: the features of a model for a family of parts."""
    ds = hw.datasheet if isinstance(hw, HardwareConfig) else hw
    return np.hstack([featurize_batch(batch, rows_gid, cores, ds), universal_columns(ds, cores)])


#: Op classes the layer sum keeps apart: COUNT_BUCKETS with convolutions split into pointwise, spatial
#: (k x k) and depthwise, whose cost per MAC differs on most parts.
LAYER_CLASSES = ("conv1x1", "convkxk", "dwconv", "eltwise", "fc", "matmul", "other", "pool")
#: Per class: MAC-array time at the datasheet peak split over the cores and unsplit, vector time
#: (fused activation epilogues included) likewise, its layers' bytes at DRAM bandwidth, its layer count;
#: then the group's boundary bytes at bandwidth, a launch, and a launch that grows with log2 of the
#: cores. Each column is ms per unit of its constant (counts in thousandths), so a non-negative
#: linear fit of them is a latency (autotune/costmodel/layer_sum.py).
LAYER_SUM = [f"ls_{c}_{t}" for c in LAYER_CLASSES for t in ("mac_k", "mac", "vec_k", "vec", "bytes", "n")] + [
    "ls_boundary", "ls_launch", "ls_launch_log2k"]
LAYER_SUM_VERSION = 2


#: Each COUNT_BUCKETS entry's class (a convolution's is refined by `layer_classes`); a bucket added
#: without a class fails here, at import.
_BUCKET_CLASS = np.array([LAYER_CLASSES.index("conv1x1" if b == "conv" else b) for b in COUNT_BUCKETS])


def layer_classes(L) -> np.ndarray:
    """Each layer's index into LAYER_CLASSES."""
    b = bucket(L.op_code)
    conv = b == COUNT_BUCKETS.index("conv")
    cls = np.where(conv & (L.kh > 1), LAYER_CLASSES.index("convkxk"), _BUCKET_CLASS[b])
    return np.where(conv & L.depthwise, LAYER_CLASSES.index("dwconv"), cls)


def layer_sum_columns(batch: GroupBatch, rows_gid: np.ndarray, cores: np.ndarray, ds: Datasheet) -> np.ndarray:
    """The LAYER_SUM columns of rows (group index `rows_gid`, core count `cores`), from the datasheet."""
    L, G = batch.layers, batch.groups
    cls = layer_classes(L)
    mac_c, vec_c = aligned_cycles(L, ds)
    vec_c = vec_c + L.act_ops / ds.vector_lanes  # a fused activation epilogue on the vector unit too
    hz, bw, db = ds.clock_ghz * 1e9, ds.dram_gbps * 1e9, ds.dtype_bytes
    nc = len(LAYER_CLASSES)
    key = batch.gid * nc + cls

    def per_class(v) -> np.ndarray:  # (n_groups, classes) sums
        out = np.bincount(key, weights=np.asarray(v, dtype=np.float64), minlength=batch.n_groups * nc)
        return out.reshape(batch.n_groups, nc)

    g = np.asarray(rows_gid, dtype=np.int64)
    k = np.asarray(cores, dtype=np.float64)[:, None]
    mac, vec = per_class(mac_c)[g] / hz * 1e3, per_class(vec_c)[g] / hz * 1e3
    nbytes = per_class((L.in_elems + L.out_elems + L.weight_elems) * db)[g] / bw * 1e3
    count = per_class(np.ones(len(cls)))[g] * 1e-3
    per = np.stack([mac / k, mac, vec / k, vec, nbytes, count], axis=2).reshape(len(g), -1)  # class-major
    tail = np.column_stack([((G.in_elems + G.out_elems) * db)[g] / bw * 1e3, np.full(len(g), 1e-3),
                            np.log2(k[:, 0]) * 1e-3])
    return np.hstack([per, tail])


def layer_sum_batch(batch: GroupBatch, rows_gid: np.ndarray, cores: np.ndarray,
                    hw: HardwareConfig | Datasheet) -> np.ndarray:
    """The datasheet rows with the LAYER_SUM columns appended: what the layer-sum prior reads."""
    ds = hw.datasheet if isinstance(hw, HardwareConfig) else hw
    rows_gid = np.asarray(rows_gid, dtype=np.int64)
    if len(rows_gid) == 0:
        return np.zeros((0, len(FEATURE_NAMES) + len(LAYER_SUM)), dtype=np.float32)
    return np.hstack([featurize_batch(batch, rows_gid, cores, ds),
                      layer_sum_columns(batch, rows_gid, cores, ds).astype(np.float32)])


_FEATURIZERS = {
    "datasheet": Featurizer("datasheet", FEATURE_VERSION, tuple(FEATURE_NAMES), featurize_batch),
    "universal": Featurizer("universal", FEATURE_VERSION * 100 + UNIVERSAL_VERSION,
                            tuple(FEATURE_NAMES + UNIVERSAL_EXTRA), universal_batch),
    "layersum": Featurizer("layersum", FEATURE_VERSION * 100 + LAYER_SUM_VERSION, tuple(FEATURE_NAMES + LAYER_SUM),
                           layer_sum_batch),
}
_BUILT_IN = tuple(_FEATURIZERS)


def register_featurizer(featurizer: Featurizer) -> Featurizer:
    """Make `featurizer` nameable by a LatencyModel (and by saved models: bump `version` on any change)."""
    if featurizer.name in _FEATURIZERS:
        raise ValueError(f"a featurizer named {featurizer.name!r} is already registered")
    _FEATURIZERS[featurizer.name] = featurizer
    return featurizer


def unregister_featurizer(name: str) -> None:
    """Forget a featurizer registered at run time (the built-in ones stay)."""
    if name not in _BUILT_IN:
        _FEATURIZERS.pop(name, None)


def get_featurizer(name: str) -> Featurizer:
    """The featurizer registered under `name` (this autotune ships "datasheet", "universal" and "layersum")."""
    try:
        return _FEATURIZERS[name]
    except KeyError:
        raise ValueError(f"unknown featurizer {name!r}; this autotune has {', '.join(_FEATURIZERS)}") from None
