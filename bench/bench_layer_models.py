"""Models that share strength across layers (a per-layer cost summed over the group, as nn-Meter sums
kernels) against the shipped group-level model, on held-out groups of a measured dataset.

Designs, each trained from group labels only:
- `group trees`: XGBoost on the group's features, the datasheet estimate as prior (shipped for measured
  parts before the layer sum);
- `layer sum`: the layer-sum prior alone (autotune/costmodel/layer_sum.py): per op class, compute at
  the datasheet's peak split over the cores plus a serial share, bytes at bandwidth, a fixed cost per
  layer; plus the group's boundary bytes and a launch; its constants fitted by non-negative least squares;
- `layer sum + trees`: group trees on the layer sum as their prior (what `train` now fits on a measured part);
- `layer trees`: one tree ensemble over layer rows (the layer's shapes, its op, its place in the
  group, the core count) plus a launch row per group; the group's latency is the sum of its rows',
  and the trees are fitted to the group labels by a custom objective (squared error of the log of the sum).

Prints held-out accuracy over several group splits, overall and per kind of group.

    python bench/bench_layer_models.py                       # data/cpu (`make synth HW=cpu`)
    python bench/bench_layer_models.py --hw datasheet.yaml --data DATA --splits 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xgboost as xgb
from sklearn.model_selection import GroupShuffleSplit

from autotune.cli.report import format_table
from autotune.costmodel.boosters import boost
from autotune.costmodel.feature_cache import dataset_features
from autotune.costmodel.features import FEATURE_NAMES, PRIOR_FEATURE
from autotune.costmodel.layer_sum import fit_layer_sum
from autotune.costmodel.model import LatencyModel
from autotune.data.dataset import groups_of, read_dataset
from autotune.hardware.analytic import aligned_cycles
from autotune.hardware.config import Datasheet, hw_slug, load_hardware
from autotune.ir.tables import GroupBatch, bucket

LAUNCH_MS = 0.01  # the layer trees' starting guess for a group's fixed cost


def _log(v) -> np.ndarray:
    return np.log10(np.asarray(v, dtype=np.float64) + 1.0)


class Layers:
    """Per-layer arrays of a dataset's distinct groups, and each pair's group and core count."""

    def __init__(self, batch: GroupBatch, codes: np.ndarray, cores: np.ndarray, ds: Datasheet):
        L, G = batch.layers, batch.groups
        self.batch, self.codes, self.cores, self.ds = batch, codes, cores.astype(np.float64), ds
        self.gid = batch.gid
        self.mac_c, self.vec_c = aligned_cycles(L, ds)
        db = ds.dtype_bytes
        self.wbytes = L.weight_elems * db
        self.bytes = (L.in_elems + L.out_elems) * db + self.wbytes
        self.boundary = (G.in_elems + G.out_elems) * db
        start = np.concatenate([[0], np.cumsum(G.n_layers)[:-1]])
        self.pos = np.arange(len(self.gid)) - start[self.gid]
        self.start, self.n_layers = start, G.n_layers

    def gsum(self, v) -> np.ndarray:
        return np.bincount(self.gid, weights=np.asarray(v, dtype=np.float64), minlength=self.batch.n_groups)


def layer_rows(lay: Layers, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, base margin, owning pair) of the layer rows of `pairs`, plus one launch row each."""
    L, ds = lay.batch.layers, lay.ds
    onchip, db = ds.onchip_bytes, ds.dtype_bytes
    static = np.column_stack([
        bucket(L.op_code), L.op_code, L.depthwise, _log(L.macs), _log(L.vector_ops), _log(lay.wbytes),
        _log(L.in_elems * db), _log(L.out_elems * db), L.in_ch, L.out_ch, L.in_ch_per_group, L.out_ch_per_group,
        L.kh, L.sh, L.out_h, L.out_w, np.log10((lay.wbytes + 1) / onchip), np.log10((lay.bytes + 1) / onchip),
        lay.pos == 0, lay.pos == lay.n_layers[lay.gid] - 1, lay.n_layers[lay.gid], _log(lay.mac_c), _log(lay.vec_c)])
    launch = np.zeros((lay.batch.n_groups, static.shape[1]))
    launch[:, :2] = -1
    launch[:, 17] = np.log10((lay.boundary + 1) / onchip)
    launch[:, 20] = lay.n_layers
    est_ms = ((lay.mac_c + lay.vec_c) / (ds.clock_ghz * 1e9) + lay.bytes / (ds.dram_gbps * 1e9)) * 1e3
    g, k = lay.codes[pairs], lay.cores[pairs]
    n = lay.n_layers[g]
    own = np.repeat(np.arange(len(pairs)), n)
    rows = lay.start[g][own] + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    F = np.vstack([np.column_stack([static[rows], k[own]]), np.column_stack([launch[g], k])])
    M = np.concatenate([np.log(np.maximum(est_ms[rows] / k[own], 1e-5)), np.full(len(pairs), np.log(LAUNCH_MS))])
    return F, M, np.concatenate([own, np.arange(len(pairs))])


def fit_layer_trees(lay: Layers, y: np.ndarray, tr: np.ndarray, va: np.ndarray, seed: int) -> tuple[xgb.Booster, int]:
    """Trees over layer rows whose per-group sum fits log latency; early stopping on the `va` pairs."""
    Ft, Mt, Ot = layer_rows(lay, tr)
    Fv, Mv, Ov = layer_rows(lay, va)
    logy = np.log(y[tr])

    def objective(pred: np.ndarray, _d: xgb.DMatrix) -> tuple[np.ndarray, np.ndarray]:
        e = np.exp(pred)
        total = np.bincount(Ot, weights=e)
        share = e / total[Ot]
        resid = (np.log(total) - logy)[Ot]
        # d/d pred of (log sum - log y)^2 / 2 is resid * share; the share as curvature keeps a
        # layer with a small share from taking a huge step
        return resid * share, np.maximum(share, 1e-3)

    dt, dv = xgb.DMatrix(Ft, base_margin=Mt), xgb.DMatrix(Fv, base_margin=Mv)
    params = {"tree_method": "hist", "max_depth": 6, "eta": 0.05, "subsample": 0.9, "min_child_weight": 0.5,
              "nthread": 1, "base_score": 0.0, "seed": seed}
    bst = xgb.Booster(params, [dt])
    best, best_it = np.inf, 0
    for it in range(2000):
        bst.update(dt, it, fobj=objective)
        sums = np.bincount(Ov, weights=np.exp(bst.predict(dv, output_margin=True)), minlength=len(va))
        mae = float(np.mean(np.abs(np.log(sums) - np.log(y[va]))))
        if mae < best - 1e-5:
            best, best_it = mae, it + 1
        elif it + 1 - best_it >= 100:
            break
    return bst, best_it


def group_trees(X: np.ndarray, y: np.ndarray, margin: np.ndarray, tr: np.ndarray, va: np.ndarray, te: np.ndarray,
                seed: int) -> np.ndarray:
    """Group-level trees on log latency from `margin` (LatencyModel's settings), predicted for `te`."""
    params = {**LatencyModel(random_state=seed)._xgb_params(len(tr)), "nthread": 1}
    bst, _ = boost(params, (X[tr], np.log(y[tr]), margin[tr]), 3000, val=(X[va], np.log(y[va]), margin[va]),
                   early_stopping=100)  # cut at its best round
    return np.exp(bst.predict(xgb.DMatrix(X[te], base_margin=margin[te])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hw", default="cpu", help="preset name or datasheet YAML the data was measured for")
    ap.add_argument("--data", default=None, help="a measured dataset folder (default data/<hw>, `make synth HW=...`)")
    ap.add_argument("--splits", type=int, default=6)
    args = ap.parse_args()
    hw = load_hardware(args.hw)
    args.data = args.data or f"data/{hw_slug(args.hw)}"
    data = read_dataset(args.data, hw)
    X_ls, _ = dataset_features(data, hw, "layersum")  # the datasheet rows plus the layer-sum columns
    X = X_ls[:, :len(FEATURE_NAMES)]
    rows = data.rows
    y = rows["latency_ms"].to_numpy(np.float64)
    gids = rows["group_id"].to_numpy()
    kind = rows["kind"].astype(str).to_numpy() if "kind" in rows else np.full(len(y), "all")
    groups, codes = groups_of(rows)
    lay = Layers(GroupBatch.build(groups), codes, rows["cores"].to_numpy(), hw.datasheet)
    A = X_ls[:, len(FEATURE_NAMES):].astype(np.float64)
    datasheet_margin = X[:, FEATURE_NAMES.index(PRIOR_FEATURE)].astype(np.float64)
    designs = ["group trees", "layer sum", "layer sum + trees", "layer trees"]
    rel: dict[str, list[np.ndarray]] = {d: [] for d in designs}
    kinds, secs = [], {d: 0.0 for d in designs}
    for s in range(args.splits):
        tr, te = next(GroupShuffleSplit(n_splits=1, test_size=0.15, random_state=s).split(X, groups=gids))
        a, b = next(GroupShuffleSplit(n_splits=1, test_size=0.15, random_state=100 + s).split(tr, groups=gids[tr]))
        fit, val = tr[a], tr[b]
        kinds.append(kind[te])
        t0 = time.perf_counter()
        pred = {"group trees": group_trees(X, y, datasheet_margin, fit, val, te, s)}
        secs["group trees"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        pred["layer sum"] = fit_layer_sum(A[tr], y[tr]).predict_ms(A[te])
        secs["layer sum"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        pred["layer sum + trees"] = group_trees(X_ls, y, fit_layer_sum(A[fit], y[fit]).log_ms(A), fit, val, te, s)
        secs["layer sum + trees"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        bst, it = fit_layer_trees(lay, y, fit, val, s)
        F, M, owner = layer_rows(lay, te)
        p = bst.predict(xgb.DMatrix(F, base_margin=M), output_margin=True, iteration_range=(0, it))
        pred["layer trees"] = np.bincount(owner, weights=np.exp(p), minlength=len(te))
        secs["layer trees"] += time.perf_counter() - t0
        for d in designs:
            rel[d].append(np.abs(pred[d] / y[te] - 1.0))
        print(f"split {s + 1}/{args.splits}: " + ", ".join(f"{d} {np.mean(rel[d][-1] <= 0.1):.0%}" for d in designs),
              flush=True)
    K = np.concatenate(kinds)
    names = sorted(set(K))
    table = []
    for d in designs:
        r = np.concatenate(rel[d])
        table.append([d, f"{np.mean(r <= 0.1):.1%}", f"{np.median(r):.1%}", f"{secs[d] / args.splits:.1f}"]
                     + [f"{np.mean(r[K == n] <= 0.1):.0%} / {np.median(r[K == n]):.0%}" for n in names])
    print(f"\n{args.data} ({hw.name}): {len(y)} labelled pairs, {args.splits} group splits, 15% held out each")
    print(format_table(table, ["design", "within ±10%", "median error", "fit s"]
                       + [f"{n} [{int(np.sum(K == n))}]" for n in names]))


if __name__ == "__main__":
    main()
