"""The members an adapted model averages with its own prediction, and how they are saved.

`adapt` fits several models to one part's labels that err differently: its own adaptation of the
universal model (the LatencyModel's trees), the probed member (the universal model told about the
part by its probe residuals, probes.py) and the scratch member (a one-part model fitted to the labels
alone, what `autotune train` would make). The adapted model predicts their weighted consensus in log (a
Huber location, `consensus`): near-tie plans flip on it less often than on any one member's error, and a
member that strays far from the others on a kernel unlike its labels pulls it only so far.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import xgboost as xgb

from autotune.costmodel.boosters import read_boosters
from autotune.costmodel.calibration import RooflineFit
from autotune.costmodel.features import FEATURE_NAMES, LAYER_SUM, PRIOR_FEATURE
from autotune.costmodel.layer_sum import LayerSumFit
from autotune.costmodel.probes import ProbedMember
from autotune.errors import ModelFileError

#: The scratch member's trees in an adapted model's folder.
SCRATCH_FILE = "member_scratch.ubj"
#: How far (natural log) a member may stray from the consensus before its pull stops growing (Huber's
#: scale): a member that extrapolates wildly on groups unlike its labels (the scratch member on big
#: fused kernels) no longer drags the plan (docs/costmodel.md, "Measured choices behind constants").
CONSENSUS_SCALE = 0.1
#: Where a datasheet row holds the datasheet estimate, the prior of a member without a roofline.
_PRIOR_COLUMN = FEATURE_NAMES.index(PRIOR_FEATURE)


class Predictor(Protocol):
    """A prior plus trees, one predictor of an ensemble: the natural log of latency (ms) of feature
    rows, from the rows and their calibration columns, with its weight in the ensemble."""

    weight: float
    kind: str

    def log_predict(self, X: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray: ...

    def to_meta(self) -> tuple[dict, dict[str, bytes]]: ...


@dataclass
class ScratchMember:
    """A one-part model trained on the part's labels alone (LatencyModel with the datasheet
    featurizer, whose columns lead the universal and layer-sum ones): its prior, the roofline fitted
    to the labels, the layer sum fitted to them (`layer_sum`, read from the row's `columns`) or
    (both None) the datasheet estimate, and its trees cut at their best iteration."""

    calibration: RooflineFit | None
    booster: xgb.Booster
    n_features: int  # the columns it reads, the first of each row
    weight: float
    file: str = SCRATCH_FILE
    layer_sum: LayerSumFit | None = None
    columns: tuple[int, ...] = ()  # where a row holds the LAYER_SUM columns, with `layer_sum`

    kind = "scratch"

    @classmethod
    def of(cls, model, weight: float, file: str = SCRATCH_FILE) -> ScratchMember:
        """The member made from a fitted LatencyModel with a calibrated, layer-sum or datasheet prior."""
        assert model.prior_ in ("calibrated", "datasheet", "layersum")
        columns = tuple(model.layer_sum_index(model.n_features_in_)) if model.prior_ == "layersum" else ()
        return cls(model.calibration_, model.booster_[: model.best_iteration_ + 1], model.n_features_in_, weight,
                   file, model.layer_sum_, columns)

    def margin(self, X: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Its prior's log latency (ms) of rows X, the base its trees add to."""
        if self.calibration is not None:
            return self.calibration.log_ms(parts)
        if self.layer_sum is not None:
            return self.layer_sum.log_ms(X[:, list(self.columns)])
        return X[:, _PRIOR_COLUMN]

    def log_predict(self, X: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(np.ascontiguousarray(X[:, : self.n_features]),
                                                       base_margin=self.margin(X, parts)), dtype=np.float64)

    def to_meta(self) -> tuple[dict, dict[str, bytes]]:
        raw = bytes(self.booster.save_raw(raw_format="ubj"))
        calibration = self.calibration.to_dict() if self.calibration is not None else None
        meta = {"kind": self.kind, "weight": self.weight, "calibration": calibration,
                "n_features": self.n_features, "sha256": {self.file: hashlib.sha256(raw).hexdigest()}}
        if self.layer_sum is not None:
            meta.update({"layer_sum": self.layer_sum.to_dict(), "columns": list(self.columns)})
        if self.file != SCRATCH_FILE:
            meta["file"] = self.file
        return meta, {self.file: raw}

    @classmethod
    def from_meta(cls, meta: dict, folder: Path, retrain: str) -> ScratchMember:
        file = str(meta.get("file", SCRATCH_FILE))
        if not re.fullmatch(r"member_[a-z0-9]+\.ubj", file):
            raise ModelFileError(f"{folder}/meta.json names a member file {file!r} of no allowed form ({retrain})")
        boosters = read_boosters(meta, folder, (file,), retrain)
        try:
            calibration = None if meta["calibration"] is None else RooflineFit.from_dict(meta["calibration"])
            layer_sum = LayerSumFit.from_dict(meta["layer_sum"]) if meta.get("layer_sum") is not None else None
            columns = tuple(int(c) for c in meta.get("columns", ()))
            member = cls(calibration, boosters[file], int(meta["n_features"]), float(meta["weight"]), file,
                         layer_sum, columns)
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{folder}/meta.json's {cls.kind} member is malformed ({retrain})") from None
        if (member.booster.num_features() != member.n_features or not 0 <= member.weight <= 1
                or (calibration is None and member.n_features <= _PRIOR_COLUMN)
                or (layer_sum is not None and (len(columns) != len(LAYER_SUM)
                                               or not all(0 <= c < member.n_features for c in columns)))):
            raise ModelFileError(f"{folder}/meta.json's {cls.kind} member is malformed ({retrain})")
        return member


@dataclass
class BaggedMember(ScratchMember):
    """One model of a bagged ensemble (LatencyModel(bags=...)): the same estimator fitted to a
    bootstrap draw of the training groups."""

    kind = "bagged"


@dataclass
class RepeatMember(ScratchMember):
    """One predictor of a repeated fit (LatencyModel(repeats=...)): the same estimator fitted again
    to every row with another seed, so another validation split stops its boosting and another
    subsample grows its trees."""

    kind = "repeat"


@dataclass
class BlendMember(ScratchMember):
    """The second predictor of a blend (LatencyModel(blend=...)): trees on another prior, fitted to
    the same training split, so the two err differently and their mean errs less than either."""

    kind = "blend"


def _refit(model, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None, offset: int, **params):
    """A copy of the fitted `model`, with the seed `offset` after its own and `params` changed,
    fitted to (X, y)."""
    from sklearn.base import clone

    m = clone(model).set_params(verbose=False, random_state=(model.random_state + offset) % 2**32, **params)
    return m.fit(X, y, groups=groups)


def bagged_members(model, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None, bags: int) -> list[Predictor]:
    """`bags - 1` members for a fitted `model`, each a copy of it (one bag) fitted to a bootstrap draw
    of the groups, every member and the model weighing 1 / bags in the consensus."""
    gid = np.arange(len(y)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    rows_of = np.split(np.argsort(gid, kind="stable"), np.cumsum(np.bincount(gid))[:-1])
    out: list[Predictor] = []
    for b in range(1, bags):
        rng = np.random.default_rng([model.random_state, b])
        pick = rng.integers(0, len(rows_of), len(rows_of))
        rows = np.concatenate([rows_of[g] for g in pick])
        copy_id = np.repeat(np.arange(len(pick)), [len(rows_of[g]) for g in pick])  # each draw its own group
        m = _refit(model, X[rows], y[rows], copy_id, b, bags=1)
        out.append(BaggedMember.of(m, 1.0 / bags, f"member_bag{b}.ubj"))
    return out


def repeated_members(model, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None, repeats: int
                     ) -> list[Predictor]:
    """The predictors of `repeats - 1` more fits of a fitted `model` (its trees and, with a blend,
    its blend's) to the same rows with seeds after the model's, each weighing as the model's own."""
    out: list[Predictor] = []
    share = 1.0 / (repeats * (1 + len(model.members_)))
    for r in range(1, repeats):
        m = _refit(model, X, y, groups, r, repeats=1, memory=False, refit=False)  # the model refits its members
        out.append(RepeatMember.of(m, share, f"member_rep{r}.ubj"))
        for k, b in enumerate(m.members_):
            out.append(RepeatMember(b.calibration, b.booster, b.n_features, share, f"member_rep{r}m{k}.ubj",
                                    b.layer_sum, b.columns))
    return out


def inverse_variance(maes: list[float]) -> list[float]:
    """Shares of an average of estimators whose errors have the given cross-validated MAEs: inverse-
    variance weights, the variances taken as the MAEs' squares."""
    inv = 1.0 / np.maximum(np.asarray(maes, dtype=np.float64), 1e-9) ** 2
    return [float(v) for v in inv / inv.sum()]


def consensus(weights: np.ndarray, log_preds: np.ndarray, scale: float = CONSENSUS_SCALE,
              iters: int = 20) -> np.ndarray:
    """Per column of `log_preds` (members x rows), the weighted Huber location of the members' log
    predictions: their weighted mean while they agree within `scale`, while a member further away
    pulls only as hard as one at `scale` would (iteratively reweighted least squares)."""
    w = np.asarray(weights, dtype=np.float64)[:, None]
    mu = (w * log_preds).sum(0) / w.sum()
    for _ in range(iters):
        r = np.abs(log_preds - mu)
        if (r <= scale).all():  # every member within the scale: the weighted mean is the answer
            break
        ww = w * np.minimum(1.0, scale / np.maximum(r, 1e-12))
        mu = (ww * log_preds).sum(0) / ww.sum(0)
    return mu


def weighted_mean(weights: np.ndarray, log_preds: np.ndarray) -> np.ndarray:
    """Per column of `log_preds` (predictors x rows), the weighted mean."""
    w = np.asarray(weights, dtype=np.float64)
    return w @ log_preds / w.sum()


#: How an ensemble combines its predictors' log predictions, by the name meta.json records
#: ("combine"): a bag's members err alike by design, so their mean; an adapted model's members err
#: differently, so a consensus that bounds one straying far from the others.
COMBINE = {"mean": weighted_mean, "consensus": consensus}


def combine_rule(members: list[Predictor]) -> str:
    """The COMBINE rule an ensemble of the model and `members` uses: the mean for a bag, else the consensus."""
    return "mean" if all(m.kind in ("bagged", "blend", "repeat") for m in members) else "consensus"


def members_to_meta(members: list[Predictor]) -> tuple[list[dict], dict[str, bytes]]:
    """meta.json's "members" list and the files to publish beside the model."""
    metas, files = [], {}
    for m in members:
        meta, f = m.to_meta()
        metas.append(meta)
        files.update(f)
    return metas, files


def members_from_meta(meta: dict, folder: Path, retrain: str) -> list[Predictor]:
    """The members meta.json lists (an adapted model from before the scratch member had one "member")."""

    entries = meta.get("members")
    if entries is None:
        entries = [] if meta.get("member") is None else [{"kind": "probed", **meta["member"]}]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ModelFileError(f"{folder}/meta.json's members are malformed ({retrain})")
    members: list[Predictor] = []
    for e in entries:
        if e.get("kind") == "probed":
            members.append(ProbedMember.from_meta(e, folder, retrain))
        elif e.get("kind") == "scratch":
            members.append(ScratchMember.from_meta(e, folder, retrain))
        elif e.get("kind") == "bagged":
            members.append(BaggedMember.from_meta(e, folder, retrain))
        elif e.get("kind") == "blend":
            members.append(BlendMember.from_meta(e, folder, retrain))
        elif e.get("kind") == "repeat":
            members.append(RepeatMember.from_meta(e, folder, retrain))
        else:
            raise ModelFileError(f"{folder}/meta.json names an unknown member kind {e.get('kind')!r} ({retrain})")
    if sum(m.weight for m in members) > 1 + 1e-9:
        raise ModelFileError(f"{folder}/meta.json's member weights add up to more than 1 ({retrain})")
    return members
