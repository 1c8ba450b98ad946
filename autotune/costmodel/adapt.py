"""Few-shot adaptation: the universal model specialised to one part with a few of its measurements.

Three ways to use N labels of the part, and cross-validation over its groups picks one:
- "universal": the universal model as it is, plus small correction trees fitted to its residual
  (continued boosting);
- "calibrated": the roofline prior refitted to the part's labels (its launch costs, reachable
  bandwidth, clock: calibration.py) under the universal model's adaptation trees, which learned over
  every training device what such a refitted roofline misses (universal.adaptation_trees), plus
  correction trees;
- "part": the refitted prior and correction trees alone (what training from scratch does).
The tree count and depth are chosen by the same cross-validation, so a budget too small to teach
anything adds nothing. The result is a one-part LatencyModel.

When the universal model has probe trees, the budget starts with the probes (probes.py), and the
result carries a second member: the universal model told about the part by its probe residuals,
with correction trees of its own; the model predicts the weighted consensus of the two in log
(inverse-variance weights from their cross-validated errors; members.consensus). The two err
differently (labels pin what they exercise; probes, through what the whole training draw taught, the
rest), and near-tie plans flip on the consensus's error less often than on either one's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xgboost as xgb
from sklearn.model_selection import GroupKFold

from autotune.costmodel.boosters import boost
from autotune.costmodel.calibration import RooflineFit
from autotune.costmodel.features import FEATURE_NAMES, get_featurizer
from autotune.costmodel.members import ScratchMember, inverse_variance
from autotune.costmodel.model import LatencyModel
from autotune.costmodel.probes import ProbedMember
from autotune.costmodel.universal import refit_roofline

#: The correction trees: small and strongly regularised, since a few hundred labels must not undo
#: what the universal model learned from the family.
ADAPT_PARAMS = {"objective": "reg:pseudohubererror", "huber_slope": 0.1, "eta": 0.1, "subsample": 0.8,
                "min_child_weight": 3.0, "lambda": 5.0, "tree_method": "hist", "eval_metric": "mae"}
#: Correction-tree depths cross-validation chooses from; depth 8 is as deep as a one-part model's trees
#: (docs/costmodel.md, "Measured choices behind constants").
DEPTHS = (2, 4, 8)
MAX_ROUNDS = 300
FOLDS = 5
KINDS = ("universal", "calibrated", "part")


@dataclass
class AdaptResult:
    """The adapted model and what cross-validation found (log-latency MAE on held-out groups)."""

    model: LatencyModel
    kind: str  # one of KINDS
    rounds: int
    depth: int
    cv_mae_universal: float  # the universal model alone
    cv_mae_adapted: float  # with the chosen adaptation
    probed: dict | None = None  # the probed member's correction trees, CV error and weight, if it has one
    scratch: dict | None = None  # the scratch member's trees, CV error and weight, if it has one


#: How an adaptation starts: (base margin of every row, trees to continue from, refitted prior).
Start = tuple[np.ndarray, "xgb.Booster | None", "RooflineFit | None"]


def _starts(universal: LatencyModel, X: np.ndarray, parts: dict[str, np.ndarray], y: np.ndarray, fit: np.ndarray,
            kinds: list[str], seed: int) -> dict[str, Start]:
    """Per adaptation kind: (base margin of every row, trees to continue from, refitted prior). The
    refitted prior sees only the rows `fit`, and is fitted once for the kinds that share it."""
    out: dict[str, Start] = {}
    if "universal" in kinds:
        margin = universal._margin(X)
        assert margin is not None  # a universal model has the calibrated prior
        out["universal"] = (margin, universal.booster_[: universal.best_iteration_ + 1], None)
    if set(kinds) & {"calibrated", "part"}:
        calib = refit_roofline(universal, parts, y, fit, seed)
        margin = calib.log_ms(parts)
        for kind in {"calibrated", "part"} & set(kinds):
            out[kind] = (margin, universal.adapt_trees_ if kind == "calibrated" else None, calib)
    return out


def _boost(start: xgb.Booster | None, X: np.ndarray, logy: np.ndarray, margin: np.ndarray, depth: int, rounds: int,
           seed: int, val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[xgb.Booster, list[float]]:
    params = {**ADAPT_PARAMS, "max_depth": depth, "seed": seed, "nthread": 0}
    return boost(params, (X, logy, margin), rounds, val=val, start=start)


def _predict_log(start: xgb.Booster | None, X: np.ndarray, margin: np.ndarray) -> np.ndarray:
    return margin if start is None else np.asarray(start.inplace_predict(X, base_margin=margin), dtype=np.float64)


def _cv_curve(runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, xgb.Booster | None]], X: np.ndarray,
              logy: np.ndarray, depth: int, seed: int) -> np.ndarray:
    """Mean validation MAE (log) after r correction trees, index r, over the folds `runs`:
    (training rows, validation rows, base margin of every row, trees to continue from) each."""
    curves = []
    for tr, va, margin, start in runs:
        zero = float(np.mean(np.abs(_predict_log(start, X[va], margin[va]) - logy[va])))
        _, curve = _boost(start, X[tr], logy[tr], margin[tr], depth, MAX_ROUNDS, seed, (X[va], logy[va], margin[va]))
        curves.append([zero] + curve)
    return np.mean(np.asarray(curves), axis=0)


def adapt(universal: LatencyModel, X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0,
          residuals: np.ndarray | None = None, scratch: bool = True) -> AdaptResult:
    """Adapt `universal` to a part from its rows X (universal features) and latencies y (ms);
    `groups` keeps a group's rows in one CV fold. With the part's probe residuals (probes.py) and a
    universal model that has probe trees, the result also carries a probed member; with `scratch`, a
    scratch member (members.py). Each member's weight is inverse-variance from its CV error."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64)
    logy = np.log(y)
    groups = np.asarray(groups)
    parts = universal._parts(X)
    n_folds = min(FOLDS, len(np.unique(groups)))
    everything = np.arange(len(X))
    kinds = [k for k in KINDS if k != "calibrated" or universal.adapt_trees_ is not None]
    m0, b0, _ = _starts(universal, X, parts, y, everything, ["universal"], seed)["universal"]
    assert b0 is not None  # the universal kind continues from the universal trees
    err0 = np.abs(_predict_log(b0, X, m0) - logy)
    if n_folds < 2:  # too few groups to validate anything: the universal model as it is
        mae0 = float(err0.mean())  # on the labels themselves: nothing is held out
        return AdaptResult(LatencyModel.assembled(universal, b0, None, mae0), "universal", 0, DEPTHS[0], mae0, mae0)
    folds = list(GroupKFold(n_splits=n_folds).split(X, groups=groups))
    cv0 = float(np.mean([err0[va].mean() for _, va in folds]))
    best = (cv0, "universal", 0, DEPTHS[0])
    refitted = [k for k in kinds if k != "universal"]  # the universal start is the same in every fold
    fold_starts = [{"universal": (m0, b0, None), **_starts(universal, X, parts, y, tr, refitted, seed)}
                   for tr, _ in folds]
    for kind in kinds:
        for depth in DEPTHS:
            mean = _cv_curve([(tr, va, *starts[kind][:2]) for (tr, va), starts in zip(folds, fold_starts)],
                             X, logy, depth, seed)
            lo = 1 if kind == "part" else 0  # the refitted prior alone is a roofline, not a model: add trees
            r = lo + int(np.argmin(mean[lo:]))
            if mean[r] < best[0]:
                best = (float(mean[r]), kind, r, depth)
    mae, kind, rounds, depth = best
    margin, start, calib = _starts(universal, X, parts, y, everything, [kind], seed)[kind]
    booster = _boost(start, X, logy, margin, depth, rounds, seed)[0] if rounds > 0 else start
    assert booster is not None  # "part" always adds trees
    members: list = []
    probed_info = scratch_info = None
    if residuals is not None and universal.probe_trees_ is not None:
        probed, probed_info = _probed(universal, X, logy, parts, folds, residuals, b0, seed)
        members.append((probed, probed_info))
    if scratch:
        alone, scratch_info = _scratch(X, y, groups, folds, seed)
        members.append((alone, scratch_info))
    # inverse-variance weights over 30 held-out parts x 21 networks at 200 labels: README, costmodel.md
    weights = inverse_variance([mae] + [info["cv_mae_log"] for _, info in members])
    for (member, info), w in zip(members, weights[1:]):
        member.weight = info["weight"] = w
    # its validation error is the part's cross-validated one, not the universal model's on unseen
    # datasheets: tune-time measurement (refine.py) trusts a measurement that departs from the
    # prediction by more than this error explains
    model = LatencyModel.assembled(universal, booster, calib, mae, [m for m, _ in members])
    return AdaptResult(model, kind, rounds, depth, cv0, mae, probed_info, scratch_info)


def _probed(universal: LatencyModel, X: np.ndarray, logy: np.ndarray, parts: dict[str, np.ndarray],
            folds: list, residuals: np.ndarray, start: xgb.Booster, seed: int) -> tuple[ProbedMember, dict]:
    """The probed member: the universal model plus its probe trees at the part's residuals, continued
    by correction trees whose count and depth cross-validation picks (none if none helps)."""
    assert universal.calibration_ is not None  # a universal model has the calibrated prior
    assert universal.probe_trees_ is not None  # adapt asks for a probed member only then
    member = ProbedMember(universal.calibration_, start, universal.probe_trees_, np.asarray(residuals, np.float64),
                          weight=0.0)
    margin = member.margin(X, parts)
    best = (float("inf"), 0, DEPTHS[0])
    for depth in DEPTHS:
        mean = _cv_curve([(tr, va, margin, start) for tr, va in folds], X, logy, depth, seed)
        r = int(np.argmin(mean))
        if mean[r] < best[0]:
            best = (float(mean[r]), r, depth)
    mae, rounds, depth = best
    if rounds > 0:
        member.booster = _boost(start, X, logy, margin, depth, rounds, seed)[0]
    return member, {"rounds": rounds, "depth": depth, "cv_mae_log": mae}


def _scratch(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: list, seed: int) -> tuple[ScratchMember, dict]:
    """The scratch member: a one-part model fitted to the labels alone, as `autotune train` fits one
    (its own roofline and deep trees; no universal model), and its error over the folds. At 200 labels
    it plans about as well as the adaptation and errs elsewhere; at 1,000 it plans better."""

    n = len(FEATURE_NAMES)
    assert list(get_featurizer("universal").names[:n]) == FEATURE_NAMES  # the datasheet columns lead
    errs = []
    for tr, va in folds:
        fold = LatencyModel(random_state=seed, bags=1).fit(X[tr, :n], y[tr], groups=groups[tr])
        errs.append(float(np.mean(np.abs(np.log(fold.predict(X[va, :n])) - np.log(y[va])))))
    model = LatencyModel(random_state=seed, bags=1).fit(X[:, :n], y, groups=groups)
    return ScratchMember.of(model, 0.0), {"trees": model.best_iteration_ + 1, "cv_mae_log": float(np.mean(errs))}
