"""The one model I/O module: how a LatencyModel lies on disk and how it is read back.

A model folder holds `model.ubj` (XGBoost's own format) and `meta.json` (the hyper-parameters, the
fitted prior, the featurizer's name, version and columns, library versions, the booster's sha256 and
meta.json's own checksum), plus the members' and a universal model's extra trees. `write_model`
publishes a folder as one unit; `read_model` checks every byte it reads (digests before XGBoost
parses a file; never a pickle) and refuses a model for other hardware or other features with one
clear error, returning a `SavedModel` that LatencyModel.load turns into a model.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

from autotune.costmodel.boosters import checked_booster_file
from autotune.costmodel.calibration import RooflineFit
from autotune.costmodel.features import get_featurizer
from autotune.costmodel.layer_sum import LayerSumFit
from autotune.costmodel.members import COMBINE, Predictor, combine_rule, members_from_meta, members_to_meta
from autotune.costmodel.memory import MeasuredMemory
from autotune.errors import ModelFileError
from autotune.fileio import publish_folder, recover_folder

MODEL_FILE = "model.ubj"
META_FILE = "meta.json"
#: Trees a universal model carries besides its own, each under a meta.json key that records its
#: digest (autotune/costmodel/universal.py): the adaptation trees, correcting a roofline refitted to
#: one part, and the probe trees, reading a part's probe residuals.
EXTRA_TREES = {"adapt_trees": "adapt.ubj", "probe_trees": "probe.ubj"}
PRIORS = ("calibrated", "datasheet", "layersum", "none")
#: The priors whose constants are fitted to the labels: the meta.json key that holds them, how to
#: read them back, and what a model without them lacks.
FITTED_PRIORS = {"calibrated": ("calibration", RooflineFit.from_dict, "a valid calibration"),
                 "layersum": ("layer_sum", LayerSumFit.from_dict, "a valid layer-sum fit")}


#: The keys `provenance` gives every model's meta.json.
PROVENANCE = ("hardware", "hardware_hash", "dataset", "dataset_rows", "seed", "generator_version", "metrics")


def provenance(hardware: str, hardware_hash: str | None, dataset: str | Path, rows: int, seed: int,
               generator_version, metrics: dict, **more) -> dict:
    """meta.json's account of where a model comes from, under the same keys whichever way it was made
    (train, train --universal, adapt): the hardware it is for, its dataset and rows, the seed, the
    generator version, its metrics; `more` adds what that way knows besides (a dataset's digest, a
    universal model's family and extra trees, an adaptation's choices)."""
    values = (hardware, hardware_hash, str(dataset), int(rows), seed, generator_version, metrics)
    return {**dict(zip(PROVENANCE, values)), **more}


@dataclass
class SavedModel:
    """A model folder read back and checked: what LatencyModel.load makes its fitted state from."""

    meta: dict
    params: dict  # the estimator's hyper-parameters (those this autotune knows)
    booster: xgb.Booster
    best_iteration: int
    n_features: int
    prior: str
    calibration: RooflineFit | None
    layer_sum: LayerSumFit | None
    members: list[Predictor]
    combine: str  # COMBINE's rule for the model and its members
    coverage: dict | None
    memory: MeasuredMemory | None
    val_mae_log: float
    val_q90_log: float
    extra_trees: dict[str, xgb.Booster | None]  # EXTRA_TREES' keys


def write_model(folder: str | Path, booster: xgb.Booster, meta: dict, members: list[Predictor],
                extra_files: dict[str, bytes] | None = None) -> Path:
    """Publish `booster` as model.ubj and `meta` (plus library versions, the booster's digest, the
    members and meta's own checksum) as meta.json, with the members' files and `extra_files`."""
    raw = bytes(booster.save_raw(raw_format="ubj"))
    full = {**meta, "versions": library_versions(), "model_sha256": hashlib.sha256(raw).hexdigest()}
    extra = dict(extra_files or {})
    if members:
        full["members"], member_files = members_to_meta(members)
        extra.update(member_files)
    full = json.loads(json.dumps(full))  # as it will read back (int keys become strings)
    full["meta_sha256"] = meta_checksum(full)
    return publish_folder(folder, {MODEL_FILE: raw, META_FILE: (json.dumps(full, indent=2) + "\n").encode(), **extra})


def saved_hardware(folder: str | Path) -> str | None:
    """The part a model folder's meta.json names; None where no readable model is."""
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return str(meta["hardware"]) if isinstance(meta, dict) and "hardware" in meta else None


def check_model_for(out: str | Path, part: str, force: bool = False, flag: str = "--out") -> None:
    """Refuse, in one line, to replace a model folder trained for another part unless `force`."""
    other = saved_hardware(out)
    if other is not None and other != part and not force:
        raise ModelFileError(f"{flag} {out}/ holds a model for {other!r}, not {part!r}; add --force to replace it, "
                             f"or choose another {flag}")


def read_model(folder: str | Path, hw, known_params: set[str]) -> SavedModel:
    """The model in `folder`, every file checked; refuse one made for other hardware than `hw` (if
    given) or by other features, naming what to do about it."""
    folder = Path(folder)
    retrain = f"retrain it (autotune train --hw {hw.name})" if hw is not None else "retrain it (autotune train)"
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
    if meta.get("meta_sha256") != meta_checksum(meta):
        raise ModelFileError(f"{meta_path} is corrupted or edited: its checksum does not match ({retrain})")
    if hw is not None and meta.get("hardware_hash") != hw.hash and meta.get("hardware") == hw.name:
        raise ModelFileError(f"model in {folder}/ was trained for another version of {hw.name!r} (hash "
                             f"{meta.get('hardware_hash')}; its config now hashes to {hw.hash}: a datasheet or "
                             f"device value changed); {retrain}")
    if hw is not None and meta.get("hardware_hash") != hw.hash:
        raise ModelFileError(
            f"model in {folder}/ was trained for hardware {meta.get('hardware')!r} "
            f"(hash {meta.get('hardware_hash')}), not {hw.name!r} (hash {hw.hash}); {retrain}")
    if isinstance(meta.get("family"), dict) and hw is None:  # a universal model: made by make universal
        retrain = "retrain it (make universal, or autotune train --universal --data data/universal)"
    _check_featurizer(meta.get("featurizer"), folder, retrain)
    booster = checked_booster_file(model_path, meta.get("model_sha256"), retrain, owner=str(meta_path))
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ModelFileError(f"{meta_path} has no hyper-parameters ({retrain})")
    params = {k: v for k, v in params.items() if k in known_params}
    try:
        best_iteration, n_features = int(meta["best_iteration"]), int(meta["n_features"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{meta_path} is missing best_iteration/n_features ({retrain})") from None
    if booster.num_features() != n_features:
        raise ModelFileError(f"{model_path} and {meta_path} disagree on the feature count ({retrain})")
    if not 0 <= best_iteration < booster.num_boosted_rounds():
        raise ModelFileError(f"{meta_path}'s best_iteration {best_iteration} is not one of the "
                             f"{booster.num_boosted_rounds()} rounds of {model_path} ({retrain})")
    prior = meta.get("prior")
    if prior not in PRIORS:
        raise ModelFileError(f"{meta_path} names no valid prior ({retrain})")
    fitted: dict = {}
    if prior in FITTED_PRIORS:
        key, read, what = FITTED_PRIORS[prior]
        try:
            fitted[key] = read(meta[key])
        except (KeyError, TypeError, ValueError) as err:
            why = f": {err}" if isinstance(err, ValueError) else ""
            raise ModelFileError(f"{meta_path} lacks {what} for prior={prior!r}{why} ({retrain})") from None
    calibration, layer_sum = fitted.get("calibration"), fitted.get("layer_sum")
    names = list(get_featurizer(str(params.get("featurizer", "datasheet"))).names)
    coverage = _checked_coverage(meta.get("coverage"), names) if len(names) == n_features else None
    memory = MeasuredMemory.from_json(meta["memory"]) if meta.get("memory") is not None else None
    if params.get("memory") and meta.get("memory") is not None and memory is None:
        raise ModelFileError(f"{meta_path} holds a malformed measured memory ({retrain})")
    members = members_from_meta(meta, folder, retrain)
    combine = meta.get("combine", combine_rule(members))  # models saved before it was recorded: as it was inferred
    if combine not in COMBINE:
        raise ModelFileError(f"{meta_path} names no valid rule to combine its members ({retrain})")
    return SavedModel(meta, params, booster, best_iteration, n_features, str(prior), calibration, layer_sum,
                      members, str(combine), coverage, memory, _number(meta.get("val_mae_log")),
                      _number(meta.get("val_q90_log")),
                      {key: _extra_trees(meta, folder, key, retrain) for key in EXTRA_TREES})


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) else float("nan")


def _extra_trees(meta: dict, folder: Path, key: str, retrain: str) -> xgb.Booster | None:
    """The extra trees meta.json records under `key` (EXTRA_TREES), checked against their digest; None if none."""
    info = meta.get(key)
    if info is None:
        return None
    if not isinstance(info, dict):
        raise ModelFileError(f"{folder}/{META_FILE}'s {key} entry is malformed ({retrain})")
    return checked_booster_file(folder / EXTRA_TREES[key], info.get("sha256"), retrain)


def _checked_coverage(cov, names: list[str]) -> dict | None:
    """meta.json's coverage if it is well formed for these features, else None (older models)."""
    try:
        feats = [str(c) for c in cov["features"]]
        P = np.asarray(cov["points"], dtype=np.float64)
        center = np.asarray(cov["center"], dtype=np.float64)
        scale = np.asarray(cov["scale"], dtype=np.float64)
        t = float(cov["threshold"])
        med = float(cov["median"])
    except (KeyError, TypeError, ValueError):
        return None
    if (not set(feats) <= set(names) or P.ndim != 2 or P.shape[1] != len(feats) or center.shape != (len(feats),)
            or scale.shape != (len(feats),) or not np.all(np.isfinite(P)) or not np.all(scale > 0)
            or not np.isfinite(t) or not np.isfinite(med) or med < 0):
        return None
    return {"features": feats, "center": center.tolist(), "scale": scale.tolist(), "points": P, "threshold": t,
            "median": med}


def _check_featurizer(saved, folder: Path, retrain: str) -> None:
    """Refuse a model whose features this autotune would compute differently."""
    if not isinstance(saved, dict):
        raise ModelFileError(f"model in {folder}/ does not say which features it was trained on; {retrain}")
    try:
        f = get_featurizer(str(saved.get("name")))
    except ValueError:
        raise ModelFileError(f"model in {folder}/ uses featurizer {saved.get('name')!r}, "
                             f"which this autotune does not have; {retrain}") from None
    if saved.get("version") != f.version:
        raise ModelFileError(f"model in {folder}/ uses {f.name} features v{saved.get('version')}, "
                             f"this autotune computes v{f.version}; {retrain}")
    if saved.get("names") != list(f.names):
        raise ModelFileError(f"model in {folder}/ lists other {f.name} feature names than this autotune; {retrain}")


def coverage_json(cov: dict | None) -> dict | None:
    """A model's coverage as JSON (its points as lists)."""
    if cov is None:
        return None
    return {**cov, "points": np.asarray(cov["points"]).tolist()}


def meta_checksum(meta: dict) -> str:
    """SHA-256 of meta.json's content without its own checksum field (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    import sklearn

    return {"python": platform.python_version(), "xgboost": xgb.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__}
