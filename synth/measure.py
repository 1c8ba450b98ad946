"""`autotune measure`: fill an export folder's table of times from a backend.

- `simulator` plays a remote device: any hardware YAML with a `device:` section (including one the
  model never saw), with its timing noise, so export -> measure -> import -> train -> tune runs
  without a chip. Its latencies are exactly those `autotune synth` would label.
- `onnxruntime` runs each group on this machine's CPU, one measurement at a time, with intra-op
  threads = cores: warm-up runs, then repeats (the median is recorded), a time limit per group.
  Rows asking for more cores than the host has are skipped, and said so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from autotune.errors import AutotuneError
from autotune.graph import graph_from_dict
from autotune.hardware import HardwareConfig

from .profiles import read_export

BACKENDS = ("simulator", "onnxruntime")
#: Groups whose weights exceed this are not run on the CPU (and protobuf stops at 2 GiB).
MAX_WEIGHT_BYTES = 1 << 30


def measure(folder: str | Path, backend: str, hw: HardwareConfig | None = None, limit: int | None = None,
            seed: int = 0, repeats: int = 7, warmup: int = 2, timeout_s: float = 10.0,
            progress: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """(profile rows group_id, cores, latency_ms, ..., notes) for the first `limit` rows of the
    export's manifest (all when None)."""
    if backend not in BACKENDS:
        raise AutotuneError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if limit is not None and limit < 1:
        raise AutotuneError(f"--limit must be at least 1, got {limit}")
    folder = Path(folder)
    _, groups, man = read_export(folder)
    man = man.iloc[:limit] if limit is not None else man
    if backend == "simulator":
        if hw is None:
            raise AutotuneError("the simulator backend needs --hw (the device it plays)")
        return _simulate(groups, man, hw, seed), []
    return _onnxruntime(folder, man, seed, repeats, warmup, timeout_s, progress)


def _simulate(groups: pd.DataFrame, man: pd.DataFrame, hw: HardwareConfig, seed: int) -> pd.DataFrame:
    from autotune.simulator import simulate

    hw.require_device()
    js = dict(zip(groups["group_id"], groups["group_json"]))
    graphs = {gid: graph_from_dict(json.loads(js[gid])) for gid in man["group_id"].unique()}
    bad = sorted(set(man["cores"]) - set(hw.core_counts))
    if bad:
        raise AutotuneError(f"the export asks for {bad[0]} cores; {hw.name} has core counts {list(hw.core_counts)}")
    pairs = [graphs[g].group(0, len(graphs[g])) for g in man["group_id"]]
    ms = simulate(pairs, man["cores"].to_numpy(np.int64), hw, noise=True, seed=seed)
    return pd.DataFrame({"group_id": man["group_id"].to_numpy(), "cores": man["cores"].to_numpy(np.int64),
                         "latency_ms": ms, "backend": "simulator"})


def _onnxruntime(folder: Path, man: pd.DataFrame, seed: int, repeats: int, warmup: int, timeout_s: float,
                 progress: bool) -> tuple[pd.DataFrame, list[str]]:
    import onnx
    from tqdm import tqdm

    from autotune.ort import host_cores, require_ort, runnable, time_model, weight_bytes

    require_ort()
    cap = host_cores()
    notes = []
    over = man["cores"] > cap
    if over.any():
        notes.append(f"skipped {int(over.sum())} row(s) asking for more than this host's {cap} cores")
    todo = man[~over]
    out: list[tuple] = []
    cache: dict[str, bytes] = {}
    failed: list[str] = []
    for r in tqdm(list(todo.itertuples(index=False)), desc="measure", unit="row", disable=not progress):
        if r.onnx_file not in cache:
            cache.clear()  # rows come group by group: keep one prepared model
            try:
                model = onnx.load(str(folder / r.onnx_file), load_external_data=False)
            except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and onnx's own: a damaged file
                raise AutotuneError(f"{folder / r.onnx_file}: not a readable ONNX file ({type(err).__name__}); "
                                    "export the groups again") from None
            size = weight_bytes(model)
            if size > MAX_WEIGHT_BYTES:
                cache[r.onnx_file] = b""
                failed.append(f"{r.group_id}: {size / 2**30:.1f} GiB of weights, too large to run here")
            else:
                cache[r.onnx_file] = runnable(model, seed).SerializeToString()
        if not cache[r.onnx_file]:
            continue
        try:
            t = time_model(cache[r.onnx_file], int(r.cores), warmup, repeats, timeout_s, seed)
        except AutotuneError as err:
            failed.append(f"{r.group_id} at {r.cores} cores: {err}")
            continue
        out.append((r.group_id, int(r.cores), t.ms, t.repeats, t.spread, "onnxruntime"))
    if failed:
        notes.append(f"{len(failed)} row(s) not measured (first: {failed[0]})")
    frame = pd.DataFrame(out, columns=["group_id", "cores", "latency_ms", "runs", "spread", "backend"])
    return frame, notes

