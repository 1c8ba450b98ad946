"""The labels a universal model is adapted to one part with, and `adapt_for`, which spends them.

Simulated through the synth pipeline when the part has a `device:` section, or read from a measured
dataset (export-groups, measure, import-profile); the fit itself is autotune/costmodel/adapt.py's, which never
measures anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from autotune.costmodel.adapt import adapt
from autotune.costmodel.model import LatencyModel
from autotune.costmodel.model_io import provenance
from autotune.costmodel.probes import (
    PROBE_LABELS,
    PROBE_PREFIX,
    probe_id,
    probe_noise_seed,
    probe_pairs,
    probe_residuals,
    probes_from_rows,
)
from autotune.costmodel.universal import device_rows
from autotune.data.dataset import read_dataset
from autotune.errors import AutotuneError
from autotune.fileio import FolderLock
from autotune.synth.family_labels import measure_probes
from autotune.synth.pipeline import run

#: How `adapt` chooses the part's labels by default (autotune.synth.SAMPLINGS): each Sobol group at
#: one core count, so a budget buys as many distinct groups as labels (docs/costmodel.md, "Spread labels").
ADAPT_SAMPLING = "spread"


def part_labels(hw, universal: LatencyModel, budget: int, data_dir, seed: int = 0, sampling: str = ADAPT_SAMPLING,
                measured: bool = False, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      np.ndarray | None, str]:
    """`budget` labels of `hw` as (universal feature rows, latencies in ms, group ids, probe residuals
    or None, where they came from). Simulated into `data_dir` (chosen by `sampling`, as `synth` does),
    the probes first when the universal model has probe trees and the budget is at least twice what
    they take; or with `measured` read from the dataset already there (e.g. made by
    import-profile), its first `budget` labels, the probes first if it has every one of them
    (`export-groups --probes`)."""

    probing = universal.probe_trees_ is not None and budget >= 2 * PROBE_LABELS
    pairs, probe_ms = None, None
    if measured:
        data = read_dataset(data_dir, hw)
        source = f"measured, from {data_dir}/"
        probe_ms = probes_from_rows(data.rows, hw) if probing else None
    else:
        if not hw.has_device:
            raise AutotuneError(f"{hw.name} has no device: section, so its labels cannot be simulated: measure "
                                "it (export-groups, measure, import-profile) and pass the dataset with --data")
        run(hw, data_dir, budget - PROBE_LABELS if probing else budget, seed, force=True, progress=progress,
            zoo_models=[], sampling=sampling)
        data = read_dataset(data_dir, hw)
        source = f"simulated into {data_dir}/, {sampling} sampling"
        if probing:
            pairs = probe_pairs(hw)
            probe_ms = measure_probes(hw, probe_noise_seed(seed), pairs)
    X, y = device_rows(data, hw)
    groups = data.rows["group_id"].to_numpy()
    order = np.arange(len(y))
    if pairs is None and probe_ms is not None:  # measured probes (export-groups --probes): spent first
        is_probe = data.rows["group_id"].astype(str).str.startswith(PROBE_PREFIX).to_numpy()
        order = np.r_[np.flatnonzero(is_probe), np.flatnonzero(~is_probe)]
        source += f", {int(is_probe[order[:budget]].sum())} of them probes"
    keep = order[:budget]  # profiles hold more
    X, y, groups = X[keep], y[keep], groups[keep]
    if pairs is not None and probe_ms is not None:  # simulated probes: rows of their own
        X = np.vstack([X, universal.featurize_batch(*pairs, hw).astype(X.dtype)])
        y = np.concatenate([y, probe_ms])
        groups = np.concatenate([groups.astype(object), np.asarray([probe_id(g) for g in pairs[1]], dtype=object)])
        source += f", {PROBE_LABELS} of them probes"
    residuals = None if probe_ms is None else probe_residuals(universal, hw, probe_ms, pairs)
    return X, y, groups, residuals, source


def adapt_for(hw, universal: LatencyModel, budget: int, data_dir, out_dir, seed: int = 0,
              sampling: str = ADAPT_SAMPLING, measured: bool = False, progress: bool = False) -> dict:
    """Spend `budget` labels on `hw` (`part_labels`) and publish the adapted model to `out_dir`."""
    X, y, groups, residuals, source = part_labels(hw, universal, budget, data_dir, seed, sampling, measured, progress)
    t0 = time.perf_counter()
    res = adapt(universal, X, y, groups, seed, residuals)
    fit_s = round(time.perf_counter() - t0, 2)
    umeta = getattr(universal, "meta_", {})
    meta = provenance(hw.name, hw.hash, data_dir, len(y), seed, umeta.get("generator_version"),
                      {"fit_s": fit_s, "train_rows": len(y), "best_iteration": res.model.best_iteration_},
                      labels=len(y),
                      adapted_from={"family": umeta.get("family", {}).get("name"),
                                    "family_hash": umeta.get("family", {}).get("hash"),
                                    "model_sha256": umeta.get("model_sha256")},
                      adapt={"kind": res.kind, "rounds": res.rounds, "depth": res.depth,
                             "cv_mae_log_universal": res.cv_mae_universal, "cv_mae_log_adapted": res.cv_mae_adapted,
                             "probed": res.probed, "scratch": res.scratch})
    with FolderLock(Path(out_dir)):
        res.model.save(out_dir, meta)
    return {"labels": len(y), "source": source, "kind": res.kind, "rounds": res.rounds, "depth": res.depth,
            "cv_mae_universal": res.cv_mae_universal, "cv_mae_adapted": res.cv_mae_adapted, "probed": res.probed,
            "scratch": res.scratch,
            "model": res.model}
