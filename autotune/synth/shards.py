"""Labelled rows of generated groups and the Parquet shards that hold them: what autotune/synth/pipeline.py
(Sobol datasets) and autotune/synth/active.py (active sampling) both write.

Every label comes from the device seam (autotune/device/base.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autotune.data.dataset import ROW_COLUMNS, file_digest, parquet_bytes
from autotune.device.base import Simulator
from autotune.errors import ConfigError
from autotune.fileio import atomic_write, atomic_write_json
from autotune.frontends.synthetic import describe, generate_range
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph, Group, graph_json

META_KEY = b"autotune.synth"


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.parquet"


def shard_seed(seed: int, k: int) -> int:
    """Noise seed of shard k: independent of how shards are scheduled."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def label_groups(groups: list[Group], hw: HardwareConfig, noise: bool, seed: int = 0,
                 cores: list[np.ndarray] | None = None) -> pd.DataFrame:
    """`cores` and `latency_ms` (the simulator's measurement) for each group at each of its core
    counts (`cores[i]`; default every core count), group-major, plus `pos`, the group's index."""
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    per = [ks] * len(groups) if cores is None else [np.asarray(c, dtype=np.int64) for c in cores]
    pos = np.repeat(np.arange(len(groups)), [len(c) for c in per])
    flat = np.concatenate(per) if per else np.zeros(0, np.int64)
    pairs = [groups[i] for i in pos]
    ms = Simulator(hw).measure(pairs, flat, seed=seed if noise else None)
    return pd.DataFrame({"pos": pos, "cores": flat, "latency_ms": ms})


def describe_group(g: Group) -> dict:
    ls = g.layers
    macs = sum(lyr.macs for lyr in ls)
    return {"macs": float(macs), "ops": float(macs if macs > 0 else sum(lyr.vector_ops for lyr in ls)),
            "max_channels": int(max(max(lyr.in_channels, lyr.out_channels) for lyr in ls)), "n_layers": len(ls),
            "batch": int(g.graph.batch)}


#: A label past this (ms, over a day) is no kernel's latency but a device value out of range.
MAX_LATENCY_MS = 1e8


def rows_frame(groups: list[Group], graphs: list[Graph], ids: list[str], extra: dict[str, Any], hw: HardwareConfig,
           noise: bool, seed: int, cores: list[np.ndarray] | None = None) -> pd.DataFrame:
    """Measurement rows of groups (at `cores[i]`, default all core counts): id, JSON, cores,
    latency, source, then descriptive columns."""
    with np.errstate(all="ignore"):  # what overflows is refused below, in one line
        lab = label_groups(groups, hw, noise, seed, cores)
    ms = lab["latency_ms"].to_numpy(np.float64)
    bad = ~(np.isfinite(ms) & (ms > 0) & (ms < MAX_LATENCY_MS))
    if bad.any():
        raise ConfigError(f"hardware {hw.name}: its device values give {int(bad.sum())} of {len(ms)} latencies that "
                          f"are no positive number below {MAX_LATENCY_MS:.0e} ms (e.g. {float(ms[bad][0]):g} ms); "
                          "check its datasheet and device: values")
    pos = lab.pop("pos").to_numpy()
    made: dict[int, str] = {}  # each shared layer's JSON once; `graphs` keeps every layer alive meanwhile
    js = [graph_json(g, made) for g in graphs]
    head = pd.DataFrame({"group_id": np.asarray(ids, dtype=object)[pos],
                         "group_json": np.asarray(js, dtype=object)[pos]})
    desc = pd.DataFrame([describe_group(g) for g in groups])
    for col, vals in extra.items():
        desc[col] = vals
    desc = desc.iloc[pos].reset_index(drop=True)
    out = pd.concat([head, lab, desc], axis=1)
    out.insert(4, "source", "simulator")
    return out[ROW_COLUMNS + [c for c in out.columns if c not in ROW_COLUMNS]]


def to_parquet_bytes(df: pd.DataFrame, meta: dict) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    return parquet_bytes(table)


def generated_frame(hw: HardwareConfig, seed: int, start: int, stop: int, noise_seed: int,
                    cores: list[np.ndarray] | None = None) -> pd.DataFrame:
    """Measurement rows of generated groups start..stop-1 (at `cores[i]`, default all core counts)."""
    graphs = generate_range(stop, hw, seed, start, stop)
    return graphs_frame(hw, graphs, [start + r for r in range(len(graphs))], seed, noise_seed, cores)


def graphs_frame(hw: HardwareConfig, graphs: list[Graph], indices: list[int], seed: int, noise_seed: int,
                 cores: list[np.ndarray] | None = None) -> pd.DataFrame:
    """Measurement rows of generated graphs (their Sobol `indices` name them), noisy labels."""
    groups = [g.group(0, len(g)) for g in graphs]
    kinds = [describe(g) for g in graphs]
    return rows_frame(groups, graphs, [f"{seed}-{i}" for i in indices],
                  {"kind": [s for s, _ in kinds], "structure": [s for _, s in kinds]}, hw, True, noise_seed, cores)


def read_meta(path: Path, verify: bool = False) -> tuple[dict | None, int]:
    """(settings recorded in a Parquet file, its row count); (None, -1) if unreadable, or with
    `verify` if any page fails its checksum (a flipped bit: the file is remade, not trusted)."""
    try:
        md = pq.read_metadata(path)
        if verify:
            pq.read_table(path, page_checksum_verification=True).to_pandas()
        return json.loads((md.metadata or {}).get(META_KEY, b"null")), md.num_rows
    except Exception:  # partial, damaged or foreign file: treated as absent and remade
        return None, -1


class Ledger:
    """The digest of every shard written into a dataset folder (`.ledger.json`), recorded right
    after the shard: on resume, a shard is reused only if its bytes still match their record, so
    a flipped bit anywhere in it (checksummed pages or not) gets it remade."""

    NAME = ".ledger.json"

    def __init__(self, folder: Path):
        self.path = folder / self.NAME
        try:
            d = json.loads(self.path.read_text())
            self.digests = {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}
        except (OSError, ValueError):
            self.digests = {}

    def intact(self, path: Path) -> bool:
        return path.is_file() and self.digests.get(path.name) == file_digest(path)

    def write(self, path: Path, data: bytes) -> None:
        """Write shard bytes atomically, then record their digest."""
        import hashlib

        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        self.digests[path.name] = hashlib.sha256(data).hexdigest()[:16]
        atomic_write_json(self.path, dict(sorted(self.digests.items())))


def same_settings(recorded: dict, settings: dict) -> bool:
    return all(recorded.get(key) == v for key, v in settings.items())
