"""Labelled datasets on disk: measurements in, feature matrices out.

A dataset folder (`data/<hw>/`) holds Parquet shards of *measurements*, one row per (group,
cores) pair: `group_id`, `group_json` (the group as a standalone graph), `cores`, `latency_ms`
and `source` (`simulator`, or `profile` for rows measured on a real device), plus descriptive
columns. `manifest.json` lists the shards with their SHA-256 digests. `zoo.parquet` holds the
zoo networks' candidate groups in the same format, for evaluation only. `unrunnable.parquet`, if
the manifest lists it, holds the (group, cores) pairs a measured part could not run (a kernel that
failed to compile or to run gives no latency): `group_id`, `group_json`, `cores`, no label.

Features are not stored with the labels: they are computed when a model is trained and cached
under `features/`, one file per shard, keyed by the shard's digest, the feature schema version
and the datasheet, so a feature change needs no relabelling and measured profiles from a real
device share the simulator's format.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from autotune.errors import DatasetError
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import graph_from_dict

MANIFEST = "manifest.json"
ZOO_FILE = "zoo.parquet"
UNRUNNABLE_FILE = "unrunnable.parquet"
#: Columns every measurement row has.
ROW_COLUMNS = ["group_id", "group_json", "cores", "latency_ms", "source"]
#: Descriptive columns (coverage plots, debugging); never model inputs.
DESC_COLUMNS = ["macs", "ops", "max_channels", "n_layers", "batch", "kind", "structure"]


#: A shard's file name: shards live in their dataset folder, nowhere else.
SHARD_NAME = re.compile(r"shard-\d{5}\.parquet")


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex, 16 characters)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as Parquet bytes (zstd) with page checksums, so a flipped bit is found on reading."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True, write_statistics=False)
    return sink.getvalue().to_pybytes()


def read_parquet(path: str | Path) -> pd.DataFrame:
    """A Parquet file with its page checksums verified; a damaged file is a DatasetError."""
    try:
        return pq.read_table(path, page_checksum_verification=True).to_pandas()
    except (OSError, pa.ArrowException, ValueError) as err:
        raise DatasetError(f"{path} is damaged or not a Parquet file ({str(err).splitlines()[0][:80]}); "
                           "rerun `autotune synth` to remake it") from None


class _ZooEntry(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    file: str
    rows: int
    digest: str | None = None


class Manifest(BaseModel):
    """What manifest.json must hold; other settings may follow."""

    model_config = ConfigDict(extra="allow", strict=True)
    hardware: str
    hardware_hash: str
    shards: list[str]
    shard_rows: list[int]
    shard_digests: list[str]
    rows: int
    zoo: _ZooEntry | None = None
    unrunnable: _ZooEntry | None = None

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        if not (len(self.shards) == len(self.shard_rows) == len(self.shard_digests)):
            raise ValueError("shards, shard_rows and shard_digests differ in length")
        bad = [s for s in self.shards if not SHARD_NAME.fullmatch(s)]
        if bad:
            raise ValueError(f"shard {bad[0]!r} is not a shard file name of this folder (shard-NNNNN.parquet)")
        if len(set(self.shards)) != len(self.shards):
            raise ValueError("a shard is listed twice")
        if any(r < 0 for r in self.shard_rows) or sum(self.shard_rows) != self.rows:
            raise ValueError(f"rows {self.rows} is not the sum of shard_rows")
        if self.zoo is not None and self.zoo.file != ZOO_FILE:
            raise ValueError(f"zoo.file must be {ZOO_FILE!r}")
        if self.unrunnable is not None and self.unrunnable.file != UNRUNNABLE_FILE:
            raise ValueError(f"unrunnable.file must be {UNRUNNABLE_FILE!r}")
        return self


@dataclass
class Dataset:
    """A labelled dataset folder read back: measurement rows, the manifest and its digest, the zoo rows,
    and the pairs the part could not run (`unrunnable`: group_id, group_json, cores; None if none)."""

    folder: Path
    rows: pd.DataFrame
    manifest: dict
    digest: str
    zoo: pd.DataFrame | None
    shard_digests: list[str]
    unrunnable: pd.DataFrame | None = None


def _remake_hint(hw: HardwareConfig) -> str:
    """How to make a dataset for `hw`: label it on the simulator, or measure a part without `device:`."""
    if hw.has_device:
        return f"regenerate it with `autotune synth --hw {hw.name} --force`"
    return f"{hw.name} has no device: section: measure it and `autotune import-profile` the measurements"


def read_dataset(folder: str | Path, hw: HardwareConfig) -> Dataset:
    """Read every shard listed in manifest.json, each checked against its digest and row count;
    refuse a manifest that is malformed, points outside its folder or is for other hardware."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise DatasetError(f"no dataset in {folder}/ (manifest.json missing)")
    try:
        raw = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DatasetError(f"{mpath} is corrupted (not JSON); regenerate with `autotune synth --force`") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{mpath} is corrupted (not a JSON object); regenerate with `autotune synth --force`")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = str(e["msg"]).removeprefix("Value error, ")
        raise DatasetError(f"{mpath} is invalid: {loc}: {msg}; regenerate with `autotune synth --force`") from None
    if manifest.hardware_hash != hw.hash:
        raise DatasetError(f"dataset in {folder}/ was labelled for hardware {manifest.hardware!r} "
                           f"(hash {manifest.hardware_hash}), not {hw.name!r} (hash {hw.hash}); {_remake_hint(hw)}")
    frames = []
    for name, rows, digest in zip(manifest.shards, manifest.shard_rows, manifest.shard_digests):
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"dataset in {folder}/ is missing shard {name}; rerun `autotune synth` to resume")
        if file_digest(path) != digest:
            raise DatasetError(f"shard {path} is corrupted (its digest differs from the manifest's); "
                               "rerun `autotune synth` to remake it")
        frame = read_parquet(path)
        if len(frame) != rows:
            raise DatasetError(f"shard {path} has {len(frame)} rows, the manifest says {rows}; "
                               "regenerate with `autotune synth --force`")
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        raise DatasetError(f"dataset in {folder}/ is empty; generate it with `autotune synth`")
    absent = [c for c in ROW_COLUMNS if c not in rows.columns]
    if absent:
        raise DatasetError(f"dataset in {folder}/ lacks column {absent[0]!r}; "
                           "regenerate it with `autotune synth --force`")
    ms = pd.to_numeric(rows["latency_ms"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(ms) | (ms <= 0)
    if bad.any():
        raise DatasetError(f"dataset in {folder}/ has {int(bad.sum())} latencies that are not positive numbers "
                           f"(first: group {rows['group_id'].iloc[int(np.argmax(bad))]!r})")
    cores = pd.to_numeric(rows["cores"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isin(cores, np.asarray(hw.core_counts, dtype=np.float64))
    if bad.any():
        k = int(np.argmax(bad))
        raise DatasetError(f"dataset in {folder}/ has {int(bad.sum())} rows whose cores are not one of "
                           f"{hw.name}'s core counts {list(hw.core_counts)} (first: {rows['cores'].iloc[k]}, "
                           f"group {rows['group_id'].iloc[k]!r})")
    js = rows["group_json"]
    bad = (js.str.len().isna() if js.dtype == object or pd.api.types.is_string_dtype(js)
           else pd.Series(True, index=js.index)).to_numpy(bool)  # .str.len() is NaN where a value is no text
    if bad.any():
        raise DatasetError(f"dataset in {folder}/ has {int(bad.sum())} rows with no group_json text "
                           f"(first: group {rows['group_id'].iloc[int(np.argmax(bad))]!r})")
    rows["latency_ms"], rows["cores"] = ms, cores.astype(np.int64)
    digest = hashlib.sha256(mpath.read_bytes()).hexdigest()[:16]
    zpath = folder / ZOO_FILE
    zoo = None
    if manifest.zoo is not None and zpath.is_file():
        if manifest.zoo.digest is not None and file_digest(zpath) != manifest.zoo.digest:
            raise DatasetError(f"{zpath} is corrupted (its digest differs from the manifest's); "
                               "rerun `autotune synth` to remake it")
        zoo = read_parquet(zpath)
    return Dataset(folder, rows, raw, digest, zoo, list(manifest.shard_digests), _unrunnable(folder, manifest, hw))


def _unrunnable(folder: Path, manifest: Manifest, hw: HardwareConfig) -> pd.DataFrame | None:
    """The pairs the manifest lists as ones the part could not run, checked like a shard; None if none."""
    entry = manifest.unrunnable
    if entry is None or not entry.rows:
        return None
    path = folder / UNRUNNABLE_FILE
    if not path.is_file():
        raise DatasetError(f"dataset in {folder}/ is missing {UNRUNNABLE_FILE}, which its manifest lists")
    if entry.digest is not None and file_digest(path) != entry.digest:
        raise DatasetError(f"{path} is corrupted (its digest differs from the manifest's)")
    frame = read_parquet(path)
    if len(frame) != entry.rows or any(c not in frame.columns for c in ("group_id", "group_json", "cores")):
        raise DatasetError(f"{path} does not hold the {entry.rows} pairs (group_id, group_json, cores) its "
                           "manifest lists")
    frame["cores"] = pd.to_numeric(frame["cores"], errors="coerce")
    if not frame["cores"].isin(list(hw.core_counts)).all():
        raise DatasetError(f"{path} lists a pair whose cores are not one of {hw.name}'s core counts "
                           f"{list(hw.core_counts)}")
    frame["cores"] = frame["cores"].astype(np.int64)
    return frame


def groups_of(frame: pd.DataFrame) -> tuple[list, np.ndarray]:
    """The distinct groups of a measurement frame (rebuilt from `group_json`) and each row's index into them."""

    codes, uniq = pd.factorize(frame["group_id"], sort=False)
    first = pd.Series(np.arange(len(frame))).groupby(codes).first().to_numpy()
    graphs = []
    for r in first:
        try:
            graphs.append(graph_from_dict(json.loads(frame["group_json"].iat[int(r)])))
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"group {uniq[len(graphs)]!r} has an unreadable group_json: {err}") from None
    return [g.group(0, len(g)) for g in graphs], codes.astype(np.int64)
