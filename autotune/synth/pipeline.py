"""Labelling pipeline (`autotune synth`): synthetic groups -> simulator labels at every core count ->
Parquet shards + manifest.json, plus the zoo's candidate groups (zoo.parquet, evaluation only).
Rows are measurements (group, cores, latency, source); features are computed at training time
(autotune/data/dataset.py), so the simulator plays a device whose internals the model never sees.

A shard's rows depend only on (settings, shard index): its groups come from
`generate_range` and its label noise from a seed derived from (seed, shard). So shards can be
made in any order, by joblib processes or dask.distributed workers, and a killed run resumes by
making only the shards not yet on disk; the result is the same dataset. Every shard records the
settings it was made with (Parquet key-value metadata), so a folder made with other settings is
refused rather than mixed.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from autotune.artefacts import DATASET, check_folder_output
from autotune.cluster import connect
from autotune.data.dataset import DESC_COLUMNS, MANIFEST, ROW_COLUMNS, ZOO_FILE, file_digest
from autotune.errors import AutotuneError, DatasetError
from autotune.fileio import FolderLock, atomic_write, atomic_write_json, recover_folder, replace_folder, source_digest
from autotune.frontends import zoo
from autotune.frontends.synthetic import GENERATOR_VERSION, extract
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import graph_to_dict
from autotune.planning.planner import candidates
from autotune.synth import SAMPLINGS
from autotune.synth.active import active_settings, min_budget, run_rounds
from autotune.synth.shards import (
    Ledger,
    generated_frame,
    read_meta,
    rows_frame,
    same_settings,
    shard_name,
    shard_seed,
    to_parquet_bytes,
)

SHARD_GROUPS = 500


#: The samplings whose shards are fixed slices of the Sobol sequence (made in any order, resumable).
SEQUENCE_SAMPLINGS = ("sobol", "spread")
#: Labels of the default dataset per core count: 16,000 groups measured at every core count.
DEFAULT_GROUPS = 16000


def default_budget(hw: HardwareConfig) -> int:
    """The default label budget: DEFAULT_GROUPS groups at every core count."""
    return DEFAULT_GROUPS * len(hw.core_counts)


def settings_for(hw: HardwareConfig, budget: int, seed: int, shard_groups: int = SHARD_GROUPS,
                 sampling: str = "sobol") -> dict:
    """Everything that decides a dataset's contents: an existing folder must match it to be reused."""
    out = {"hardware": hw.name, "hardware_hash": hw.hash, "generator_version": GENERATOR_VERSION,
           "code_digest": code_digest(), "seed": int(seed), "budget": int(budget), "sampling": sampling,
           "shard_groups": int(shard_groups), "core_counts": list(hw.core_counts)}
    if sampling == "active":
        out.update(active_settings())
    return out


def code_digest() -> str:
    """Digest of the source that decides a row (generator, IR, simulator): a dataset made by other
    code is not silently resumed, even when nobody bumped a version number. Features are not in
    it: they are computed from the rows at training time."""

    return source_digest("autotune.frontends.synthetic", "autotune.synth.active", "autotune.synth.shards",
                         "autotune.ir.graph", "autotune.ir.tables", "autotune.device.base",
                         "autotune.device.simulator", "autotune.ir.ops")


def labels_per_group(settings: dict) -> int:
    """Core counts each group of a Sobol dataset is measured at: all of them, or one when spread."""
    return 1 if settings["sampling"] == "spread" else len(settings["core_counts"])


def sobol_rows(settings: dict) -> list[int]:
    """Labels per shard of a Sobol dataset: groups in order, each at every core count (the last
    group cut at the budget: it is measured at its first core counts only) or, spread, at one."""
    per, size, budget = labels_per_group(settings), settings["shard_groups"], settings["budget"]
    n_shards = math.ceil(budget / (size * per))
    return [min(size * per, budget - k * size * per) for k in range(n_shards)]


def spread_cores(core_counts: list[int], seed: int, start: int, stop: int) -> list[np.ndarray]:
    """The core count of each spread group start..stop-1: block b of K consecutive groups takes the
    K core counts once each, in an order drawn from (seed, b), so every core count gets as many
    labels (to one) and the order is not tied to the Sobol knobs. Depends on the group index only."""
    ks = np.asarray(core_counts, dtype=np.int64)
    K = len(ks)
    blocks = {b: np.random.default_rng([seed, b, 0x5D]).permutation(K) for b in range(start // K, -(-stop // K))}
    return [ks[[blocks[i // K][i % K]]] for i in range(start, stop)]


def label_shard(k: int, hw: HardwareConfig, settings: dict) -> bytes:
    """Shard k of a Sobol dataset as Parquet bytes (so remote workers need no shared disk)."""
    seed, size = settings["seed"], settings["shard_groups"]
    rows = sobol_rows(settings)[k]
    start, stop = k * size, k * size + math.ceil(rows / labels_per_group(settings))
    cores = spread_cores(hw.core_counts, seed, start, stop) if settings["sampling"] == "spread" else None
    df = generated_frame(hw, seed, start, stop, shard_seed(seed, k), cores).iloc[:rows]
    return to_parquet_bytes(df, {**settings, "shard": k})


def _recorded(folder: Path) -> dict | None:
    """The settings a dataset folder was made with (manifest, else any readable shard), or None."""
    recorded = None
    mpath = folder / MANIFEST
    if mpath.is_file():
        try:
            recorded = json.loads(mpath.read_text())
        except ValueError:
            recorded = {"manifest": "corrupted"}
    else:
        for p in sorted(folder.glob("shard-*.parquet")):
            meta, _ = read_meta(p)
            if meta is not None:
                recorded = meta
                break
    return recorded if isinstance(recorded, dict) or recorded is None else {"manifest": "corrupted"}


def _work_folder(folder: Path, settings: dict, force: bool) -> Path:
    """Where to make the dataset: `folder` itself if it is empty or holds this dataset (resume);
    with `force` and another dataset there, a folder beside it (`.name.building`) that replaces it
    only once complete, so the old one survives a killed run. Without `force`, one line and stop."""
    recorded = _recorded(folder) if folder.is_dir() else None
    work = folder
    if recorded is not None and not same_settings(recorded, settings):
        if not force and recorded.get("source") == "measured":
            raise DatasetError(f"{folder}/ holds measurements of a part (import-profile or learn made it), not a "
                               "simulated dataset; --force would replace them: choose another --out")
        if not force:
            diffs = ", ".join(f"{key}={recorded.get(key)!r} (asked {v!r})" for key, v in settings.items()
                              if recorded.get(key) != v and key != "core_counts")
            raise DatasetError(f"{folder}/ holds a dataset made with other settings: {diffs}; "
                               f"add --force to replace it, or choose another --out")
        work = folder.parent / f".{folder.name}.building"
        there = _recorded(work) if work.is_dir() else None
        if there is not None and not same_settings(there, settings):
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for p in work.glob(".*.tmp"):  # leftovers of a killed run (fileio temp files)
        p.unlink()
    return work


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="label", desc="labelling", disable=not enabled,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} labels [{elapsed}<{remaining}, {rate_fmt}]")


def _run_shards(todo: list[int], hw: HardwareConfig, settings: dict, jobs: int, client):
    """Yield (k, parquet bytes) as shards finish: in process, on joblib workers, or on a dask cluster."""
    if not todo:
        return
    if client is not None:
        import distributed

        futs = client.map(label_shard, todo, hw=hw, settings=settings, pure=False)
        key = {f.key: k for f, k in zip(futs, todo)}
        for f in distributed.as_completed(futs):
            yield key[f.key], f.result()
            f.release()
    elif jobs == 1 or len(todo) == 1:
        for k in todo:
            yield k, label_shard(k, hw, settings)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("fork") if sys.platform.startswith("linux") else None
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx,
                                 initializer=_die_with_parent) as pool:
            futs = {pool.submit(label_shard, k, hw, settings): k for k in todo}
            try:
                for f in as_completed(futs):
                    yield futs[f], f.result()
            except BaseException:
                for f in futs:
                    f.cancel()
                raise


def _die_with_parent() -> None:
    """In a worker: end when the process that started it ends (Linux), so killing `synth` never
    leaves workers labelling on their own."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def zoo_digest(models: list[str] | None = None) -> str:
    """Digest of the zoo networks' graphs: zoo.parquet is remade when a network changes."""
    import hashlib

    h = hashlib.sha256()
    for name in zoo.names() if models is None else models:
        h.update(json.dumps(graph_to_dict(zoo.build(name)), sort_keys=True).encode())
    return h.hexdigest()[:16]


def zoo_frame(hw: HardwareConfig, models: list[str] | None = None) -> pd.DataFrame:
    """Every planner candidate group of every zoo network at every core count, labelled noise-free."""

    frames = []
    for name in zoo.names() if models is None else models:
        g = zoo.build(name)
        cands = candidates(g, hw)
        graphs = [extract(g, c.i, c.j, name=f"{name}[{c.i}:{c.j}]") for c in cands]
        df = rows_frame(cands, graphs, [f"{name}:{c.i}-{c.j}" for c in cands],
                    {"kind": "zoo", "structure": name}, hw, False, 0)
        K = len(hw.core_counts)
        df.insert(0, "model", name)
        df.insert(1, "i", np.repeat([c.i for c in cands], K))
        df.insert(2, "j", np.repeat([c.j for c in cands], K))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def run(hw: HardwareConfig, folder: str | Path, budget: int | None = None, seed: int = 0, jobs: int = 1,
        scheduler: str | None = None, force: bool = False, progress: bool = False,
        zoo_models: list[str] | None = None, shard_groups: int = SHARD_GROUPS,
        sampling: str = "sobol") -> dict:
    """Make (or resume) the dataset in `folder` with at most `budget` labels (default
    `default_budget(hw)`), drawn by `sampling`; returns the manifest. `zoo_models`: None = all,
    [] = none (zoo.parquet is for evaluation and not counted in the budget)."""
    budget = default_budget(hw) if budget is None else int(budget)
    K = len(hw.core_counts)
    if sampling not in SAMPLINGS:
        raise AutotuneError(f"--sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}")
    if budget < 1:
        raise DatasetError(f"--budget must be at least 1 label, got {budget}")
    if sampling == "active":
        if budget < min_budget(K):
            raise DatasetError(f"--budget {budget} is too small for active sampling on {K} core counts "
                               f"(at least {min_budget(K)} labels)")
    if jobs < 1:
        raise AutotuneError(f"--jobs must be at least 1, got {jobs}")
    folder = Path(folder)
    check_folder_output(folder, DATASET)
    settings = settings_for(hw, budget, seed, shard_groups, sampling)
    with FolderLock(folder):
        recover_folder(folder)
        work = _work_folder(folder, settings, force)
        manifest = _make(hw, work, settings, jobs, scheduler, progress, zoo_models)
        if work != folder:
            replace_folder(work, folder)
    return manifest


def _make(hw: HardwareConfig, folder: Path, settings: dict, jobs: int, scheduler: str | None, progress: bool,
          zoo_models: list[str] | None) -> dict:
    """Make (or resume) the dataset's shards, zoo.parquet and manifest in `folder`."""
    t0 = time.perf_counter()
    if settings["sampling"] in SEQUENCE_SAMPLINGS:
        rows, todo = _sobol_shards(hw, folder, settings, jobs, scheduler, progress)
        names = [shard_name(k) for k in range(len(rows))]
    else:
        names, rows, todo = run_rounds(hw, folder, settings, progress)
    label_s = time.perf_counter() - t0
    zoo_info = None
    if zoo_models is None or zoo_models:
        zpath = folder / ZOO_FILE
        zmeta, zrows = read_meta(zpath, verify=True)
        want = {**{key: settings[key] for key in ("hardware", "hardware_hash", "generator_version", "code_digest",
                                                   "core_counts")}, "zoo_models": zoo_models,
                "zoo_digest": zoo_digest(zoo_models)}
        if zmeta is None or zmeta != want:
            z = zoo_frame(hw, zoo_models)
            atomic_write(zpath, lambda tmp: Path(tmp).write_bytes(to_parquet_bytes(z, want)))
            zrows = len(z)
        zoo_info = {"file": ZOO_FILE, "rows": zrows, "models": zoo_models or "all", "digest": file_digest(zpath)}
    manifest = {**settings, "rows": sum(rows), "labels": sum(rows), "shards": names, "shard_rows": rows,
                "shard_digests": [file_digest(folder / n) for n in names], "zoo": zoo_info,
                "columns": {"rows": ROW_COLUMNS, "label": "latency_ms", "descriptive": DESC_COLUMNS}}
    atomic_write_json(folder / MANIFEST, manifest)
    manifest["label_s"] = label_s  # timing for the caller; not written, so reruns write the same file
    manifest["labelled_shards"] = len(todo)
    return manifest


def _sobol_shards(hw: HardwareConfig, folder: Path, settings: dict, jobs: int, scheduler: str | None,
                  progress: bool) -> tuple[list[int], list[int]]:
    """Make the Sobol shards not yet on disk; returns (labels per shard, shards made now)."""
    rows = sobol_rows(settings)
    ledger = Ledger(folder)
    todo = []
    for k in range(len(rows)):
        path = folder / shard_name(k)
        meta, n = read_meta(path, verify=True) if ledger.intact(path) else (None, -1)
        if meta is None or n != rows[k] or not same_settings(meta, settings) or meta.get("shard") != k:
            todo.append(k)
    client = connect(scheduler) if scheduler and todo else None
    bar = _progress(sum(rows), sum(rows) - sum(rows[k] for k in todo), progress)
    try:
        for k, data in _run_shards(todo, hw, settings, jobs, client):
            ledger.write(folder / shard_name(k), data)
            bar.update(rows[k])
    finally:
        bar.close()
        if client is not None:
            client.close()
    return rows, todo
