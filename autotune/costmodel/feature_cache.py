"""The feature matrices of a dataset's rows, cached beside its shards: computed from the datasheet
by a featurizer of autotune/costmodel/features.py, keyed by the shard's digest, the featurizer and its
version, and the feature code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autotune.costmodel.features import Featurizer, get_featurizer
from autotune.data.dataset import ZOO_FILE, Dataset, file_digest, groups_of, parquet_bytes
from autotune.errors import DatasetError
from autotune.fileio import atomic_write, source_digest
from autotune.frontends import zoo
from autotune.hardware.config import HardwareConfig
from autotune.hardware.host import host_cores
from autotune.ir.tables import GroupBatch

FEATURE_DIR = "features"

_CACHE_KEY = b"autotune.costmodel.features"


#: Rows above which `compute_features` splits a frame over worker processes (rebuilding groups from
#: their JSON is pure Python: about 1.3 ms a group, a minute for the zoo's 47,000 candidates).
PARALLEL_ROWS = 50_000


#: Groups of each zoo network rebuilt from their JSON to check the zoo rows' fast path (`_zoo_features`).
ZOO_CHECKS = 3


def compute_features(frame: pd.DataFrame, hw: HardwareConfig, jobs: int | None = None,
                     featurizer: str = "datasheet") -> np.ndarray:
    """Feature matrix (the featurizer's columns) of a measurement frame's rows, from the datasheet.
    Zoo rows (zoo.parquet's) are read as spans of their built-in network; any other frame over
    PARALLEL_ROWS rows is split by group over `jobs` processes (default: the usable cores)."""
    f = get_featurizer(featurizer)
    fast = _zoo_features(frame, hw, f)
    if fast is not None:
        return fast
    jobs = jobs or host_cores()
    if len(frame) <= PARALLEL_ROWS or jobs < 2:
        return _features(frame, hw, f)
    from joblib import Parallel, delayed

    # whole groups to each chunk, so a group is rebuilt once
    codes = pd.factorize(frame["group_id"], sort=False)[0]
    chunk = np.minimum(codes * jobs // (codes.max() + 1), jobs - 1)
    parts = [rows for c in range(jobs) if len(rows := np.flatnonzero(chunk == c))]
    done = Parallel(n_jobs=jobs)(delayed(_features)(frame.iloc[rows], hw, f) for rows in parts)
    out = np.empty((len(frame), len(f.names)), dtype=np.float32)
    for rows, X in zip(parts, done):
        out[rows] = X
    return out


def _features(frame: pd.DataFrame, hw: HardwareConfig, f: Featurizer) -> np.ndarray:
    groups, codes = groups_of(frame)
    return f.batch(GroupBatch.build(groups), codes, frame["cores"].to_numpy(np.int64), hw.datasheet)


def _zoo_features(frame: pd.DataFrame, hw: HardwareConfig, f: Featurizer) -> np.ndarray | None:
    """The features of zoo rows (columns `model`, `i`, `j`: span [i, j) of a built-in network, as
    pipeline.zoo_frame writes them) from the network's spans in one batch, as the planner reads them,
    instead of one graph rebuilt from JSON a group (30x faster). None, and the caller rebuilds every
    group, unless the frame has those columns, names built-in networks only, and ZOO_CHECKS groups of
    each network rebuilt from their JSON give the same rows to the bit."""
    if not {"model", "i", "j"} <= set(frame.columns) or not len(frame):
        return None
    models = frame["model"].astype(str).to_numpy()
    if not set(models) <= set(zoo.names()):
        return None
    out = np.empty((len(frame), len(f.names)), dtype=np.float32)
    cores, start, end = (frame[c].to_numpy(np.int64) for c in ("cores", "i", "j"))
    for name in dict.fromkeys(models):
        rows = np.flatnonzero(models == name)
        graph = zoo.build(name)
        codes, spans = pd.factorize(pd.MultiIndex.from_arrays([start[rows], end[rows]]), sort=False)
        si, sj = spans.get_level_values(0).to_numpy(np.int64), spans.get_level_values(1).to_numpy(np.int64)
        if np.any(si < 0) or np.any(sj > len(graph.order)) or np.any(si >= sj):
            return None
        out[rows] = f.batch(GroupBatch.from_ranges(graph, si, sj), codes, cores[rows], hw.datasheet)
        check = rows[np.isin(codes, np.unique(np.linspace(0, len(spans) - 1, ZOO_CHECKS).round().astype(int)))]
        try:
            if not np.array_equal(_features(frame.iloc[check], hw, f), out[check]):
                return None
        except DatasetError:  # an unreadable group_json: the JSON path says which
            return None
    return out


def feature_code_digest() -> str:
    """Digest of the code that computes features: a cache made by other code is recomputed, even
    when nobody bumped FEATURE_VERSION."""
    return source_digest("autotune.costmodel.features", "autotune.hardware.analytic", "autotune.ir.tables",
                         "autotune.ir.graph", "autotune.ir.ops")


def cached_features(frame: pd.DataFrame, folder: Path, name: str, digest: str, hw: HardwareConfig,
                    featurizer: str = "datasheet") -> np.ndarray:
    """`compute_features` of one shard, read from `folder/features/<name>[.<featurizer>].parquet` when
    that file was made from the same shard digest, featurizer version and datasheet; otherwise
    computed and cached."""
    f = get_featurizer(featurizer)
    names = list(f.names)
    key = {"shard_digest": digest, "featurizer": f.name, "feature_version": f.version,
           "feature_code": feature_code_digest(), "datasheet_hash": hw.datasheet_hash, "rows": len(frame)}
    suffix = "" if f.name == "datasheet" else f".{f.name}"
    path = folder / FEATURE_DIR / f"{Path(name).stem}{suffix}.parquet"
    try:
        meta = json.loads((pq.read_metadata(path).metadata or {}).get(_CACHE_KEY, b"null"))
        if meta == key:
            X = pq.read_table(path, page_checksum_verification=True).to_pandas()[names]
            X = X.to_numpy(np.float32)
            if X.shape == (len(frame), len(names)) and np.isfinite(X).all():
                return X
    except (OSError, ValueError, KeyError, pa.ArrowException):
        pass  # absent, stale or damaged: recompute
    X = compute_features(frame, hw, featurizer=f.name)
    table = pa.Table.from_pandas(pd.DataFrame(X, columns=names), preserve_index=False)
    table = table.replace_schema_metadata({_CACHE_KEY: json.dumps(key).encode()})
    data = parquet_bytes(table)

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    try:
        atomic_write(path, write)
    except OSError:
        pass  # a read-only dataset folder still trains, just without the cache
    return X


def dataset_features(ds: Dataset, hw: HardwareConfig,
                     featurizer: str = "datasheet") -> tuple[np.ndarray, np.ndarray | None]:
    """Feature matrices (by `featurizer`) of the training rows (shards in manifest order) and of
    zoo.parquet (or None)."""
    parts, start = [], 0
    for name, digest, n in zip(ds.manifest["shards"], ds.shard_digests, ds.manifest["shard_rows"]):
        parts.append(cached_features(ds.rows.iloc[start:start + n], ds.folder, name, digest, hw, featurizer))
        start += n
    X = np.vstack(parts) if parts else np.zeros((0, 0), np.float32)
    Xz = None
    if ds.zoo is not None and len(ds.zoo):
        Xz = cached_features(ds.zoo, ds.folder, ZOO_FILE, file_digest(ds.folder / ZOO_FILE), hw, featurizer)
    return X, Xz
