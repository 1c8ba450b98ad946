"""`autotune train`: fit the LatencyModel on a labelled dataset, measure it on the zoo's real groups.

Features are computed here from the measurement rows (cached per shard, autotune/dataset.py).
The zoo groups (`zoo.parquet`) never enter training; their metrics are what meta.json reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .costmodel import LatencyModel, fit_on_cluster
from .dataset import dataset_features, read_dataset
from .errors import DatasetError
from .fileio import atomic_write_json
from .hardware import HardwareConfig, hw_slug, load_hardware


def accuracy(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAPE and the shares of predictions within +-5% and +-10% (fractions 0..1)."""
    rel = np.abs(pred / true - 1.0)
    return {"n": len(true), "mape": float(rel.mean()), "within5": float((rel <= 0.05).mean()),
            "within10": float((rel <= 0.10).mean())}


def core_ranking(df: pd.DataFrame, pred: np.ndarray) -> dict[str, float]:
    """Per group (model, i, j): Spearman correlation of predicted vs true latency over core counts,
    how often the predicted best core count is the true best, and the mean latency lost by it."""
    d = df[["model", "i", "j", "cores", "latency_ms"]].copy()
    d["pred"] = pred
    d = d.sort_values(["model", "i", "j", "cores"], kind="stable")
    k = d.groupby(["model", "i", "j"], sort=False).size()
    if k.nunique() != 1:
        raise DatasetError("zoo.parquet rows do not hold every core count for every group")
    K = int(k.iloc[0])
    t = d["latency_ms"].to_numpy().reshape(-1, K)
    p = d["pred"].to_numpy().reshape(-1, K)
    if K < 2:
        return {"rank_corr": 1.0, "best_core_agree": 1.0, "best_core_loss": 0.0}
    rt = t.argsort(1).argsort(1).astype(float)
    rp = p.argsort(1).argsort(1).astype(float)
    rt -= rt.mean(1, keepdims=True)
    rp -= rp.mean(1, keepdims=True)
    corr = (rt * rp).sum(1) / np.sqrt((rt**2).sum(1) * (rp**2).sum(1))
    chosen = t[np.arange(len(t)), p.argmin(1)]
    return {"rank_corr": float(corr.mean()), "best_core_agree": float((p.argmin(1) == t.argmin(1)).mean()),
            "best_core_loss": float((chosen / t.min(1) - 1).mean())}


def zoo_metrics(zoo: pd.DataFrame, pred: np.ndarray) -> dict:
    """Accuracy on the zoo's candidate groups: overall, per network and per group length."""
    true = zoo["latency_ms"].to_numpy()
    out: dict = accuracy(pred, true)
    out.update(core_ranking(zoo, pred))
    length = (zoo["j"] - zoo["i"]).to_numpy()
    out["per_model"] = {m: accuracy(pred[idx], true[idx]) for m, idx in zoo.groupby("model").indices.items()}
    out["per_length"] = {int(n): accuracy(pred[length == n], true[length == n]) for n in np.unique(length)}
    return out


@dataclass
class TrainResult:
    model: LatencyModel
    meta: dict
    zoo: pd.DataFrame | None  # the evaluation rows, and the model's predictions for them
    zoo_pred: np.ndarray | None


def train(hw: HardwareConfig, data_dir: str | Path, out_dir: str | Path, seed: int = 0, scheduler: str | None = None,
          progress: bool = True, plot: bool = True, **params) -> TrainResult:
    """Fit on `data_dir`, evaluate on its zoo.parquet, publish to `out_dir` (model, meta.json and,
    with `plot`, predicted_vs_simulated.png), as one unit, under a lock on `out_dir`."""
    from .fileio import FolderLock, check_output

    check_output(out_dir, "folder")
    with FolderLock(Path(out_dir)):
        return _train(hw, data_dir, out_dir, seed, scheduler, progress, plot, params)


def _train(hw, data_dir, out_dir, seed, scheduler, progress, plot, params) -> TrainResult:
    ds = read_dataset(data_dir, hw)
    X, Xz = dataset_features(ds, hw)
    y = ds.rows["latency_ms"].to_numpy(np.float64)
    model = LatencyModel(random_state=seed, verbose=progress, **params)
    t0 = time.perf_counter()
    if scheduler:
        from .cluster import connect

        with connect(scheduler) as client:
            fit_on_cluster(model, X, y, ds.rows["group_id"].to_numpy(), client)
    else:
        model.fit(X, y, groups=ds.rows["group_id"].to_numpy())
    fit_s = time.perf_counter() - t0
    _, va = model.split(len(X), ds.rows["group_id"].to_numpy())
    metrics: dict = {"fit_s": round(fit_s, 2), "train_rows": len(X), "best_iteration": model.best_iteration_,
                     "validation": accuracy(model.predict(X[va]), y[va])}
    zp = None
    if Xz is not None:
        zp = model.predict(Xz)
        metrics["zoo"] = zoo_metrics(ds.zoo, zp)
    meta = {
        "hardware": hw.name, "hardware_hash": hw.hash, "dataset": str(data_dir), "dataset_digest": ds.digest,
        "dataset_rows": len(X), "generator_version": ds.manifest.get("generator_version"), "seed": seed,
        "metrics": metrics,
    }
    extra = {}
    if plot and zp is not None:
        extra[PLOT_FILE] = plot_pred_vs_sim(ds.zoo, zp, f"{hw.name}: zoo groups, predicted vs simulated")
    model.save(out_dir, meta, extra)
    return TrainResult(model, meta, ds.zoo, zp)


def _report_lines(metrics: dict) -> list[str]:
    v = metrics["validation"]
    lines = [f"validation (synthetic, held-out groups): MAPE {v['mape']:.2%}, within 5% {v['within5']:.1%}, "
             f"within 10% {v['within10']:.1%}  [{v['n']} rows]"]
    z = metrics.get("zoo")
    if z:
        lines.append(f"zoo groups (never trained on):          MAPE {z['mape']:.2%}, within 5% {z['within5']:.1%}, "
                     f"within 10% {z['within10']:.1%}, core-rank corr {z['rank_corr']:.3f}, "
                     f"best core {z['best_core_agree']:.1%}  [{z['n']} rows]")
        lines.append("  per network:  " + ", ".join(f"{m} {a['within10']:.0%}" for m, a in z["per_model"].items()))
        lines.append("  per length:   " + ", ".join(f"{n}:{a['within10']:.0%}" for n, a in z["per_length"].items()))
    return lines


PLOT_FILE = "predicted_vs_simulated.png"


def plot_pred_vs_sim(zoo: pd.DataFrame, pred: np.ndarray, title: str) -> bytes:
    """PNG bytes: predicted against simulated latency on zoo groups, coloured by group length."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.5))
    length = (zoo["j"] - zoo["i"]).to_numpy()
    sc = ax.scatter(zoo["latency_ms"], pred, c=length, s=4, cmap="viridis", alpha=0.6)
    lo, hi = float(min(zoo["latency_ms"].min(), pred.min())), float(max(zoo["latency_ms"].max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    for f in (0.9, 1.1):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set(xscale="log", yscale="log", xlabel="simulated latency (ms)", ylabel="predicted latency (ms)", title=title)
    fig.colorbar(sc, ax=ax, label="group length (layers)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def main(args) -> int:
    """The `autotune train` command."""
    hw = load_hardware(args.hw)
    slug = hw_slug(args.hw)
    data_dir = Path(args.data or f"data/{slug}")
    out_dir = Path(args.out or f"models/{slug}")
    from .fileio import check_output

    check_output(getattr(args, "json", None), "file")
    res = train(hw, data_dir, out_dir, seed=args.seed, scheduler=args.scheduler)
    model, meta = res.model, res.meta
    print(f"trained on {meta['dataset_rows']} rows in {meta['metrics']['fit_s']} s "
          f"({model.best_iteration_ + 1} trees); saved to {out_dir}/")
    for line in _report_lines(meta["metrics"]):
        print(line)
    if res.zoo is not None:
        print(f"plot: {out_dir / PLOT_FILE}")
    if getattr(args, "json", None):
        atomic_write_json(args.json, meta)
    return 0
