"""Training: fit the LatencyModel on a labelled dataset, measure it on the zoo's real groups.

Features are computed here from the measurement rows (cached per shard, autotune/data/dataset.py).
The zoo groups (`zoo.parquet`) never enter training; their metrics are what meta.json reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autotune.artefacts import MODEL, check_folder_output
from autotune.cluster import connect
from autotune.costmodel.feature_cache import compute_features, dataset_features
from autotune.costmodel.memory import first_differences, logs_by_key
from autotune.costmodel.model import LatencyModel, fit_on_cluster
from autotune.costmodel.model_io import provenance
from autotune.data.dataset import read_dataset
from autotune.errors import AutotuneError, DatasetError
from autotune.fileio import FolderLock
from autotune.hardware.config import HardwareConfig


def accuracy(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAPE, the median relative error and the shares of predictions within +-5% and +-10% (fractions 0..1)."""
    rel = np.abs(pred / true - 1.0)
    return {"n": len(true), "mape": float(rel.mean()), "median": float(np.median(rel)) if len(rel) else 0.0,
            "within5": float((rel <= 0.05).mean()), "within10": float((rel <= 0.10).mean())}


def core_ranking(df: pd.DataFrame, pred: np.ndarray) -> dict[str, float]:
    """Per group (model, i, j): Spearman correlation of predicted vs true latency over core counts,
    how often the predicted best core count is the true best, and the mean latency lost by it."""
    d = pd.DataFrame(df.loc[:, ["model", "i", "j", "cores", "latency_ms"]]).assign(pred=pred)
    d = d.sort_values(by=["model", "i", "j", "cores"], kind="stable")
    k = d.groupby(["model", "i", "j"], sort=False).size().to_numpy()
    if len(np.unique(k)) != 1:
        raise DatasetError("zoo.parquet rows do not hold every core count for every group")
    K = int(k[0])
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


#: What `train` fits on a part's own measurements: trees on the layer-sum prior (textbook terms per op
#: class with constants fitted to the labels; the calibrated roofline's terms came from our simulator),
#: blended with trees on the datasheet estimate, and a measured kernel answered with its measurement
#: (docs/costmodel.md, "Which prior on a measured part"), in trees shallower and with bigger leaves
#: than on simulated labels: measured labels are fewer and noisy (docs/costmodel.md, "Tree depth on
#: measured labels"). Parameters the caller passes win (`refit`, trees grown again on every row, is
#: more accurate and plans no better: docs/costmodel.md, "Trees refitted on every row").
MEASURED_PARAMS = {"bags": 0, "memory": True, "prior": "layersum", "featurizer": "layersum", "blend": "datasheet",
                   "max_depth": 6, "min_child_weight": 10.0, "repeats": 0}


def fit_params(measured: bool, params: dict) -> dict:
    """The LatencyModel parameters `train` fits with: MEASURED_PARAMS on a part's measurements, the
    caller's `params` winning."""
    return {**MEASURED_PARAMS, **params} if measured else dict(params)


#: Folds of the cross-validated accuracy `train` reports on a part's measurements (`cv=None`): one
#: held-out split of 15% of the groups scores ~160 rows of a CPU dataset, and its figure moved by 5
#: points from split to split (docs/costmodel.md, "Cross-validated accuracy"); K folds score every row.
CV_FOLDS = 5
#: A measured dataset with more rows than this is cross-validated only when asked (each fold is a full fit).
CV_AT_MOST = 5_000


def timing_agreement(X: np.ndarray, y: np.ndarray) -> dict | None:
    """How often the first two labels of a kernel timed twice or more (the same feature row) are
    within 10% of each other, and of how many such kernels; None without any. A held-out label is
    a timing too: this is what the timer alone lets a prediction of one reach (docs/costmodel.md,
    "Timing on the CPU")."""
    d = first_differences(logs_by_key(X, np.log(y)))
    if not len(d):
        return None
    return {"within10": float(np.mean(np.abs(np.expm1(d)) <= 0.10)), "n": len(d)}


def group_folds(groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Each row's fold in 0..k-1, every row of a group in the same fold, the groups dealt at random."""
    uniq, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    deal = np.random.default_rng(seed).permutation(len(uniq)) % k
    return deal[codes]


def cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int, seed: int = 0,
                   progress: bool = False, **params) -> np.ndarray:
    """Out-of-fold predictions (ms): each fold's rows predicted by a LatencyModel with `params` fitted
    on the other folds alone (its own early-stopping split drawn from them, its memory unused, one
    fit where `params` ask for repeats: a little pessimistic, at a quarter of the cost), so every row
    is scored as a group never trained on."""
    from tqdm import tqdm

    groups = np.asarray(groups)
    fold = group_folds(groups, k, seed)
    pred = np.empty(len(y))
    for f in tqdm(range(k), desc="cross-validate", unit="fold", disable=not progress):
        tr = fold != f
        model = LatencyModel(random_state=seed, **{**params, "verbose": False, "repeats": 1})
        model.fit(X[tr], y[tr], groups=groups[tr])
        pred[~tr] = model.predict_own(X[~tr])
    return pred


def _by_kind(rows: pd.DataFrame, pred: np.ndarray, true: np.ndarray) -> dict | None:
    """Accuracy per row kind (a network's kernels and synthetic groups are not alike), if several."""
    if "kind" not in rows or rows["kind"].nunique() < 2:
        return None
    kind = rows["kind"].astype(str).to_numpy()
    return {k: accuracy(pred[kind == k], true[kind == k]) for k in sorted(set(kind))}


@dataclass
class TrainResult:
    """A trained model, its meta.json content, and its predictions on the zoo rows (if the dataset has them)."""

    model: LatencyModel
    meta: dict
    zoo: pd.DataFrame | None  # the evaluation rows, and the model's predictions for them
    zoo_pred: np.ndarray | None


#: Files to publish next to the model (name -> bytes), made from the result (e.g. a plot).
ExtraFiles = Callable[[TrainResult], dict[str, bytes]]


def train(hw: HardwareConfig, data_dir: str | Path, out_dir: str | Path, seed: int = 0, scheduler: str | None = None,
          progress: bool = False, extras: ExtraFiles | None = None, cv: int | None = 0, **params) -> TrainResult:
    """Fit on `data_dir`, evaluate on its zoo.parquet, publish to `out_dir` (model, meta.json and
    whatever `extras` makes) as one unit, under a lock on `out_dir`. `progress` draws a bar. With `cv`
    folds (None: CV_FOLDS on a measured dataset of at most CV_AT_MOST rows, else none) meta.json
    also holds the accuracy of `cross_validate` over every row."""

    check_folder_output(out_dir, MODEL, inputs=[data_dir])
    if cv is not None and (cv < 0 or cv == 1):
        raise AutotuneError(f"cross-validation needs 2 or more folds (or 0 for none), got {cv}")
    with FolderLock(Path(out_dir)):
        return _train(hw, data_dir, out_dir, seed, scheduler, progress, extras, params, cv)


def remember(hw: HardwareConfig, data_dir: str | Path, model_dir: str | Path) -> LatencyModel:
    """Give the model in `model_dir` a memory of every row now in `data_dir` without refitting its
    trees (LatencyModel.remember), and publish it again; meta.json says how many rows it remembers."""

    with FolderLock(Path(model_dir)):
        model = LatencyModel.load(model_dir, hw)
        ds = read_dataset(data_dir, hw)
        X, _ = dataset_features(ds, hw, model.featurizer)
        model.remember(X, ds.rows["latency_ms"].to_numpy(np.float64))
        _block_unrunnable(model, ds, hw)
        meta = {k: v for k, v in model.meta_.items() if k != "meta_sha256"}
        meta.update({"memory_rows": len(X), "memory_dataset_digest": ds.digest})
        model.save(model_dir, meta)
    return model


def _block_unrunnable(model: LatencyModel, ds, hw: HardwareConfig) -> None:
    """Give the model's memory the dataset's pairs the part could not run (none without a memory)."""
    if ds.unrunnable is not None and getattr(model, "memory_", None) is not None:
        model.block(compute_features(ds.unrunnable, hw, featurizer=model.featurizer))


def _train(hw, data_dir, out_dir, seed, scheduler, progress, extras, params, cv) -> TrainResult:
    ds = read_dataset(data_dir, hw)
    if ds.rows["group_id"].nunique() < 2:
        raise DatasetError(f"dataset in {data_dir}/ holds one group; training needs two or more (the trees are "
                           "checked on groups held out from them)")
    measured = ds.manifest.get("source") == "measured"
    params = fit_params(measured, params)
    if cv is None:
        cv = CV_FOLDS if measured and len(ds.rows) <= CV_AT_MOST else 0
    model = LatencyModel(random_state=seed, verbose=progress, **params)
    X, Xz = dataset_features(ds, hw, model.featurizer)
    y = ds.rows["latency_ms"].to_numpy(np.float64)
    groups = ds.rows["group_id"].to_numpy()
    t0 = time.perf_counter()
    if scheduler:
        with connect(scheduler) as client:
            fit_on_cluster(model, X, y, groups, client)
    else:
        model.fit(X, y, groups=groups)
    fit_s = time.perf_counter() - t0
    _block_unrunnable(model, ds, hw)
    _, va = model.split(len(X), groups)
    pv = model.val_pred_  # the split fit's, from before any refit on every row
    metrics: dict = {"fit_s": round(fit_s, 2), "train_rows": len(X), "best_iteration": model.best_iteration_,
                     "validation": accuracy(pv, y[va])}
    by = _by_kind(ds.rows.iloc[va], pv, y[va])
    if by:
        metrics["validation_by_kind"] = by
    n_groups = ds.rows["group_id"].nunique()
    if cv and n_groups < cv:
        metrics["cross_validation_skipped"] = f"{n_groups} groups cannot fill {cv} folds"
    elif cv:
        oof = cross_validate(X, y, groups, cv, seed, progress, **params)
        metrics["cross_validation"] = {**accuracy(oof, y), "folds": cv}
        by = _by_kind(ds.rows, oof, y)
        if by:
            metrics["cross_validation_by_kind"] = by
    agree = timing_agreement(X, y)
    if agree is not None:
        metrics["timing_agreement"] = agree
    zp = None
    if Xz is not None:
        assert ds.zoo is not None  # zoo features come from the zoo rows
        zp = model.predict(Xz)
        metrics["zoo"] = zoo_metrics(ds.zoo, zp)
    meta = provenance(hw.name, hw.hash, data_dir, len(X), seed, ds.manifest.get("generator_version"), metrics,
                      dataset_digest=ds.digest)
    res = TrainResult(model, meta, ds.zoo, zp)
    model.save(out_dir, meta, extras(res) if extras is not None else None)
    return res


