"""One latency model for a family of parts: trained on devices drawn from the family, it plans any
config whose datasheet lies in the family's ranges with no labels from that part (zero-shot), and
`adapt.py` specialises it to one part with a few.

Its inputs are the universal featurizer's rows (features.py): the datasheet features plus the
datasheet's scale and balance. Device values never enter; across the draw they only vary the labels,
so the model learns what the family's parts do on average for a given datasheet: its target is the
mean of each row over the datasheet's sibling devices (autotune/synth/family_labels.py), the expected latency a
zero-shot plan minimises (a plan's expected total is the sum of its kernels' means). Early stopping
holds out whole datasheets, so it stops where unseen parts are predicted best.

Beside it ship two sets of trees `adapt` uses: the adaptation trees (what a roofline refitted to a
few of a part's labels misses) and, when the draw recorded the device probes (probes.py), the probe
trees (a device's departure from this model, given its probe residuals).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

from autotune.artefacts import UNIVERSAL, check_folder_output
from autotune.costmodel.boosters import boost
from autotune.costmodel.calibration import RooflineFit, fit_roofline
from autotune.costmodel.feature_cache import dataset_features
from autotune.costmodel.features import universal_columns
from autotune.costmodel.model import LatencyModel
from autotune.costmodel.model_io import EXTRA_TREES, provenance
from autotune.costmodel.probes import PROBE_LABELS, probe_pairs, probe_residuals
from autotune.costmodel.training import accuracy
from autotune.data.dataset import Dataset, read_dataset, read_parquet
from autotune.errors import DatasetError, ModelFileError
from autotune.fileio import FolderLock
from autotune.hardware.config import HardwareConfig, parse_hardware
from autotune.hardware.family import FAMILY_MANIFEST, SIBLINGS_FILE, Family, parse_family

#: The probe trees: a part's departure from the universal model's prediction, given its probe
#: residuals (probes.py); what `adapt` puts on top of the universal model once the probes are measured.
PROBE_TREES_FILE = EXTRA_TREES["probe_trees"]
#: Share of each datasheet's rows the probe trees learn from, spread over its devices (each device
#: gives this share over the number of devices): more learned nothing more, and this much trains in
#: about a minute however many siblings the draw has (docs/costmodel.md, "Measured choices behind
#: constants").
PROBE_ROW_SHARE = 1.0
PROBE_PARAMS = {"objective": "reg:pseudohubererror", "huber_slope": 0.1, "eta": 0.1, "max_depth": 8,
                "min_child_weight": 5.0, "subsample": 0.8, "colsample_bytree": 0.8, "tree_method": "hist",
                "eval_metric": "mae"}
#: The adaptation trees: corrections to a roofline refitted to one part (what `adapt` starts from).
ADAPT_TREES_FILE = EXTRA_TREES["adapt_trees"]
#: Label counts each training device's roofline is refitted from when the adaptation trees are
#: trained: the budgets `adapt` will meet, so the trees learn residuals of a prior that good.
ADAPT_FIT_SIZES = (50, 200, 1000)
#: What each e-fold a refitted roofline constant moves from the family's pooled fit costs, against
#: the soft-L1 log residuals of the part's labels: too little lets a few hundred labels push
#: rarely-exercised constants far, too much holds the refit back (docs/costmodel.md, "Measured
#: choices behind constants"). The adaptation trees are trained at this weight too.
REFIT_PRIOR_WEIGHT = 0.3
#: The universal model's hyper-parameters where they differ from LatencyModel's defaults: shallower,
#: wider-leaved trees, since unseen device values make the labels of one datasheet spread.
UNIVERSAL_PARAMS = {"max_depth": 8, "learning_rate": 0.08, "n_estimators": 2000, "early_stopping_rounds": 60,
                    "min_child_weight": 5.0, "featurizer": "universal"}


@dataclass
class FamilyDataset:
    """A family dataset read back: its settings, the family, each datasheet's first device (config
    and rows) and, per device, its rows measured on the datasheet's siblings (rows x siblings, ms)."""

    folder: Path
    manifest: dict
    family: Family
    devices: list[tuple[HardwareConfig, Dataset]]
    siblings: list[np.ndarray]
    probes: list[np.ndarray] | None  # per datasheet, its devices x probes (ms); None: made before probes


def read_family_dataset(folder: str | Path) -> FamilyDataset:
    """family.json and every device's dataset, each checked against the config it was labelled for."""
    folder = Path(folder)
    mpath = folder / FAMILY_MANIFEST
    if not mpath.is_file():
        raise DatasetError(f"no family dataset in {folder}/ ({FAMILY_MANIFEST} missing); make one with "
                           "`autotune synth --hw-family family --out " + str(folder) + "`")
    try:
        m = json.loads(mpath.read_text())
        fam = parse_family(m["family_spec"], str(mpath))
        entries = m["devices"]
        if not isinstance(entries, list) or not entries:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise DatasetError(f"{mpath} is corrupted; remake it with `autotune synth --hw-family ... --force`") from None
    devices, sibs, probes = [], [], []
    for e in entries:
        try:
            hw = parse_hardware(e["config"], f"{mpath} device {e['name']}")
            sub = folder / str(e["folder"])
        except (KeyError, TypeError):
            raise DatasetError(f"{mpath} has a malformed device entry") from None
        if Path(e["folder"]).name != e["folder"]:
            raise DatasetError(f"{mpath}: device folder {e['folder']!r} is not a folder of {folder}/")
        if hw.hash != e.get("hardware_hash"):
            raise DatasetError(f"{mpath}: device {e['name']}'s config does not match its recorded hash")
        data = read_dataset(sub, hw)
        devices.append((hw, data))
        try:
            hashes = [str(sib["hardware_hash"]) for sib in e.get("siblings") or []]
        except (KeyError, TypeError):
            raise DatasetError(f"{mpath} has a malformed sibling entry") from None
        sibs.append(sibling_rows(sub, data, hashes))
        probes.append(_probe_entry(e, 1 + len(hashes), mpath))
    have = [p for p in probes if p is not None]
    if have and len(have) != len(probes):
        raise DatasetError(f"{mpath} records probes for some devices only; remake it with "
                           "`autotune synth --hw-family ... --force`")
    return FamilyDataset(folder, m, fam, devices, sibs, have or None)


def _probe_entry(entry: dict, n_devices: int, mpath: Path) -> np.ndarray | None:
    """A datasheet's probe latencies (devices x PROBE_LABELS, ms), checked; None if not recorded."""

    if "probes_ms" not in entry:
        return None
    try:
        ms = np.asarray(entry["probes_ms"], dtype=np.float64)
    except (TypeError, ValueError):
        ms = np.zeros(0)
    if ms.shape != (n_devices, PROBE_LABELS) or not (np.isfinite(ms).all() and (ms > 0).all()):
        raise DatasetError(f"{mpath}: device {entry.get('name')!r} has malformed probe latencies; remake it with "
                           "`autotune synth --hw-family ... --force`")
    return ms


def sibling_rows(sub: Path, data: Dataset, hashes: list[str]) -> np.ndarray:
    """The dataset's rows as measured on its siblings (rows x siblings, ms), checked against the
    dataset (its digest, row order) and the siblings' hashes; synth keeps a file that passes."""
    import pyarrow.parquet as pq

    if not hashes:
        return np.zeros((len(data.rows), 0))
    path = sub / SIBLINGS_FILE
    remake = "rerun `autotune synth --hw-family ...` to remake it"
    if not path.is_file():
        raise DatasetError(f"{path} is missing; {remake}")
    try:
        have = json.loads(pq.read_schema(path).metadata[b"autotune"])
    except (OSError, KeyError, TypeError, ValueError):
        raise DatasetError(f"{path} is damaged or was not written by autotune; {remake}") from None
    if have != sibling_stamp(data, hashes):
        raise DatasetError(f"{path} measures other rows or other siblings than family.json lists; {remake}")
    f = read_parquet(path)
    cols = [f"latency_ms_{j + 1}" for j in range(len(hashes))]
    ok = (len(f) == len(data.rows) and all(c in f for c in cols)
          and (f["group_id"].to_numpy() == data.rows["group_id"].to_numpy()).all()
          and (f["cores"].to_numpy() == data.rows["cores"].to_numpy()).all())
    ms = f[cols].to_numpy(np.float64) if ok else np.zeros((0, 0))
    if not ok or not (np.isfinite(ms).all() and (ms > 0).all()):
        raise DatasetError(f"{path} does not match its dataset's rows or holds a latency that is not positive; "
                           f"{remake}")
    return ms


def sibling_stamp(data: Dataset, hashes: list[str]) -> dict:
    """What siblings.parquet records of what it measured: the dataset's digest and the siblings' hashes."""
    return {"dataset_digest": data.digest, "siblings": [str(h) for h in hashes]}


def device_rows(data: Dataset, hw: HardwareConfig) -> tuple[np.ndarray, np.ndarray]:
    """(universal feature rows, latencies in ms) of one part's dataset (features cached per shard)."""
    X, _ = dataset_features(data, hw)
    cores = data.rows["cores"].to_numpy(np.int64)
    return np.hstack([X, universal_columns(hw.datasheet, cores)]), data.rows["latency_ms"].to_numpy(np.float64)


def family_rows(fd: FamilyDataset, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(universal feature rows, latencies in ms of each datasheet's first device, the mean of each
    row over the datasheet's devices (the universal model's target), the datasheet index of each row)
    over the whole family. The arithmetic mean, not the geometric: a plan's expected latency is the
    sum of its kernels' means, and the geometric mean understates the kernels whose latency varies
    most between devices (by about half the variance of the log: 3.5% at the 90th percentile of the training draw),
    which tilts zero-shot plans toward them."""
    from tqdm import tqdm

    Xs, ys, ms, ds = [], [], [], []
    for i, ((hw, data), sib) in enumerate(tqdm(list(zip(fd.devices, fd.siblings)), desc="features", unit="device",
                                               disable=not progress, leave=False)):
        X, y = device_rows(data, hw)
        Xs.append(X)
        ys.append(y)
        ms.append((y + sib.sum(axis=1)) / (1 + sib.shape[1]))
        ds.append(np.full(len(y), i, dtype=np.int64))
    return np.vstack(Xs), np.concatenate(ys), np.concatenate(ms), np.concatenate(ds)


def train_universal(data_dir: str | Path, out_dir: str | Path, seed: int = 0, progress: bool = False,
                    **params) -> tuple[LatencyModel, dict]:
    """Fit one model on every device of a family dataset; publish it to `out_dir` with meta.json
    recording the family (its ranges and hash) and the accuracy on the held-out devices."""

    check_folder_output(out_dir, UNIVERSAL, inputs=[data_dir])
    fd = read_family_dataset(data_dir)
    X, y, y_mean, dev = family_rows(fd, progress)
    model = LatencyModel(random_state=seed, verbose=progress, **{**UNIVERSAL_PARAMS, **params})
    t0 = time.perf_counter()
    model.fit(X, y_mean, groups=dev)  # the validation split holds out whole datasheets
    fit_s = time.perf_counter() - t0
    _, va = model.split(len(X), dev)
    pred = model.predict(X[va])
    held = sorted(set(dev[va].tolist()))
    # accuracy against one device's measurements: what a user of an unseen part meets
    per_device = {fd.devices[i][0].name: accuracy(pred[dev[va] == i], y[va][dev[va] == i]) for i in held}
    t0 = time.perf_counter()
    # the adaptation trees correct one device's refitted roofline: they learn from single devices' labels
    trees, best, adapt_acc = adaptation_trees(model, X, y, dev, seed, progress)
    raw = bytes(trees.save_raw(raw_format="ubj"))
    extra = {ADAPT_TREES_FILE: raw}
    probe_meta = None
    if fd.probes is not None:
        t1 = time.perf_counter()
        ptrees, pbest, pacc = probe_trees(model, fd, X, dev, seed, progress)
        praw = bytes(ptrees.save_raw(raw_format="ubj"))
        extra[PROBE_TREES_FILE] = praw
        probe_meta = {"file": PROBE_TREES_FILE, "sha256": hashlib.sha256(praw).hexdigest(), "best_iteration": pbest,
                      "fit_s": round(time.perf_counter() - t1, 2), "validation": pacc}
    metrics = {"fit_s": round(fit_s, 2), "train_rows": len(X), "best_iteration": model.best_iteration_,
               "validation": accuracy(pred, y[va]), "validation_devices": per_device}
    meta = provenance(
        f"universal:{fd.family.name}", None, data_dir, len(X), seed,
        fd.manifest.get("settings", {}).get("generator_version"), metrics, universal=True,
        family={"name": fd.family.name, "hash": fd.family.hash, "spec": fd.family.spec}, devices=len(fd.devices),
        siblings=1 + int(fd.siblings[0].shape[1]), labels=int(len(X) + sum(s.size for s in fd.siblings)),
        family_seed=fd.manifest.get("settings", {}).get("seed"),
        train_devices=[hw.hash for hw, _ in fd.devices]
        + [sib["hardware_hash"] for e in fd.manifest["devices"] for sib in e.get("siblings") or []],
        adapt_trees={"file": ADAPT_TREES_FILE, "sha256": hashlib.sha256(raw).hexdigest(), "best_iteration": best,
                     "fit_sizes": list(ADAPT_FIT_SIZES), "fit_s": round(time.perf_counter() - t0, 2),
                     "validation": adapt_acc},
        probe_trees=probe_meta)
    with FolderLock(Path(out_dir)):
        model.save(out_dir, meta, extra)
        # the model as every later use sees it: its extra trees and meta.json come with loading
        return LatencyModel.load(out_dir), meta


def refit_roofline(model: LatencyModel, parts: dict[str, np.ndarray], y_ms: np.ndarray, rows: np.ndarray,
                   seed: int) -> RooflineFit:
    """The roofline refitted to one part's labelled `rows`: a MAP fit toward the family's pooled fit
    (`model.calibration_`), so a few labels refine it without running wild."""

    return fit_roofline({k: v[rows] for k, v in parts.items()}, y_ms[rows] * 1e3, seed=seed,
                        prior=model.calibration_, prior_weight=REFIT_PRIOR_WEIGHT)


def refitted_margins(model: LatencyModel, X: np.ndarray, y: np.ndarray, dev: np.ndarray, seed: int) -> np.ndarray:
    """Each row's prior as `adapt` would make it: the roofline refitted to a few labels (one of
    ADAPT_FIT_SIZES, at random) of its own device; natural log of ms."""
    rng = np.random.default_rng([seed, 0xADA])
    parts = model._parts(X)
    margin = np.empty(len(X))
    for i in np.unique(dev):
        rows = np.flatnonzero(dev == i)
        sub = rng.choice(rows, min(len(rows), int(rng.choice(ADAPT_FIT_SIZES))), replace=False)
        margin[rows] = refit_roofline(model, parts, y, sub, seed).log_ms({k: v[rows] for k, v in parts.items()})
    return margin


def adaptation_trees(model: LatencyModel, X: np.ndarray, y: np.ndarray, dev: np.ndarray, seed: int,
                     progress: bool = False) -> tuple[xgb.Booster, int, dict]:
    """Trees that correct a roofline refitted to each device's few labels, learned over every device
    (validated on held-out devices): `adapt` puts them on top of the part's own refitted roofline."""
    margin = refitted_margins(model, X, y, dev, seed)
    tr, va = model.split(len(X), dev)
    logy = np.log(y)
    booster, _ = boost(model._xgb_params(), (X[tr], logy[tr], margin[tr]), model.n_estimators,
                       val=(X[va], logy[va], margin[va]), early_stopping=model.early_stopping_rounds, progress=progress)
    best = booster.num_boosted_rounds() - 1
    pred = np.exp(booster.inplace_predict(X[va], base_margin=margin[va]))
    return booster, best, accuracy(pred, y[va])


def probe_trees(model: LatencyModel, fd: FamilyDataset, X: np.ndarray, dev: np.ndarray, seed: int,
                progress: bool = False) -> tuple[xgb.Booster, int, dict]:
    """Trees that predict each device's log departure from `model`'s prediction from its rows'
    features and its probe residuals (the same for all of a device's rows), learned over every
    device of the draw, siblings included, and validated on held-out datasheets."""

    assert fd.probes is not None
    rng = np.random.default_rng([seed, 0x9B0])
    logp = np.log(model.predict(X))
    _, va = model.split(len(X), dev)
    held = np.zeros(len(fd.devices), dtype=bool)
    held[np.unique(dev[va])] = True
    feats, target, is_va = [], [], []
    for i, ((hw, data), sib) in enumerate(zip(fd.devices, fd.siblings)):
        rows = np.flatnonzero(dev == i)
        lat = np.column_stack([data.rows["latency_ms"].to_numpy(np.float64), sib])
        for j, r in enumerate(probe_residuals(model, hw, fd.probes[i], probe_pairs(hw))):
            pick = rng.random(len(rows)) < PROBE_ROW_SHARE / lat.shape[1]
            sel = rows[pick]
            feats.append(np.hstack([X[sel], np.tile(r.astype(np.float32), (len(sel), 1))]))
            target.append(np.log(lat[pick, j]) - logp[sel])
            is_va.append(np.full(len(sel), held[i]))
    F, T, V = np.vstack(feats), np.concatenate(target), np.concatenate(is_va)
    params = {**PROBE_PARAMS, "seed": seed, "nthread": 0}
    booster, _ = boost(params, (F[~V], T[~V], None), model.n_estimators, val=(F[V], T[V], None),
                       early_stopping=model.early_stopping_rounds, progress=progress)
    best = booster.num_boosted_rounds() - 1
    zero = float(np.mean(np.abs(T[V])))
    mae = float(np.mean(np.abs(T[V] - booster.inplace_predict(F[V]))))
    return booster, best, {"mae_log_without_probes": round(zero, 4), "mae_log": round(mae, 4)}


def is_universal(model: LatencyModel) -> bool:
    return bool(getattr(model, "meta_", {}).get("universal"))


def model_family(model: LatencyModel) -> Family:
    """The family a universal model was trained over, from its meta.json."""
    try:
        return parse_family(model.meta_["family"]["spec"], "the model's meta.json")
    except (KeyError, TypeError):
        raise ModelFileError("the universal model's meta.json does not record its family; retrain it") from None


def load_universal(folder: str | Path, hw: HardwareConfig | None = None) -> tuple[LatencyModel, list[str]]:
    """The universal model in `folder` and the datasheet values of `hw` outside its family's ranges
    (the caller warns for those: the model extrapolates there; none without `hw`)."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise ModelFileError(f"no universal model in {folder}/; make it with `autotune synth --hw-family family` "
                             "then `autotune train --universal`")
    model = LatencyModel.load(folder)
    if not is_universal(model):
        raise ModelFileError(f"the model in {folder}/ was trained for one part ({model.meta_.get('hardware')!r}), "
                             "not as a universal model; train one with `autotune train --universal`")
    return model, [] if hw is None else model_family(model).outside(hw)
