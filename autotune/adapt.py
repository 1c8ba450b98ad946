"""Few-shot adaptation: the universal model specialised to one part with a few of its measurements.

Continued boosting: the universal model's trees stay, and small trees fitted to the part's labels
correct its log latency (the residual of the universal prediction). How many trees, and how deep,
is chosen by cross-validation over the part's groups, so a budget too small to teach anything adds
none and the result is never worse on held-out groups than the universal model (up to CV noise).
The adapted model is an ordinary one-part LatencyModel (one XGBoost file, one meta.json).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import xgboost as xgb
from sklearn.model_selection import GroupKFold

from .costmodel import LatencyModel

#: The correction trees: small and strongly regularised, since a few hundred labels must not undo
#: what the universal model learned from the family.
ADAPT_PARAMS = {"objective": "reg:pseudohubererror", "huber_slope": 0.1, "eta": 0.1, "subsample": 0.8,
                "min_child_weight": 3.0, "lambda": 5.0, "tree_method": "hist", "eval_metric": "mae"}
DEPTHS = (2, 4)
MAX_ROUNDS = 300
FOLDS = 5


@dataclass
class AdaptResult:
    """The adapted model and what cross-validation found (log-latency MAE on held-out groups)."""

    model: LatencyModel
    rounds: int
    depth: int
    cv_mae_universal: float  # the universal model alone
    cv_mae_adapted: float  # with the chosen correction


def _train(base: xgb.Booster, X: np.ndarray, logy: np.ndarray, margin: np.ndarray | None, depth: int,
           rounds: int, seed: int, evals: tuple | None = None) -> tuple[xgb.Booster, list[float]]:
    d = xgb.DMatrix(X, label=logy, base_margin=margin)
    params = {**ADAPT_PARAMS, "max_depth": depth, "seed": seed, "nthread": 0}
    hist: dict = {}
    ev = []
    if evals is not None:
        Xv, yv, mv = evals
        ev = [(xgb.DMatrix(Xv, label=yv, base_margin=mv), "val")]
    out = xgb.train(params, d, num_boost_round=rounds, xgb_model=base, evals=ev, evals_result=hist,
                    verbose_eval=False)
    return out, list(hist.get("val", {}).get("mae", []))


def adapt(universal: LatencyModel, X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0) -> AdaptResult:
    """Continued boosting of `universal` on a part's rows X (universal features) and latencies y
    (ms); `groups` keeps a group's rows in one CV fold."""
    X = np.asarray(X, dtype=np.float32)
    logy = np.log(np.asarray(y, dtype=np.float64))
    base = universal.booster_[: universal.best_iteration_ + 1]
    margin = universal._margin(X)
    pred0 = np.log(universal.predict(X))
    groups = np.asarray(groups)
    n_folds = min(FOLDS, len(np.unique(groups)))
    best = (float(np.mean(np.abs(pred0 - logy))), 0, DEPTHS[0])
    if n_folds >= 2:
        folds = list(GroupKFold(n_splits=n_folds).split(X, groups=groups))
        base0 = float(np.mean([np.mean(np.abs(pred0[va] - logy[va])) for _, va in folds]))
        best = (base0, 0, DEPTHS[0])
        for depth in DEPTHS:
            curves = []
            for tr, va in folds:
                mv = None if margin is None else margin[va]
                _, curve = _train(base, X[tr], logy[tr], None if margin is None else margin[tr], depth, MAX_ROUNDS,
                                  seed, (X[va], logy[va], mv))
                curves.append(curve)
            mean = np.mean(np.asarray(curves), axis=0)
            r = int(np.argmin(mean))
            if mean[r] < best[0]:
                best = (float(mean[r]), r + 1, depth)
        cv_universal = base0
    else:
        cv_universal = best[0]
    mae, rounds, depth = best
    model = copy.copy(universal)
    model.meta_ = {}
    if rounds > 0:
        booster, _ = _train(base, X, logy, margin, depth, rounds, seed)
    else:
        booster = base
    model.booster_ = booster
    model.best_iteration_ = booster.num_boosted_rounds() - 1
    return AdaptResult(model, rounds, depth, cv_universal, mae)


def adapt_for(hw, universal: LatencyModel, budget: int, data_dir, out_dir, seed: int = 0, sampling: str = "sobol",
              measured: bool = False, progress: bool = False) -> dict:
    """Spend `budget` labels on `hw` and publish the adapted model to `out_dir`. The labels are
    simulated into `data_dir` (chosen by `sampling`, as `synth` does), or with `measured` read from
    the dataset already there (e.g. made by import-profile), its first `budget` labels."""
    from pathlib import Path

    from .dataset import read_dataset
    from .errors import AutotuneError
    from .fileio import FolderLock
    from .universal import device_rows

    if measured:
        data = read_dataset(data_dir, hw)
        source = f"measured, from {data_dir}/"
    else:
        if not hw.has_device:
            raise AutotuneError(f"{hw.name} has no device: section, so its labels cannot be simulated: measure "
                                "it (export-groups, measure, import-profile) and pass the dataset with --data")
        from synth.pipeline import run

        run(hw, data_dir, budget, seed, force=True, progress=progress, zoo_models=[], sampling=sampling)
        data = read_dataset(data_dir, hw)
        source = f"simulated into {data_dir}/, {sampling} sampling"
    X, y = device_rows(data, hw)
    X, y, groups = X[:budget], y[:budget], data.rows["group_id"].to_numpy()[:budget]  # profiles hold more
    res = adapt(universal, X, y, groups, seed)
    umeta = getattr(universal, "meta_", {})
    meta = {"hardware": hw.name, "hardware_hash": hw.hash, "dataset": str(data_dir), "dataset_rows": len(y),
            "labels": len(y), "seed": seed, "generator_version": umeta.get("generator_version"),
            "adapted_from": {"family": umeta.get("family", {}).get("name"),
                             "family_hash": umeta.get("family", {}).get("hash"),
                             "model_sha256": umeta.get("model_sha256")},
            "adapt": {"rounds": res.rounds, "depth": res.depth, "cv_mae_log_universal": res.cv_mae_universal,
                      "cv_mae_log_adapted": res.cv_mae_adapted},
            "metrics": {"fit_s": 0.0, "train_rows": len(y), "best_iteration": res.model.best_iteration_}}
    with FolderLock(Path(out_dir)):
        res.model.save(out_dir, meta)
    return {"labels": len(y), "source": source, "rounds": res.rounds, "depth": res.depth,
            "cv_mae_universal": res.cv_mae_universal, "cv_mae_adapted": res.cv_mae_adapted, "model": res.model}
