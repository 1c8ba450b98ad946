"""Labelled datasets on disk: measurements in, feature matrices out.

A dataset folder (`data/<hw>/`) holds Parquet shards of *measurements*, one row per (group,
cores) pair: `group_id`, `group_json` (the group as a standalone graph), `cores`, `latency_ms`
and `source` (`simulator`, or `profile` for rows measured on a real device), plus descriptive
columns. `manifest.json` lists the shards with their SHA-256 digests. `zoo.parquet` holds the
zoo networks' candidate groups in the same format, for evaluation only.

Features are not stored with the labels: they are computed when a model is trained and cached
under `features/`, one file per shard, keyed by the shard's digest, the feature schema version
and the datasheet, so a feature change needs no relabelling and measured profiles from a real
device share the simulator's format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DatasetError
from .fileio import atomic_write
from .hardware import HardwareConfig

MANIFEST = "manifest.json"
ZOO_FILE = "zoo.parquet"
FEATURE_DIR = "features"
#: Columns every measurement row has.
ROW_COLUMNS = ["group_id", "group_json", "cores", "latency_ms", "source"]
#: Descriptive columns (coverage plots, debugging); never model inputs.
DESC_COLUMNS = ["macs", "ops", "max_channels", "n_layers", "batch", "kind", "structure"]
_CACHE_KEY = b"autotune.features"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex, 16 characters)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class Dataset:
    """A labelled dataset folder read back: measurement rows, the manifest and its digest, the zoo rows."""

    folder: Path
    rows: pd.DataFrame
    manifest: dict
    digest: str
    zoo: pd.DataFrame | None
    shard_digests: list[str]


def read_dataset(folder: str | Path, hw: HardwareConfig) -> Dataset:
    """Read every shard listed in manifest.json; refuse data for other hardware or missing shards."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise DatasetError(f"no dataset in {folder}/ (manifest.json missing); run `make synth HW={hw.name}` first")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError):
        raise DatasetError(f"{mpath} is corrupted (not JSON); regenerate with `autotune synth --force`") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{mpath} is corrupted (not a JSON object); regenerate with `autotune synth --force`")
    if manifest.get("hardware_hash") != hw.hash:
        raise DatasetError(f"dataset in {folder}/ was labelled for hardware {manifest.get('hardware')!r} "
                           f"(hash {manifest.get('hardware_hash')}), not {hw.name!r} (hash {hw.hash}); "
                           f"regenerate it with `autotune synth --hw {hw.name} --force`")
    shards = manifest.get("shards", [])
    if not isinstance(shards, list) or not all(isinstance(s, str) for s in shards):
        raise DatasetError(f"{mpath} is corrupted (shards is not a list of file names)")
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise DatasetError(f"dataset in {folder}/ is missing shard {missing[0]}; rerun `autotune synth` to resume")
    frames = [pd.read_parquet(folder / s) for s in shards]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        raise DatasetError(f"dataset in {folder}/ is empty; generate it with `autotune synth`")
    absent = [c for c in ROW_COLUMNS if c not in rows.columns]
    if absent:
        raise DatasetError(f"dataset in {folder}/ lacks column {absent[0]!r}; "
                           "regenerate it with `autotune synth --force`")
    digest = hashlib.sha256(mpath.read_bytes()).hexdigest()[:16]
    zpath = folder / ZOO_FILE
    zoo = pd.read_parquet(zpath) if zpath.is_file() else None
    listed = manifest.get("shard_digests")
    digests = listed if isinstance(listed, list) and len(listed) == len(shards) else [
        file_digest(folder / s) for s in shards]
    return Dataset(folder, rows, manifest, digest, zoo, [str(d) for d in digests])


def groups_of(frame: pd.DataFrame) -> tuple[list, np.ndarray]:
    """The distinct groups of a measurement frame (rebuilt from `group_json`) and each row's index into them."""
    from .graph import graph_from_dict

    codes, uniq = pd.factorize(frame["group_id"], sort=False)
    first = pd.Series(np.arange(len(frame))).groupby(codes).first().to_numpy()
    graphs = []
    for r in first:
        try:
            graphs.append(graph_from_dict(json.loads(frame["group_json"].iat[int(r)])))
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"group {uniq[len(graphs)]!r} has an unreadable group_json: {err}") from None
    return [g.group(0, len(g)) for g in graphs], codes.astype(np.int64)


def compute_features(frame: pd.DataFrame, hw: HardwareConfig) -> np.ndarray:
    """Feature matrix (FEATURE_NAMES columns) of a measurement frame's rows, from the datasheet."""
    from .features import featurize_batch
    from .tables import GroupBatch

    groups, codes = groups_of(frame)
    return featurize_batch(GroupBatch.build(groups), codes, frame["cores"].to_numpy(np.int64), hw.datasheet)


def feature_code_digest() -> str:
    """Digest of the code that computes features: a cache made by other code is recomputed, even
    when nobody bumped FEATURE_VERSION."""
    import importlib

    h = hashlib.sha256()
    for mod in ("autotune.features", "autotune.analytic", "autotune.tables", "autotune.graph"):
        h.update(Path(importlib.import_module(mod).__file__).read_bytes())
    return h.hexdigest()[:16]


def cached_features(frame: pd.DataFrame, folder: Path, name: str, digest: str, hw: HardwareConfig) -> np.ndarray:
    """`compute_features` of one shard, read from `folder/features/<name>.parquet` when that file was
    made from the same shard digest, feature version and datasheet; otherwise computed and cached."""
    from .features import FEATURE_NAMES, FEATURE_VERSION

    key = {"shard_digest": digest, "feature_version": FEATURE_VERSION, "feature_code": feature_code_digest(),
           "datasheet_hash": hw.datasheet_hash, "rows": len(frame)}
    path = folder / FEATURE_DIR / f"{Path(name).stem}.parquet"
    try:
        meta = json.loads((pq.read_metadata(path).metadata or {}).get(_CACHE_KEY, b"null"))
        if meta == key:
            X = pq.read_table(path).to_pandas()[list(FEATURE_NAMES)].to_numpy(np.float32)
            if X.shape == (len(frame), len(FEATURE_NAMES)):
                return X
    except (OSError, ValueError, KeyError, pa.ArrowException):
        pass  # absent, stale or unreadable: recompute
    X = compute_features(frame, hw)
    table = pa.Table.from_pandas(pd.DataFrame(X, columns=list(FEATURE_NAMES)), preserve_index=False)
    table = table.replace_schema_metadata({_CACHE_KEY: json.dumps(key).encode()})

    def write(tmp: str) -> None:
        pq.write_table(table, tmp, compression="zstd")

    try:
        atomic_write(path, write)
    except OSError:
        pass  # a read-only dataset folder still trains, just without the cache
    return X


def dataset_features(ds: Dataset, hw: HardwareConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature matrices of the training rows (shards in manifest order) and of zoo.parquet (or None)."""
    parts, start = [], 0
    for name, digest, n in zip(ds.manifest["shards"], ds.shard_digests, _shard_rows(ds)):
        parts.append(cached_features(ds.rows.iloc[start:start + n], ds.folder, name, digest, hw))
        start += n
    X = np.vstack(parts) if parts else np.zeros((0, 0), np.float32)
    Xz = None
    if ds.zoo is not None and len(ds.zoo):
        Xz = cached_features(ds.zoo, ds.folder, ZOO_FILE, file_digest(ds.folder / ZOO_FILE), hw)
    return X, Xz


def _shard_rows(ds: Dataset) -> list[int]:
    return [pq.read_metadata(ds.folder / s).num_rows for s in ds.manifest["shards"]]
