"""Cost-model designs compared on the same data: accuracy on the zoo's groups (never trained on),
the regret of the plans each one leads the DP to, fit time and prediction throughput.

Designs: the analytic datasheet estimate alone (no learning); the calibrated roofline alone (its
device constants fitted to the labels, no trees); XGBoost on log latency with no prior, on the
datasheet prior, and on the calibrated roofline (`LatencyModel`'s default); a random forest on log
latency (nn-Meter's choice).

Usage: python bench/bench_costmodel.py [--hw mlu100] [--data data/mlu100] [--rf-trees 60]  (after `make synth`)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from autotune.cli.report import format_table
from autotune.costmodel.feature_cache import dataset_features
from autotune.costmodel.features import FEATURE_NAMES, PRIOR_FEATURE
from autotune.costmodel.model import LatencyModel
from autotune.costmodel.training import accuracy, core_ranking
from autotune.data.dataset import read_dataset
from autotune.frontends import zoo
from autotune.hardware.config import hw_slug, load_hardware
from autotune.planning.evaluation import run_eval


class _Fn:
    """Any latency function of feature rows, with the `predict` the planner calls."""

    def __init__(self, fn):
        self.predict = fn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", default="mlu100")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rf-trees", type=int, default=60)
    a = ap.parse_args()
    hw = load_hardware(a.hw)
    ds = read_dataset(a.data or f"data/{hw_slug(a.hw)}", hw)
    if ds.zoo is None:
        raise SystemExit("dataset has no zoo.parquet to evaluate on")
    X, Xz = dataset_features(ds, hw)
    y = ds.rows["latency_ms"].to_numpy()
    g = ds.rows["group_id"].to_numpy()
    yz = ds.zoo["latency_ms"].to_numpy()
    rows = []

    def record(name: str, fit_s: float, model) -> None:
        t0 = time.perf_counter()
        p = model.predict(Xz)
        dt = time.perf_counter() - t0
        acc = accuracy(p, yz)
        rank = core_ranking(ds.zoo, p)
        ev = run_eval(zoo.names(), hw, model, progress=False)["summary"]
        rows.append([name, f"{fit_s:.1f}", f"{acc['mape']:.2%}", f"{acc['within5']:.1%}", f"{acc['within10']:.1%}",
                     f"{rank['rank_corr']:.3f}", f"{rank['best_core_agree']:.1%}", f"{ev['geomean_regret']:.2%}",
                     f"{ev['max_regret']:.2%}", f"{len(Xz) / dt:,.0f}"])
        print(f"  {name}: done", flush=True)

    prior = FEATURE_NAMES.index(PRIOR_FEATURE)
    record("analytic estimate (datasheet, no learning)", 0.0, _Fn(lambda Z: np.exp(Z[:, prior].astype(np.float64))))
    fitted = {}
    for name, kw in [("xgboost, no prior", {"prior": "none"}), ("xgboost x datasheet prior", {"prior": "datasheet"}),
                     ("xgboost x calibrated roofline (LatencyModel)", {})]:
        t0 = time.perf_counter()
        m = LatencyModel(random_state=a.seed, **kw).fit(X, y, groups=g)
        fitted[name] = (m, time.perf_counter() - t0)
    m, fit_s = fitted["xgboost x calibrated roofline (LatencyModel)"]
    record("calibrated roofline alone (fitted constants, no trees)", fit_s, _Fn(m.prior_predict))
    for name, (m, fit_s) in fitted.items():
        record(name, fit_s, m)
    tr, _ = LatencyModel(random_state=a.seed).split(len(X), g)
    rf = RandomForestRegressor(n_estimators=a.rf_trees, min_samples_leaf=2, n_jobs=-1, random_state=a.seed)
    t0 = time.perf_counter()
    rf.fit(X[tr], np.log(y[tr]))
    record("random forest on log latency (nn-Meter)", time.perf_counter() - t0, _Fn(lambda Z: np.exp(rf.predict(Z))))
    print(f"{hw.name}: {len(X)} training rows, {len(Xz)} zoo rows (never trained on); regret over "
          f"{len(zoo.names())} zoo networks")
    print(format_table(rows, ["model", "fit s", "MAPE", "within 5%", "within 10%", "core rank corr", "best core",
                              "regret geomean", "regret worst", "predict rows/s"], right=set(range(1, 10))))


if __name__ == "__main__":
    main()
