"""LatencyModel: XGBoost regression of log latency per (layer group, core count), scikit-learn style.

Saved as XGBoost's own format (`model.ubj`) plus `meta.json`; loading never runs code (no pickle)
and refuses a model made for other hardware or another feature schema.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import GroupShuffleSplit

from .errors import ModelFileError
from .fileio import publish_folder, recover_folder

MODEL_FILE = "model.ubj"
META_FILE = "meta.json"


class LatencyModel(BaseEstimator, RegressorMixin):
    """A prior times a learned correction: gradient-boosted trees on log(latency_ms / prior).

    `prior` chooses the base margin each row starts from:
    - "calibrated" (default): a roofline with fixed costs whose device constants are fitted to
      the training labels first (autotune/calibration.py);
    - "datasheet": the features' datasheet estimate (`log_prior_ms`) as it is;
    - "none": plain trees on log latency.
    The trees then learn what the prior misses. `feature_names` names the columns of X (default:
    this autotune's FEATURE_NAMES); early stopping uses a validation split that keeps all rows of
    a group on one side.
    """

    def __init__(
        self,
        n_estimators: int = 3000,
        max_depth: int = 10,
        learning_rate: float = 0.05,
        subsample: float = 0.9,
        colsample_bytree: float = 1.0,
        min_child_weight: float = 2.0,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 100,
        val_fraction: float = 0.15,
        prior: str = "calibrated",
        feature_names: list[str] | None = None,
        objective: str = "reg:squarederror",
        random_state: int = 0,
        n_jobs: int | None = None,
        verbose: bool = False,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.val_fraction = val_fraction
        self.prior = prior
        self.feature_names = feature_names
        self.objective = objective
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _xgb_params(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "seed": self.random_state,
            "nthread": self.n_jobs or 0,
            "eval_metric": "mae",
        }

    def split(self, n: int, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Train/validation row indices; all rows of one group land on the same side."""
        groups = np.arange(n) if groups is None else np.asarray(groups)
        gss = GroupShuffleSplit(n_splits=1, test_size=self.val_fraction, random_state=self.random_state)
        tr, va = next(gss.split(np.zeros(n), groups=groups))
        return tr, va

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            callbacks: list | None = None, client=None) -> LatencyModel:
        """Fit on features X and latency y (ms); `groups` keeps a group's rows on one side of the split.

        With a dask.distributed `client`, boosting runs on the cluster through xgboost.dask.
        """
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        if len(X) == 0:
            raise ValueError("cannot fit a latency model on an empty dataset")
        if np.any(y <= 0):
            raise ValueError("latencies must be positive")
        tr, va = self.split(len(X), groups)
        self.calibration_ = None
        if self.prior == "calibrated":
            from .calibration import fit_roofline

            self.calibration_ = fit_roofline(self._parts(X[tr]), y[tr] * 1e3, seed=self.random_state)
        if client is not None:
            self.booster_, evals_result = self._fit_dask(client, X, y, tr, va)
        else:
            margin = self._margin(X)
            dtr = xgb.DMatrix(X[tr], label=np.log(y[tr]), base_margin=None if margin is None else margin[tr])
            dva = xgb.DMatrix(X[va], label=np.log(y[va]), base_margin=None if margin is None else margin[va])
            evals_result = {}
            self.booster_ = xgb.train(
                self._xgb_params(), dtr, num_boost_round=self.n_estimators, evals=[(dtr, "train"), (dva, "val")],
                early_stopping_rounds=self.early_stopping_rounds, evals_result=evals_result,
                verbose_eval=self.verbose, callbacks=callbacks,
            )
        self.best_iteration_ = int(self.booster_.best_iteration)
        self.n_features_in_ = X.shape[1]
        self.val_mae_log_ = float(evals_result["val"]["mae"][self.best_iteration_])
        return self

    def _names(self, n_cols: int) -> list[str]:
        from .features import FEATURE_NAMES

        names = list(self.feature_names) if self.feature_names is not None else list(FEATURE_NAMES)
        if len(names) != n_cols:
            raise ValueError(f"X has {n_cols} columns but {len(names)} feature names")
        return names

    def _parts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        from .calibration import COLUMNS, columns_to_parts

        names = self._names(X.shape[1])
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise ValueError(f"prior='calibrated' needs feature {missing[0]!r}")
        return columns_to_parts(X, {c: names.index(c) for c in COLUMNS})

    def _margin(self, X: np.ndarray) -> np.ndarray | None:
        """Each row's base margin: the natural log of the prior's latency (ms), or None."""
        if self.prior == "none":
            return None
        if self.prior == "calibrated":
            return np.log(np.maximum(self.calibration_.predict_us(self._parts(X)), 1e-9) / 1e3)
        if self.prior == "datasheet":
            from .features import PRIOR_FEATURE

            names = self._names(X.shape[1])
            if PRIOR_FEATURE not in names:
                raise ValueError(f"prior='datasheet' needs feature {PRIOR_FEATURE!r}")
            return X[:, names.index(PRIOR_FEATURE)].astype(np.float64)
        raise ValueError(f"prior must be 'calibrated', 'datasheet' or 'none', not {self.prior!r}")

    def prior_predict(self, X: np.ndarray) -> np.ndarray | None:
        """The prior's latency (ms) of each row, before the trees' correction (None without a prior)."""
        m = self._margin(np.asarray(X, dtype=np.float32))
        return None if m is None else np.exp(m)

    def _fit_dask(self, client, X: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray):
        import dask.array as da
        from xgboost import dask as dxgb

        chunk = max(1, len(tr) // max(1, len(client.scheduler_info().get("workers", {})) or 1))
        margin = self._margin(X)

        def dmat(idx):
            bm = None if margin is None else da.from_array(margin[idx], chunks=chunk)
            return dxgb.DaskDMatrix(client, da.from_array(X[idx], chunks=(chunk, -1)),
                                    da.from_array(np.log(y[idx]), chunks=chunk), base_margin=bm)

        dtr, dva = dmat(tr), dmat(va)
        out = dxgb.train(client, self._xgb_params(), dtr, num_boost_round=self.n_estimators,
                         evals=[(dtr, "train"), (dva, "val")], early_stopping_rounds=self.early_stopping_rounds,
                         verbose_eval=self.verbose)
        return out["booster"], out["history"]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted latency in ms for each feature row."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features per row, got shape {X.shape}")
        if len(X) == 0:
            return np.zeros(0)
        log_ms = self.booster_.inplace_predict(X, iteration_range=(0, self.best_iteration_ + 1),
                                               base_margin=self._margin(X))
        return np.exp(np.asarray(log_ms, dtype=np.float64))

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: str | Path, meta: dict[str, Any], extra_files: dict[str, bytes] | None = None) -> Path:
        """Publish model.ubj and meta.json (hyper-parameters, library versions, the model's digest
        and meta's own checksum added), with `extra_files`, as one unit (`fileio.publish_folder`)."""
        raw = bytes(self.booster_.save_raw(raw_format="ubj"))
        full = dict(meta)
        full.update({
            "best_iteration": self.best_iteration_,
            "n_features": self.n_features_in_,
            "params": self.get_params(),
            "calibration": self.calibration_.to_dict() if self.calibration_ is not None else None,
            "val_mae_log": getattr(self, "val_mae_log_", None),
            "versions": library_versions(),
            "model_sha256": hashlib.sha256(raw).hexdigest(),
        })
        full = json.loads(json.dumps(full))  # as it will read back (int keys become strings)
        full["meta_sha256"] = _meta_checksum(full)
        files = {MODEL_FILE: raw, META_FILE: (json.dumps(full, indent=2) + "\n").encode(), **(extra_files or {})}
        return publish_folder(folder, files)

    @classmethod
    def load(cls, folder: str | Path, hw=None, feature_version: int | None = None,
             feature_names: list[str] | None = None) -> LatencyModel:
        """Load a saved model; refuse one made for other hardware or another feature schema."""
        folder = Path(folder)
        retrain = f"retrain it with `make train HW={hw.name}`" if hw is not None else "retrain it with `make train`"
        try:
            recover_folder(folder)
        except OSError:
            pass  # a read-only place: load what is there
        meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
        if not meta_path.is_file() or not model_path.is_file():
            raise ModelFileError(f"no trained model in {folder}/ ({retrain})")
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ModelFileError(f"{meta_path} is corrupted: not a JSON object ({retrain})") from None
        except OSError as err:
            raise ModelFileError(f"cannot read {meta_path}: {err.strerror or err}") from None
        if meta.get("meta_sha256") != _meta_checksum(meta):
            raise ModelFileError(f"{meta_path} is corrupted or edited: its checksum does not match ({retrain})")
        if hw is not None and meta.get("hardware_hash") != hw.hash:
            raise ModelFileError(
                f"model in {folder}/ was trained for hardware {meta.get('hardware')!r} "
                f"(hash {meta.get('hardware_hash')}), not {hw.name!r} (hash {hw.hash}); {retrain}")
        if feature_version is not None and meta.get("feature_version") != feature_version:
            raise ModelFileError(
                f"model in {folder}/ uses feature schema v{meta.get('feature_version')}, this version of autotune "
                f"computes v{feature_version}; {retrain}")
        if feature_names is not None and meta.get("feature_names") != list(feature_names):
            raise ModelFileError(f"model in {folder}/ lists other feature names than this autotune; {retrain}")
        try:
            raw = model_path.read_bytes()
        except OSError as err:
            raise ModelFileError(f"cannot read {model_path}: {err.strerror or err}") from None
        # checked before XGBoost parses a byte: a damaged file can crash its native loader
        if hashlib.sha256(raw).hexdigest() != meta.get("model_sha256"):
            raise ModelFileError(f"{model_path} is corrupted or does not belong to {meta_path} "
                                 f"(its digest does not match) ({retrain})")
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError:
            raise ModelFileError(f"{model_path} is corrupted or not an XGBoost model ({retrain})") from None
        params = {k: v for k, v in meta.get("params", {}).items() if k in cls().get_params()}
        model = cls(**params)
        model.booster_ = booster
        try:
            model.best_iteration_ = int(meta["best_iteration"])
            model.n_features_in_ = int(meta["n_features"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{meta_path} is missing best_iteration/n_features ({retrain})") from None
        if booster.num_features() != model.n_features_in_:
            raise ModelFileError(f"{model_path} and {meta_path} disagree on the feature count ({retrain})")
        model.val_mae_log_ = meta.get("val_mae_log")
        model.calibration_ = None
        if model.prior == "calibrated":
            from .calibration import RooflineFit

            try:
                model.calibration_ = RooflineFit.from_dict(meta["calibration"])
            except (KeyError, TypeError, ValueError):
                raise ModelFileError(
                    f"{meta_path} lacks a valid calibration for prior='calibrated' ({retrain})") from None
        model.meta_ = meta
        return model


def _meta_checksum(meta: dict) -> str:
    """SHA-256 of meta.json's content without its own checksum field (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    import sklearn

    return {"python": platform.python_version(), "xgboost": xgb.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__}
