"""Boosters made and read one way each: `boost` is the one training path of every tree ensemble the
cost model fits (a part's model, the universal model's extra trees, adaptation and its members), and
`checked_booster_file` the one check: an XGBoost file is parsed only after its bytes match the sha256
its meta.json records (a damaged file can crash XGBoost's native loader), with one clear error otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import xgboost as xgb

from autotune.errors import ModelFileError

#: A validation split: feature rows, their target (log latency or a log correction) and base margin (or None).
Split = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def boost(params: dict, train: Split, rounds: int, val: Split | None = None, early_stopping: int | None = None,
          start: xgb.Booster | None = None, progress: bool = False) -> tuple[xgb.Booster, list[float]]:
    """Fit `rounds` trees of XGBoost `params` to `train` (continuing the trees `start`, if given).
    With `val`, also the validation error after each round (params' eval_metric, e.g. MAE of the
    log); with `early_stopping` as well, boosting stops once that many rounds did not improve it and
    the booster comes back cut at its best round. `progress` draws a bar. Returns (booster, curve)."""
    def dmatrix(split: Split) -> xgb.DMatrix:
        X, target, margin = split
        return xgb.DMatrix(X, label=target, base_margin=margin)

    history: dict = {}
    booster = xgb.train(params, dmatrix(train), num_boost_round=rounds, xgb_model=start,
                        evals=[] if val is None else [(dmatrix(val), "val")], evals_result=history,
                        early_stopping_rounds=early_stopping if val is not None else None, verbose_eval=False,
                        callbacks=[progress_callback(rounds)] if progress else None)
    curve = [float(v) for v in next(iter(history.get("val", {}).values()), [])]
    if early_stopping is not None and val is not None:
        booster = booster[: int(booster.best_iteration) + 1]
    return booster, curve


def progress_callback(total: int):
    """An XGBoost callback drawing a tqdm bar over boosting rounds, with the validation error."""
    from tqdm import tqdm
    from xgboost.callback import TrainingCallback

    class Bar(TrainingCallback):
        def before_training(self, model):
            self.bar = tqdm(total=total, desc="boosting", unit="round", leave=False)
            return model

        def after_iteration(self, model, epoch, evals_log):
            self.bar.update(1)
            val = evals_log.get("val", {}).get("mae")
            if val:
                self.bar.set_postfix(val_mae_log=f"{val[-1]:.4f}", refresh=False)
            return False

        def after_training(self, model):
            self.bar.close()
            return model

    return Bar()


def checked_booster_file(path: Path, digest: str | None, retrain: str, owner: str = "its meta.json") -> xgb.Booster:
    """The booster in `path`, checked against the sha256 `digest` that `owner` records before
    XGBoost reads a byte; `retrain` says what to do about a bad one."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read {path}: {err.strerror or err} ({retrain})") from None
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ModelFileError(f"{path} is corrupted or does not belong to {owner} (its digest does not match) "
                             f"({retrain})")
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError:
        raise ModelFileError(f"{path} is corrupted or not an XGBoost model ({retrain})") from None
    return booster


def read_boosters(meta: dict, folder: Path, names: tuple[str, ...], retrain: str) -> dict[str, xgb.Booster]:
    """The boosters `names` in `folder`, each checked against the digest `meta["sha256"]` records."""
    out = {}
    for name in names:
        try:
            digest = meta["sha256"][name]
        except (KeyError, TypeError):
            raise ModelFileError(f"{folder}/meta.json lists no digest of {name} ({retrain})") from None
        out[name] = checked_booster_file(folder / name, digest, retrain)
    return out
