"""Cost models compared on the same split: XGBoost (ours), a random forest (nn-Meter's choice) and
the analytic estimate with no learning; accuracy on the zoo's groups and prediction throughput.

Usage: python bench/bench_costmodel.py [--hw mlu100] [--data data/mlu100]  (after `make synth`)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from autotune.costmodel import LatencyModel
from autotune.features import FEATURE_NAMES, FEATURE_VERSION
from autotune.hardware import hw_slug, load_hardware
from autotune.report import format_table
from autotune.training import accuracy, core_ranking, read_dataset


def roofline_ms(Z: np.ndarray, hw) -> np.ndarray:
    """Launch plus the larger of MACs at k cores' peak and unique bytes at the DRAM bandwidth."""
    f = {n: Z[:, i].astype(np.float64) for i, n in enumerate(FEATURE_NAMES)}
    k = f["cores"]
    macs = 10 ** f["log_macs"] - 1
    nbytes = sum(10 ** f[c] - 1 for c in ("log_in_bytes", "log_out_bytes", "log_weight_bytes"))
    us = np.maximum(macs / (k * hw.macs_per_cycle * hw.clock_ghz * 1e3),
                    nbytes / (np.minimum(hw.dram_gbps, k * hw.dma_gbps_per_core) * 1e3))
    return (us + hw.launch_us + hw.dispatch_us_per_core * k) / 1e3


def analytic_ms(Z: np.ndarray, hw) -> np.ndarray:
    """The features' mechanism estimates combined by hand: fixed costs + overlapped compute and DMA."""
    f = {n: 10 ** Z[:, i].astype(np.float64) - 1 for i, n in enumerate(FEATURE_NAMES) if n.startswith("log_")}
    c, d = f["log_compute_est_us"], f["log_dram_est_us"]
    return (f["log_overhead_est_us"] + np.maximum(c, d) + (1 - hw.dma_overlap) * np.minimum(c, d)) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", default="mlu100")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rf-trees", type=int, default=100)
    a = ap.parse_args()
    hw = load_hardware(a.hw)
    ds = read_dataset(a.data or f"data/{hw_slug(a.hw)}", hw, list(FEATURE_NAMES), FEATURE_VERSION)
    if ds.zoo is None:
        raise SystemExit("dataset has no zoo.parquet to evaluate on")
    X = ds.rows[list(FEATURE_NAMES)].to_numpy(np.float32)
    y = ds.rows["latency_ms"].to_numpy()
    g = ds.rows["group_id"].to_numpy()
    Xz = ds.zoo[list(FEATURE_NAMES)].to_numpy(np.float32)
    yz = ds.zoo["latency_ms"].to_numpy()
    xgbm = LatencyModel(random_state=a.seed)
    tr, _ = xgbm.split(len(X), g)
    rows = []

    def record(name, fit_s, predict):
        t0 = time.perf_counter()
        p = predict(Xz)
        dt = time.perf_counter() - t0
        acc = accuracy(p, yz)
        rank = core_ranking(ds.zoo, p)
        rows.append([name, f"{fit_s:.1f}", f"{acc['mape']:.2%}", f"{acc['within5']:.1%}", f"{acc['within10']:.1%}",
                     f"{rank['rank_corr']:.3f}", f"{rank['best_core_agree']:.1%}", f"{len(Xz) / dt:,.0f}"])

    t0 = time.perf_counter()
    xgbm.fit(X, y, groups=g)
    record("xgboost (LatencyModel)", time.perf_counter() - t0, xgbm.predict)
    rf = RandomForestRegressor(n_estimators=a.rf_trees, min_samples_leaf=2, n_jobs=-1, random_state=a.seed)
    t0 = time.perf_counter()
    rf.fit(X[tr], np.log(y[tr]))
    record("random forest (nn-Meter)", time.perf_counter() - t0, lambda Z: np.exp(rf.predict(Z)))
    record("roofline + launch (no learning)", 0.0, lambda Z: roofline_ms(Z, hw))
    record("analytic estimate (features combined)", 0.0, lambda Z: analytic_ms(Z, hw))
    print(f"{hw.name}: {len(X)} training rows, {len(Xz)} zoo rows (never trained on)")
    print(format_table(rows, ["model", "fit s", "MAPE", "within 5%", "within 10%", "core rank corr",
                              "best core", "predict rows/s"], right=set(range(1, 8))))


if __name__ == "__main__":
    main()
