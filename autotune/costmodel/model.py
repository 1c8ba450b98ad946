"""LatencyModel: XGBoost regression of log latency per (layer group, core count), scikit-learn style.

Saved as XGBoost's own format (`model.ubj`) plus `meta.json` (autotune/costmodel/model_io.py); loading
never runs code (no pickle) and refuses a model made for other hardware or by another featurizer
version. Training on a dask cluster is `fit_on_cluster` (a runtime object has no place in `fit`'s
signature).
"""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.model_selection import GroupShuffleSplit
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from autotune.costmodel.boosters import boost
from autotune.costmodel.calibration import COLUMNS, columns_to_parts, fit_roofline
from autotune.costmodel.features import COVERAGE_FEATURES, FEATURE_NAMES, LAYER_SUM, PRIOR_FEATURE, get_featurizer
from autotune.costmodel.layer_sum import LayerSumFit, fit_layer_sum
from autotune.costmodel.members import COMBINE, BlendMember, Predictor, bagged_members, combine_rule, repeated_members
from autotune.costmodel.memory import MeasuredMemory
from autotune.costmodel.model_io import coverage_json, read_model, write_model

#: Models in a bagged ensemble when `bags=0` ("auto") and the labels are few (fewer rows than
#: BAG_BELOW): the model plus BAGS - 1 members fitted to bootstrap draws of the groups.
BAGS = 5
BAG_BELOW = 50_000
#: Fits a model averages when `repeats=0` ("auto") and the labels are few (fewer rows than
#: REPEAT_BELOW): with 2,000 measured labels the mean of four seeds' fits has 0.5-3 points more of
#: the zoo's unmeasured pairs within 10% than one fit (docs/costmodel.md, "Four fits, not one");
#: past a few thousand labels one fit's seed matters less and four fits cost more.
REPEATS = 4
REPEAT_BELOW = 5_000
#: `repeats` when none is asked for: one fit.
ONE_FIT = 1
#: Below this many training rows XGBoost runs one thread unless `n_jobs` says otherwise: threads cost
#: more than they save on small fits, many times more on a busy machine.
ONE_THREAD_BELOW = 20_000
MAX_BAGS = 32
#: The quantile of the validation error that `val_q90_log_` records.
VAL_TAIL = 0.9
#: Training groups a model keeps to tell which kernels lie outside its data (LatencyModel.outside).
COVERAGE_POINTS = 2000


def fit_repeats(repeats: int, n_rows: int) -> int:
    """How many fits a model with `repeats` makes on n rows: `repeats`, or for 0 ("auto") REPEATS
    below REPEAT_BELOW rows and one above."""
    return repeats or (REPEATS if n_rows < REPEAT_BELOW else 1)


class LatencyModel(RegressorMixin, BaseEstimator):
    """A prior times a learned correction: gradient-boosted trees on log(latency_ms / prior).

    An estimator on a feature matrix X (rows from the model's `featurizer`, see
    `features.get_featurizer`) and positive latencies y in ms. `prior` chooses the base margin each
    row starts from, computed from columns of X:
    - "calibrated": a roofline with fixed costs whose device constants are fitted to the training
      labels first (autotune/costmodel/calibration.py);
    - "datasheet": the featurizer's datasheet estimate (`log_prior_ms`) as it is;
    - "layersum": textbook terms per op class summed over the group's layers, their constants
      fitted to the training labels first (autotune/costmodel/layer_sum.py; needs the "layersum"
      featurizer); what `train` uses on a measured part;
    - "none": plain trees on log latency;
    - "auto" (default): "calibrated" when X has the featurizer's columns, else "none".
    Early stopping uses a validation split that keeps all rows of a group on one side.
    `bags` > 1 fits that many models in all, the others on bootstrap draws of the groups, and
    predicts their consensus (members.py): averaging cuts the variance a few labels leave, which
    the planner's search otherwise exploits. 0 ("auto") bags BAGS models below BAG_BELOW rows;
    `train` asks for it on measured datasets (training.py). `memory` answers a feature row seen
    in training with its measured latency (autotune/costmodel/memory.py); `train` turns it on for measured
    datasets too. `repeats` > 1 fits the model that many times to every row, each with its own
    seed (so its own validation split stops the boosting and its own subsample grows the trees),
    and predicts their mean in log: where labels are few, which rows one seed holds out and draws
    moves each kernel's answer, and the mean of the fits errs less than any one of them. 0
    ("auto") fits REPEATS below REPEAT_BELOW rows; `train` asks for it on measured datasets.
    `blend="datasheet"` fits a second predictor, trees on the datasheet estimate over the
    datasheet columns, on the same split, and predicts the mean of the two in log: two priors err
    differently, so the blend errs less than either where labels are few (`train` asks for it on
    measured datasets). A model with bagged members fits no blend.
    """

    _parameter_constraints: dict = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_depth": [Interval(Integral, 1, 30, closed="both")],
        "learning_rate": [Interval(Real, 0, 1, closed="right")],
        "subsample": [Interval(Real, 0, 1, closed="right")],
        "colsample_bytree": [Interval(Real, 0, 1, closed="right")],
        "min_child_weight": [Interval(Real, 0, None, closed="left")],
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
        "early_stopping_rounds": [Interval(Integral, 1, None, closed="left")],
        "val_fraction": [Interval(Real, 0, 1, closed="neither")],
        "prior": [StrOptions({"auto", "calibrated", "datasheet", "layersum", "none"})],
        "featurizer": [str],
        "objective": [StrOptions({"reg:squarederror", "reg:pseudohubererror", "reg:absoluteerror"})],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
        "n_jobs": [Interval(Integral, 0, None, closed="left"), None],
        "bags": [Interval(Integral, 0, MAX_BAGS, closed="both")],
        "blend": [StrOptions({"none", "datasheet"})],
        "repeats": [Interval(Integral, 0, MAX_BAGS, closed="both")],
        "memory": ["boolean"],
        "refit": ["boolean"],
        "verbose": ["boolean"],
    }

    # set by fit, load or assembled only; declared for type checkers, not class attributes
    n_features_in_: int
    coverage_: dict | None
    memory_: MeasuredMemory | None
    meta_: dict  # meta.json of a loaded model; {} after fit
    members_: list  # an adapted or bagged model's other predictors (members.py)
    combine_: str  # how its prediction and theirs combine (members.COMBINE)
    adapt_trees_: xgb.Booster | None  # a universal model's EXTRA_TREES (load only)
    probe_trees_: xgb.Booster | None
    layer_sum_: LayerSumFit | None  # the layer-sum prior's constants (prior "layersum")
    val_pred_: np.ndarray  # the validation split's predictions (ms) when fitted, before any refit (fit only)

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
        prior: str = "auto",
        featurizer: str = "datasheet",
        objective: str = "reg:squarederror",
        random_state: int = 0,
        n_jobs: int | None = None,
        bags: int = 1,
        blend: str = "none",
        repeats: int = ONE_FIT,
        memory: bool = False,
        refit: bool = False,
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
        self.featurizer = featurizer
        self.objective = objective
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.bags = bags
        self.blend = blend
        self.repeats = repeats
        self.memory = memory
        self.refit = refit
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True  # latencies
        return tags

    def _xgb_params(self, n_rows: int | None = None) -> dict[str, Any]:
        """XGBoost's parameters; a fit of `n_rows` rows below ONE_THREAD_BELOW gets one thread by default."""
        small = n_rows is not None and n_rows < ONE_THREAD_BELOW
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
            "nthread": self.n_jobs or (1 if small else 0),
            "eval_metric": "mae",
        }

    def split(self, n: int, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Train/validation row indices; all rows of one group land on the same side."""
        groups = np.arange(n) if groups is None else np.asarray(groups)
        if len(np.unique(groups)) < 2:
            return np.arange(n), np.arange(n)  # one group: validate on the training rows
        gss = GroupShuffleSplit(n_splits=1, test_size=self.val_fraction, random_state=self.random_state)
        tr, va = next(gss.split(np.zeros(n), groups=groups))
        return tr, va

    def _prepare(self, X, y, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Validate, split, fit the prior: (X, log y, train rows, validation rows, base margin)."""
        self._forget()
        Xv, yv = validate_data(self, X, y, dtype=np.float32, y_numeric=True, ensure_min_samples=2)
        X, y = np.asarray(Xv), np.asarray(yv, dtype=np.float64)
        if np.any(y <= 0):
            raise ValueError("latencies must be positive (y > 0)")
        if groups is not None and len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries for {len(y)} rows")
        self.prior_ = self._resolve_prior(X.shape[1])
        self.coverage_ = self._coverage(X)
        tr, va = self.split(len(X), groups)
        self.calibration_ = None
        self.layer_sum_ = None
        if self.prior_ == "calibrated":
            self.calibration_ = fit_roofline(self._parts(X[tr]), y[tr] * 1e3, seed=self.random_state)
        elif self.prior_ == "layersum":
            self.layer_sum_ = fit_layer_sum(self._layer_sum_columns(X[tr]), y[tr], seed=self.random_state)
        return X, np.log(y), tr, va, self._margin(X)

    def _forget(self) -> None:
        """Drop every fitted attribute, so a refit (of a loaded, adapted or universal model) keeps
        nothing of the model it was: members, extra trees, memory, meta.json."""
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("_")]:
            delattr(self, name)
        self.meta_ = {}
        self.members_ = []
        self.combine_ = combine_rule([])
        self.adapt_trees_ = self.probe_trees_ = None
        self.layer_sum_ = None

    @classmethod
    def assembled(cls, like: LatencyModel, booster: xgb.Booster, calibration, val_mae_log: float,
                  members: list | None = None) -> LatencyModel:
        """A fitted one-part model made of fitted parts (what `adapt` builds from a universal model):
        `like`'s hyper-parameters, featurizer and prior kind, `booster` as its trees, `calibration` as
        its roofline (`like`'s if None), `val_mae_log` as its validation error and `members` to
        average with. The one way besides fit and load to a fitted model."""
        model = cls(**like.get_params())
        model._forget()
        model.n_features_in_ = like.n_features_in_
        model.prior_ = like.prior_
        model.calibration_ = calibration if calibration is not None else like.calibration_
        model.layer_sum_ = like.layer_sum_
        model.coverage_ = like.coverage_
        model.memory_ = None
        model.booster_ = booster
        model.best_iteration_ = booster.num_boosted_rounds() - 1
        model.val_mae_log_ = float(val_mae_log)
        model.val_q90_log_ = float("nan")  # `like`'s tail says nothing about these trees
        model.members_ = list(members or [])
        model.combine_ = combine_rule(model.members_)
        return model

    def _val_tail(self, Xva: np.ndarray, logy_va: np.ndarray) -> None:
        """The 90th percentile of the validation split's absolute log error (`val_q90_log_`): how far
        the trees can be off on a kernel they have not seen, as `planner.unmeasured_doubt` reads it;
        and the split's predictions (`val_pred_`, ms), which a refit on every row no longer makes."""
        self.val_pred_ = self.predict_own(Xva) if len(logy_va) else np.zeros(0)
        err = np.abs(np.log(self.val_pred_) - logy_va)
        self.val_q90_log_ = float(np.quantile(err, VAL_TAIL)) if len(err) else float("nan")

    def _finish(self, booster: xgb.Booster, val_curve: list[float]) -> LatencyModel:
        """Keep `booster` (cut at its best round) and its validation MAE there (`val_curve` per round)."""
        self.booster_ = booster
        self.best_iteration_ = booster.num_boosted_rounds() - 1
        self.val_mae_log_ = float(val_curve[self.best_iteration_])
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups: np.ndarray | None = None) -> LatencyModel:
        """Fit on feature rows X and latencies y (ms, positive); `groups` keeps a group's rows on one
        side of the validation split."""
        X, logy, tr, va, margin = self._prepare(X, y, groups)

        def rows(idx: np.ndarray):
            return X[idx], logy[idx], None if margin is None else margin[idx]

        self._finish(*boost(self._xgb_params(len(tr)), rows(tr), self.n_estimators, val=rows(va),
                            early_stopping=self.early_stopping_rounds, progress=self.verbose))
        bags = self.bags or (BAGS if len(logy) < BAG_BELOW else 1)
        bagged = bags > 1 and self.prior_ == "calibrated"
        repeats = 1 if bagged else self.repeats_for(len(logy))
        if bagged:
            self.members_ = bagged_members(self, X, np.exp(logy), groups, bags)
        elif self.blend != "none":
            self.members_ = [self._blend_member(X, np.exp(logy), groups, 0.5 / repeats)]
        if repeats > 1:
            self.members_ += repeated_members(self, X, np.exp(logy), groups, repeats)
        self.combine_ = combine_rule(self.members_)
        self._val_tail(X[va], logy[va])  # of what predict_own holds: the blend's member too, no bag
        if self.blend != "none" and self.members_ and len(va):
            # both were fitted on the training split: the validation split measures the blend honestly
            self.val_mae_log_ = float(np.mean(np.abs(np.log(self.val_pred_) - logy[va])))
        if self.refit and len(tr) < len(X):
            self._refit_every_row(X, logy, margin, len(tr))
        self.memory_ = MeasuredMemory.from_rows(X, logy) if self.memory else None
        return self

    def _refit_every_row(self, X: np.ndarray, logy: np.ndarray, margin: np.ndarray | None, n_train: int) -> None:
        """Grow the model's trees again on every row, the validation split's too, and so the blend's
        and the repeated fits' trees (a bag's own fit refits it on its draw): each as many rounds as
        early stopping chose, times the rows over the training split's. The priors and every validation
        figure stay the split's, an honest and slightly pessimistic account of the refitted trees
        (docs/costmodel.md, "Trees refitted on every row")."""
        params = self._xgb_params(len(X))
        scale = len(X) / n_train

        def grown(booster: xgb.Booster, seed: int, Xm: np.ndarray, m: np.ndarray | None) -> xgb.Booster:
            rounds = max(1, round(booster.num_boosted_rounds() * scale))
            return boost({**params, "seed": seed % 2**32}, (Xm, logy, m), rounds)[0]

        self.booster_ = grown(self.booster_[: self.best_iteration_ + 1], self.random_state, X, margin)
        self.best_iteration_ = self.booster_.num_boosted_rounds() - 1
        again = [(k, m) for k, m in enumerate(self.members_) if m.kind in ("blend", "repeat")]
        parts = self._parts(X) if again else {}
        for k, member in again:
            member.booster = grown(member.booster, self.random_state + 1 + k, X[:, : member.n_features],
                                   member.margin(X, parts))

    def repeats_for(self, n_rows: int) -> int:
        """How many times `fit` fits the model to n rows (`fit_repeats`), bagging aside."""
        return fit_repeats(self.repeats, n_rows)

    def _blend_member(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None, weight: float) -> Predictor:
        """Trees on the `blend` prior over the datasheet columns (which lead every featurizer's rows),
        fitted to the same rows and split as the model, weighing as much as the model's own trees
        (half of one fit)."""
        other = LatencyModel(**{**self.get_params(), "prior": self.blend, "featurizer": "datasheet", "blend": "none",
                                "bags": 1, "memory": False, "refit": False, "verbose": False})
        other.fit(X[:, :len(FEATURE_NAMES)], y, groups=groups)
        return BlendMember.of(other, weight, "member_blend.ubj")

    def _resolve_prior(self, n_cols: int) -> str:
        if self.prior != "auto":
            return self.prior

        names = get_featurizer(self.featurizer).names
        return "calibrated" if n_cols == len(names) and set(COLUMNS) <= set(names) else "none"

    def _coverage(self, X: np.ndarray) -> dict | None:
        """Where the training data lies, for `outside`: COVERAGE_FEATURES of its distinct groups
        (at most COVERAGE_POINTS, drawn with the model's seed), standardised, and the novelty
        threshold: the 99th percentile of each training group's distance to its nearest other one."""
        names = list(get_featurizer(self.featurizer).names)
        if len(names) != X.shape[1] or not set(COVERAGE_FEATURES) <= set(names):
            return None
        P = np.unique(X[:, [names.index(c) for c in COVERAGE_FEATURES]].astype(np.float64), axis=0)
        if len(P) > COVERAGE_POINTS:
            P = P[np.random.default_rng(self.random_state).choice(len(P), COVERAGE_POINTS, replace=False)]
        center, scale = P.mean(0), np.maximum(P.std(0), 1e-6)
        Z = np.round((P - center) / scale, 4)
        if len(Z) < 2:
            return None
        d = _nearest(Z, Z, exclude_self=True)
        return {"features": list(COVERAGE_FEATURES), "center": center.tolist(), "scale": scale.tolist(),
                "points": Z.tolist(), "threshold": float(np.quantile(d, 0.99)), "median": float(np.median(d))}

    def novelty(self, X) -> np.ndarray | None:
        """Each row's distance to the nearest training group (standardised COVERAGE_FEATURES) over
        the training groups' median distance to theirs: about 1 where the labels are, far above it
        where the model extrapolates. None for a model saved without coverage."""
        Q = self._standardised(X)
        if Q is None:
            return None
        cov = self.coverage_
        assert cov is not None  # _standardised answered
        return _nearest(Q, np.asarray(cov["points"])) / max(cov["median"], 1e-9)

    def _standardised(self, X) -> np.ndarray | None:
        """X's COVERAGE_FEATURES in the training groups' standard units (None without coverage)."""
        cov = getattr(self, "coverage_", None)
        if not cov:
            return None
        X = np.asarray(X, dtype=np.float64)
        names = self._names(X.shape[1])
        return (X[:, [names.index(c) for c in cov["features"]]] - np.asarray(cov["center"])) / np.asarray(cov["scale"])

    def outside(self, X) -> tuple[np.ndarray, dict[str, int]]:
        """Rows of X unlike every training group: farther from the nearest one (standardised
        COVERAGE_FEATURES) than 99% of the training groups are from theirs, so their latency is
        extrapolated. Returns the row mask and, per feature, how many of those rows lie beyond the
        training range of that feature. Nothing is outside for a model saved without coverage."""
        Q = self._standardised(X)
        if Q is None:
            return np.zeros(len(np.asarray(X)), dtype=bool), {}
        cov = self.coverage_
        assert cov is not None  # _standardised answered
        P = np.asarray(cov["points"])
        mask = _nearest(Q, P) > cov["threshold"]
        lo, hi = P.min(0), P.max(0)
        counts = {}
        for n, c in enumerate(cov["features"]):
            k = int((mask & ((Q[:, n] < lo[n]) | (Q[:, n] > hi[n]))).sum())
            if k:
                counts[c] = k
        return mask, counts

    def _names(self, n_cols: int) -> list[str]:
        names = list(get_featurizer(self.featurizer).names)
        if len(names) != n_cols:
            raise ValueError(f"X has {n_cols} columns, featurizer {self.featurizer!r} makes {len(names)}")
        return names

    def layer_sum_index(self, n_cols: int) -> list[int]:
        """Where rows of `n_cols` columns from the model's featurizer hold the LAYER_SUM columns."""
        names = self._names(n_cols)
        if not set(LAYER_SUM) <= set(names):
            raise ValueError(f"prior='layersum' reads the layer-sum columns; featurizer {self.featurizer!r} "
                             "has none (use featurizer='layersum')")
        return [names.index(c) for c in LAYER_SUM]

    def _layer_sum_columns(self, X: np.ndarray) -> np.ndarray:
        return X[:, self.layer_sum_index(X.shape[1])]

    def _parts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        names = self._names(X.shape[1])
        return columns_to_parts(X, {c: names.index(c) for c in COLUMNS})

    def _margin(self, X: np.ndarray, parts: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
        """Each row's base margin: the natural log of the prior's latency (ms), or None; `parts`, if
        given, are X's calibration columns (`_parts`), not computed again."""
        prior = getattr(self, "prior_", self.prior)
        if prior == "none":
            return None
        if prior == "calibrated":
            assert self.calibration_ is not None  # fitted with the prior
            return self.calibration_.log_ms(self._parts(X) if parts is None else parts)
        if prior == "layersum":
            assert self.layer_sum_ is not None  # fitted with the prior
            return self.layer_sum_.log_ms(self._layer_sum_columns(X))
        names = self._names(X.shape[1])
        return X[:, names.index(PRIOR_FEATURE)].astype(np.float64)

    def prior_predict(self, X) -> np.ndarray | None:
        """The prior's latency (ms) of each row, before the trees' correction (None without a prior)."""
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False, dtype=np.float32))
        m = self._margin(X)
        return None if m is None else np.exp(m)

    def predict_own(self, X) -> np.ndarray:
        """Latency (ms) from the model's own prior and trees, and a blend's member; without bagged
        or adapted members (they saw every group) and without the memory. Fitted on the training
        split alone unless `refit` grew the trees again on every row: fit keeps their predictions of
        the validation split from before that (`val_pred_`)."""
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False, dtype=np.float32))
        members = getattr(self, "members_", [])
        return np.exp(self._log_predict(X, [m for m in members if m.kind == "blend"], members))

    def predict(self, X) -> np.ndarray:
        """Predicted latency in ms for each feature row."""
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False, dtype=np.float32))
        members = getattr(self, "members_", [])  # an adapted, bagged or blended model's other predictors
        log_ms = self._log_predict(X, members, members)
        memory = getattr(self, "memory_", None)
        if memory is not None:
            hit, measured = memory.lookup(X)
            log_ms[hit] = measured
        return np.exp(log_ms)

    def _log_predict(self, X: np.ndarray, members: list, every: list) -> np.ndarray:
        """Log latency (ms) of rows X from the model's trees and `members` (some of `every` member,
        the model weighing what `every` leaves), combined by the model's rule."""
        parts = self._parts(X) if members else None  # the members' priors read them too
        log_ms = np.asarray(self.booster_.inplace_predict(X, iteration_range=(0, self.best_iteration_ + 1),
                                                          base_margin=self._margin(X, parts)), dtype=np.float64)
        if not members:
            return log_ms
        assert parts is not None
        weights = np.asarray([1 - sum(m.weight for m in every)] + [m.weight for m in members])
        logs = np.vstack([log_ms] + [m.log_predict(X, parts) for m in members])
        return COMBINE[self.combine_](weights, logs)

    def remember(self, X, y) -> LatencyModel:
        """Answer these measured rows (latency ms) from the memory, in place of the one `fit` made;
        the trees stay as fitted. For labels taken after training that must not move the plans."""
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False, dtype=np.float32))
        y = np.asarray(y, dtype=np.float64)
        if len(y) != len(X) or not len(y) or not (np.isfinite(y).all() and (y > 0).all()):
            raise ValueError("remember needs one positive, finite latency per feature row")
        self.memory_ = MeasuredMemory.from_rows(X, np.log(y))
        return self

    def block(self, X) -> LatencyModel:
        """Answer the kernels of feature rows X with +inf: the part could not run them, so no plan
        may hold them (one measured to run keeps its timing). Needs the memory (`memory=True`)."""
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False, dtype=np.float32))
        memory = getattr(self, "memory_", None)
        if memory is None:
            raise ValueError("block needs a model with a memory of its measurements (memory=True)")
        if len(X):
            self.memory_ = memory.block(X)
        return self

    def featurize_batch(self, batch, gidx: np.ndarray, cores: np.ndarray, hw) -> np.ndarray:
        """Feature rows of (group, cores) pairs by this model's featurizer."""
        return get_featurizer(self.featurizer).batch(batch, gidx, cores, hw)

    def predict_batch(self, batch, gidx: np.ndarray, cores: np.ndarray, hw) -> np.ndarray:
        """Predicted latency (ms) of (batch group gidx[i], cores[i]) pairs: featurize, then predict."""
        if len(gidx) == 0:
            return np.zeros(0)
        return self.predict(self.featurize_batch(batch, gidx, cores, hw))

    # -- persistence (the files: autotune/costmodel/model_io.py) ------------------------------
    def save(self, folder: str | Path, meta: dict[str, Any], extra_files: dict[str, bytes] | None = None) -> Path:
        """Publish model.ubj and meta.json (`meta` plus the model's own state), with `extra_files`
        and the members' files, as one unit."""
        check_is_fitted(self)
        f = get_featurizer(self.featurizer)
        state = {
            "best_iteration": self.best_iteration_,
            "n_features": self.n_features_in_,
            "params": self.get_params(),
            "prior": self.prior_,
            "featurizer": {"name": f.name, "version": f.version, "names": list(f.names)},
            "calibration": self.calibration_.to_dict() if self.calibration_ is not None else None,
            "layer_sum": self.layer_sum_.to_dict() if self.layer_sum_ is not None else None,
            "coverage": coverage_json(getattr(self, "coverage_", None)),
            "val_mae_log": getattr(self, "val_mae_log_", None),
            "val_q90_log": getattr(self, "val_q90_log_", None),
            "memory": memory.to_json() if (memory := getattr(self, "memory_", None)) is not None else None,
            "combine": self.combine_,
        }
        return write_model(folder, self.booster_, {**meta, **state}, getattr(self, "members_", []), extra_files)

    @classmethod
    def load(cls, folder: str | Path, hw=None) -> LatencyModel:
        """Load a saved model; refuse one made for other hardware or by another featurizer version."""
        saved = read_model(folder, hw, set(cls().get_params()))
        model = cls(**saved.params)
        model._forget()
        model.booster_ = saved.booster
        model.best_iteration_ = saved.best_iteration
        model.n_features_in_ = saved.n_features
        model.val_mae_log_ = saved.val_mae_log
        model.val_q90_log_ = saved.val_q90_log
        model.prior_ = saved.prior
        model.calibration_ = saved.calibration
        model.layer_sum_ = saved.layer_sum
        model.members_ = saved.members
        model.combine_ = saved.combine
        model.coverage_ = saved.coverage
        model.memory_ = saved.memory
        model.adapt_trees_ = saved.extra_trees["adapt_trees"]
        model.probe_trees_ = saved.extra_trees["probe_trees"]
        model.meta_ = saved.meta
        return model


def _nearest(Q: np.ndarray, P: np.ndarray, exclude_self: bool = False, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance from each row of Q to its nearest row of P (Q is P itself with
    `exclude_self`), in chunks so memory stays at chunk x len(P)."""
    out = np.empty(len(Q))
    p2 = (P * P).sum(1)
    for a in range(0, len(Q), chunk):
        q = Q[a:a + chunk]
        d2 = (q * q).sum(1)[:, None] + p2[None, :] - 2 * q @ P.T
        if exclude_self:
            d2[np.arange(len(q)), a + np.arange(len(q))] = np.inf
        out[a:a + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def fit_on_cluster(model: LatencyModel, X, y, groups, client) -> LatencyModel:
    """`model.fit(X, y, groups)` with boosting on a dask.distributed cluster (xgboost.dask)."""
    import dask.array as da
    from xgboost import dask as dxgb

    model._validate_params()
    X, logy, tr, va, margin = model._prepare(X, y, groups)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    chunk = max(1, len(tr) // workers)

    def dmat(idx):
        bm = None if margin is None else da.from_array(margin[idx], chunks=chunk)  # pyright: ignore[reportArgumentType]
        return dxgb.DaskDMatrix(client, da.from_array(X[idx], chunks=(chunk, -1)),  # pyright: ignore[reportArgumentType]
                                da.from_array(logy[idx], chunks=chunk),  # pyright: ignore[reportArgumentType]
                                base_margin=bm)

    dtr, dva = dmat(tr), dmat(va)
    out = dxgb.train(client, model._xgb_params(), dtr, num_boost_round=model.n_estimators,
                     evals=[(dtr, "train"), (dva, "val")], early_stopping_rounds=model.early_stopping_rounds,
                     verbose_eval=False)
    model.memory_ = MeasuredMemory.from_rows(X, logy) if model.memory else None
    booster = out["booster"]
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    model._finish(booster[: best + 1], out["history"]["val"]["mae"])
    model._val_tail(X[va], logy[va])
    return model
