"""Active sampling (`autotune synth --sampling active`): spend a label budget where it changes plans.

Measurements cost seconds each on a real device, so the budget is spent in rounds:

- round 0 measures a space-filling (Sobol) set of groups at every core count;
- each later round trains a small ensemble of cost models on everything measured so far
  (bootstrap over groups, so the calibrated roofline varies as well as the trees), draws a pool
  of fresh candidate groups from the next stretch of the Sobol sequence, and measures the
  (group, cores) pairs with the highest score

      spread x near_best x density

  `spread`: the ensemble's disagreement on log latency (where the model is unsure);
  `near_best`: how close the pair is to the best predicted core count of its group, since a
  planner only ever picks near-best pairs, and an error elsewhere changes no plan (this is what
  goes past nn-Meter's error-driven adaptive sampling: sampling for decisions);
  `density`: how close the group lies to real networks' candidate groups (the zoo's, or ONNX
  files given by the user) in a standardised feature space. Those groups are never labelled.

Every round is a shard (`shard-0000r.parquet`) recording the settings and its round; a killed run
resumes from the rounds on disk and, being deterministic, makes the same dataset.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from autotune.costmodel.feature_cache import compute_features
from autotune.costmodel.features import FEATURE_NAMES, GROUP_FEATURES, featurize, group_features
from autotune.costmodel.model import LatencyModel
from autotune.data.dataset import groups_of
from autotune.frontends import zoo
from autotune.frontends.synthetic import generate_range
from autotune.hardware.config import HardwareConfig
from autotune.ir.tables import GroupBatch
from autotune.planning.planner import candidates
from autotune.synth.shards import (
    Ledger,
    generated_frame,
    graphs_frame,
    read_meta,
    same_settings,
    shard_name,
    shard_seed,
    to_parquet_bytes,
)

#: Bump when the selection changes for given settings: datasets record it.
ACTIVE_VERSION = 1
ROUNDS = 5  # rounds after the space-filling one
INIT_SHARE = 0.3  # of the budget spent on the space-filling round
POOL_FACTOR = 6  # candidate pairs drawn per label spent in a round
ENSEMBLE = 4  # bootstrap members
MAX_PER_GROUP = 3  # pairs of one candidate group measured in one round
NEAR_BEST_LOG = 0.15  # near_best = exp(-(log pred - log best pred) / NEAR_BEST_LOG)
_DENSITY_FEATURES = ["log_macs", "log_vector_ops", "n_layers", "log_weight_bytes", "log_in_bytes", "log_out_bytes",
                     "log_internal_bytes", "max_out_ch", "max_h", "dw_macs_share", "window_share", "n_fc",
                     "n_matmul"]


def active_settings() -> dict:
    """What, besides the common settings, decides an active dataset's contents."""
    return {"active_version": ACTIVE_VERSION, "rounds": ROUNDS, "init_share": INIT_SHARE, "pool_factor": POOL_FACTOR,
            "ensemble": ENSEMBLE}


def min_budget(n_cores: int) -> int:
    """The smallest budget active sampling accepts: 10 groups at every core count to start from,
    and a label per later round."""
    return 10 * n_cores + ROUNDS


def round_sizes(budget: int, n_cores: int) -> list[int]:
    """Labels per round: the space-filling round (whole groups), then the rest split evenly."""
    first = max(10 * n_cores, int(INIT_SHARE * budget) // n_cores * n_cores)
    rest = budget - first
    return [first] + [rest // ROUNDS + (1 if r < rest % ROUNDS else 0) for r in range(ROUNDS)]


def run_rounds(hw: HardwareConfig, folder: Path, settings: dict,
               progress: bool) -> tuple[list[str], list[int], list[int]]:
    """Make (or resume) the rounds; returns (shard names, labels per shard, rounds made now)."""
    from tqdm import tqdm

    K = len(hw.core_counts)
    sizes = round_sizes(settings["budget"], K)
    seed = settings["seed"]
    frames: list[pd.DataFrame] = []
    made: list[int] = []
    next_index = sizes[0] // K  # Sobol indices used so far (round 0 takes the first ones)
    target = None
    ledger = Ledger(folder)
    bar = tqdm(total=sum(sizes), unit="label", desc="active", disable=not progress,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} labels [{elapsed}<{remaining}{postfix}]")
    try:
        for r, size in enumerate(sizes):
            path = folder / shard_name(r)
            meta, n = read_meta(path, verify=True) if ledger.intact(path) else (None, -1)
            pool_groups = 0 if r == 0 else max(20, math.ceil(POOL_FACTOR * size / K))
            if meta is not None and n == size and same_settings(meta, settings) and meta.get("shard") == r:
                frame = pd.read_parquet(path)
            else:
                if r == 0:
                    frame = generated_frame(hw, seed, 0, size // K, shard_seed(seed, r))
                else:
                    if target is None:
                        target = _target_features(hw)
                    frame, err = _select_round(hw, frames, seed, r, next_index, pool_groups, size, target)
                    bar.set_postfix_str(f"round {r}/{len(sizes) - 1}, validation error {err:.1%}", refresh=False)
                data = to_parquet_bytes(frame, {**settings, "shard": r, "round": r,
                                                 "pool": [next_index, next_index + pool_groups]})
                ledger.write(path, data)
                made.append(r)
            next_index += pool_groups
            frames.append(frame)
            bar.update(len(frame))
    finally:
        bar.close()
    return [shard_name(r) for r in range(len(sizes))], [len(f) for f in frames], made


def _target_features(hw: HardwareConfig) -> np.ndarray:
    """Standardisable group features of real networks' candidate groups (the zoo's): where plans
    are made. Computed from the graphs, never labelled."""

    groups = [c for name in zoo.names() for c in candidates(zoo.build(name), hw)]
    gf, _ = group_features(GroupBatch.build(groups), hw.datasheet)
    cols = [GROUP_FEATURES.index(f) for f in _DENSITY_FEATURES]
    return _density_space(gf[:, cols])


def _density_space(F: np.ndarray) -> np.ndarray:
    """Channel and size counts on a log scale, so distances compare shapes rather than magnitudes."""
    F = np.asarray(F, dtype=np.float64).copy()
    for name in ("max_out_ch", "max_h", "n_layers", "n_fc", "n_matmul"):
        i = _DENSITY_FEATURES.index(name)
        F[:, i] = np.log2(F[:, i] + 1)
    return F


def _select_round(hw: HardwareConfig, frames: list[pd.DataFrame], seed: int, r: int, start: int, pool_groups: int,
                  size: int, target: np.ndarray) -> tuple[pd.DataFrame, float]:
    """Train the ensemble on `frames`, score a fresh pool, measure the best `size` pairs."""
    from sklearn.neighbors import NearestNeighbors

    seen = pd.concat(frames, ignore_index=True)
    X = compute_features(seen, hw)
    y = seen["latency_ms"].to_numpy(np.float64)
    _, codes = groups_of(seen)
    rng = np.random.default_rng([seed, r, ACTIVE_VERSION])
    members, err = [], float("nan")
    n_groups = int(codes.max()) + 1
    for e in range(ENSEMBLE):
        pick = rng.integers(0, n_groups, n_groups)  # bootstrap over groups
        weight = np.bincount(pick, minlength=n_groups)
        rows = np.repeat(np.arange(len(y)), weight[codes])
        m = LatencyModel(random_state=int(rng.integers(2**31)), bags=1).fit(X[rows], y[rows], groups=codes[rows])
        members.append(m)
        if e == 0:
            err = float(np.expm1(m.val_mae_log_))
    # the pool: the next stretch of the Sobol sequence, at every core count
    graphs = generate_range(start + pool_groups, hw, seed, start, start + pool_groups)
    groups = [g.group(0, len(g)) for g in graphs]
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    K = len(ks)
    Xp = featurize([g for g in groups for _ in ks], np.tile(ks, len(groups)), hw)
    logp = np.stack([np.log(m.predict(Xp)) for m in members]).reshape(len(members), len(groups), K)
    spread = logp.std(0)
    mean = logp.mean(0)
    near_best = np.exp(-(mean - mean.min(1, keepdims=True)) / NEAR_BEST_LOG)
    cols = [FEATURE_NAMES.index(f) for f in _DENSITY_FEATURES]
    P = _density_space(Xp[::K][:, cols])
    mu, sd = target.mean(0), target.std(0) + 1e-9
    nn = NearestNeighbors(n_neighbors=1).fit((target - mu) / sd)
    d = nn.kneighbors((P - mu) / sd)[0][:, 0]
    density = 1.0 / (1.0 + (d / max(np.median(d), 1e-9)) ** 2)
    score = spread * near_best * density[:, None]
    # the best pairs, at most MAX_PER_GROUP of one group
    order = np.argsort(-score, axis=None, kind="stable")
    taken = np.zeros(len(groups), dtype=np.int64)
    chosen: dict[int, list[int]] = {}
    for flat in order:
        gi, ki = divmod(int(flat), K)
        if taken[gi] >= MAX_PER_GROUP:
            continue
        taken[gi] += 1
        chosen.setdefault(gi, []).append(ki)
        if taken.sum() == size:
            break
    picked = sorted(chosen)
    frame = graphs_frame(hw, [graphs[i] for i in picked], [start + i for i in picked], seed, shard_seed(seed, r),
                         [ks[sorted(chosen[i])] for i in picked])
    return frame, err
