"""`autotune measure`: fill an export folder's table of times from a backend.

- `simulator` plays a remote device: any hardware YAML with a `device:` section (including one the
  model never saw), with its timing noise, so export -> measure -> import -> train -> tune runs
  without a chip. Its latencies are exactly those `autotune synth` would label.
- `onnxruntime` runs each group on this machine's CPU, one measurement at a time, with intra-op
  threads = cores: warm-up runs, then repeats (the median is recorded), a time limit per group.
  Rows asking for more cores than the host has, or more memory than it has free (estimated from
  the group's shapes before anything is allocated), are skipped, and said so. Given a profile CSV,
  each row is appended to it as it is measured (a whole line, flushed), and a rerun keeps the rows
  it holds and measures only the rest: a crash, kill or Ctrl-C loses at most the row in progress.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from autotune.errors import AutotuneError
from autotune.fileio import FolderLock, atomic_write_text
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import graph_from_dict
from autotune.synth.profiles import byte_text, read_export

BACKENDS = ("simulator", "onnxruntime")
#: Groups whose weights exceed this are not run on the CPU (and protobuf stops at 2 GiB).
MAX_WEIGHT_BYTES = 1 << 30
#: The share of available memory one row may take while measured (autotune.device.ort.memory_estimate).
ROW_SHARE = 0.5
#: The columns of a profile `measure --backend onnxruntime` writes.
ORT_COLUMNS = ["group_id", "cores", "latency_ms", "runs", "spread", "backend"]


def measure(folder: str | Path, backend: str, hw: HardwareConfig | None = None, limit: int | None = None,
            seed: int = 0, repeats: int = 7, warmup: int = 2, timeout_s: float = 10.0,
            progress: bool = False, out: str | Path | None = None, mem_bytes: int | None = None
            ) -> tuple[pd.DataFrame, list[str]]:
    """(profile rows group_id, cores, latency_ms, ..., notes) for the first `limit` rows of the
    export's manifest (all when None). onnxruntime: with `out`, rows are appended to that CSV as they
    are measured and those it already holds are kept (the frame holds them all); a row may take
    `mem_bytes` (default ROW_SHARE of the memory available when its group is loaded)."""
    if backend not in BACKENDS:
        raise AutotuneError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if limit is not None and limit < 1:
        raise AutotuneError(f"--limit must be at least 1, got {limit}")
    folder = Path(folder)
    _, groups, man = read_export(folder)
    known = set(zip(man["group_id"], man["cores"].astype(int)))
    man = man.iloc[:limit] if limit is not None else man
    if backend == "simulator":
        if hw is None:
            raise AutotuneError("the simulator backend needs --hw (the device it plays)")
        return _simulate(groups, man, hw, seed), []
    if out is None:
        return _onnxruntime(folder, man, ProfileLog(None, known), seed, repeats, warmup, timeout_s, progress,
                            mem_bytes)
    with FolderLock(folder, "measuring"), ProfileLog(Path(out), known) as log:
        return _onnxruntime(folder, man, log, seed, repeats, warmup, timeout_s, progress, mem_bytes)


def _simulate(groups: pd.DataFrame, man: pd.DataFrame, hw: HardwareConfig, seed: int) -> pd.DataFrame:
    from autotune.device.base import Simulator

    hw.require_device()
    js = dict(zip(groups["group_id"], groups["group_json"]))
    graphs = {gid: graph_from_dict(json.loads(js[gid])) for gid in man["group_id"].unique()}
    bad = sorted(set(man["cores"]) - set(hw.core_counts))
    if bad:
        raise AutotuneError(f"the export asks for {bad[0]} cores; {hw.name} has core counts {list(hw.core_counts)}")
    pairs = [graphs[g].group(0, len(graphs[g])) for g in man["group_id"]]
    ms = Simulator(hw).measure(pairs, man["cores"].to_numpy(np.int64), seed=seed)
    return pd.DataFrame({"group_id": man["group_id"].to_numpy(), "cores": man["cores"].to_numpy(np.int64),
                         "latency_ms": ms, "backend": "simulator"})


class ProfileLog:
    """The rows measured so far, appended to a profile CSV (when there is one) as whole lines, flushed.
    Opened on a CSV from an earlier run, it keeps its rows (a trailing partial line, from a write the
    run was killed in, is dropped) and reads which row that run stopped in (a `.NAME.pending` file)."""

    def __init__(self, path: Path | None, known: set[tuple[str, int]]):
        self.path, self.known = path, known
        self.rows: list[tuple] = []
        self.kept = 0
        self.stopped_in: tuple[str, int] | None = None
        self._f: io.TextIOWrapper | None = None

    @property
    def pending(self) -> Path | None:
        return self.path.parent / f".{self.path.name}.pending" if self.path is not None else None

    @property
    def done(self) -> set[tuple[str, int]]:
        return {(r[0], r[1]) for r in self.rows}

    def __enter__(self) -> ProfileLog:
        assert self.path is not None and self.pending is not None
        if self.path.is_file():
            self.rows = _read_log(self.path, self.known)
            self.kept = len(self.rows)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        self._f = open(self.path, "a", newline="")
        if fresh:
            self._write(ORT_COLUMNS)
        try:
            gid, cores = self.pending.read_text().strip().rsplit(",", 1)
            self.stopped_in = (gid, int(cores))
        except (OSError, ValueError):
            pass
        return self

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()
        if exc[0] is None and self.pending is not None:
            self.pending.unlink(missing_ok=True)

    def begin(self, gid: str, cores: int) -> None:
        """Note the row about to be measured, so a run killed in it can put it last next time."""
        if self.pending is not None:
            atomic_write_text(self.pending, f"{gid},{cores}\n")

    def add(self, row: tuple) -> None:
        """Record one measured row (and append it to the CSV)."""
        self.rows.append(row)
        if self._f is not None:
            self._write([row[0], row[1], repr(row[2]), row[3], repr(row[4]), row[5]])

    def _write(self, fields: list) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(fields)
        assert self._f is not None
        self._f.write(buf.getvalue())
        self._f.flush()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=ORT_COLUMNS)


def _read_log(path: Path, known: set[tuple[str, int]]) -> list[tuple]:
    """The rows of a profile an earlier `measure --backend onnxruntime` wrote, its trailing partial
    line cut off the file; one clear error for a file it did not write or for another export."""
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data):
        os.truncate(path, cut)
    lines = data[:cut].decode("utf-8", errors="replace").splitlines()
    again = "remove it to measure again, or choose another --out"
    if lines and lines[0] != ",".join(ORT_COLUMNS):
        raise AutotuneError(f"{path}: not a profile `measure --backend onnxruntime` writes (its header is "
                            f"{lines[0][:60]!r}); {again}")
    rows: list[tuple] = []
    seen: set[tuple[str, int]] = set()
    for n, line in enumerate(lines[1:], start=2):
        row = _log_row(line)
        if row is None or (row[0], row[1]) not in known or (row[0], row[1]) in seen:
            what = "a row measured for another export" if row is not None and (row[0], row[1]) not in known else \
                "a repeated row" if row is not None else "not a row this command writes"
            raise AutotuneError(f"{path} line {n}: {what}; {again}")
        seen.add((row[0], row[1]))
        rows.append(row)
    return rows


def _log_row(line: str) -> tuple | None:
    """(group_id, cores, latency_ms, runs, spread, backend) of one profile line, or None if malformed."""
    r = next(csv.reader([line]), [])
    if len(r) != len(ORT_COLUMNS) or r[5] != "onnxruntime":
        return None
    try:
        row = (r[0], int(r[1]), float(r[2]), int(r[3]), float(r[4]), r[5])
    except ValueError:
        return None
    return row if row[2] > 0 and np.isfinite(row[2]) else None


def _onnxruntime(folder: Path, man: pd.DataFrame, log: ProfileLog, seed: int, repeats: int, warmup: int,
                 timeout_s: float, progress: bool, mem_bytes: int | None) -> tuple[pd.DataFrame, list[str]]:
    from tqdm import tqdm

    from autotune.device.ort import require_ort, time_model
    from autotune.hardware.host import host_cores

    require_ort()
    cap = host_cores()
    notes = []
    over = man["cores"] > cap
    if over.any():
        notes.append(f"skipped {int(over.sum())} row(s) asking for more than this host's {cap} cores")
    todo = _todo(man[~over], log, notes)
    prepared: dict[str, bytes] = {}
    failed: list[str] = []
    too_big: dict[str, str] = {}
    for r in tqdm(list(todo.itertuples(index=False)), desc="measure", unit="row", disable=not progress):
        if r.onnx_file not in prepared:
            prepared.clear()  # rows come group by group: keep one prepared model
            prepared[r.onnx_file], why = _prepare(folder / r.onnx_file, seed, mem_bytes)
            if why:
                too_big[r.group_id] = why
        if not prepared[r.onnx_file]:
            continue
        log.begin(r.group_id, int(r.cores))
        try:
            t = time_model(prepared[r.onnx_file], int(r.cores), warmup, repeats, timeout_s, seed)
        except AutotuneError as err:
            failed.append(f"{r.group_id} at {r.cores} cores: {err}")
            continue
        log.add((r.group_id, int(r.cores), t.ms, t.repeats, t.spread, "onnxruntime"))
    if too_big:
        rows = int(todo["group_id"].isin(too_big).sum())
        first = next(iter(too_big.items()))
        notes.append(f"skipped {rows} row(s) of {len(too_big)} group(s) too large to run here (first: {first[0]}: "
                     f"{first[1]})")
    if failed:
        notes.append(f"{len(failed)} row(s) not measured (first: {failed[0]})")
    return log.frame(), notes


def _todo(man: pd.DataFrame, log: ProfileLog, notes: list[str]) -> pd.DataFrame:
    """The rows still to measure, the one an earlier run stopped in put last (it may be what stopped it)."""
    done = log.done
    todo = man[[(g, int(c)) not in done for g, c in zip(man["group_id"], man["cores"])]]
    if log.kept:
        notes.append(f"kept {log.kept} row(s) measured earlier in {log.path}; measured the other {len(todo)}")
    if log.stopped_in is not None:
        last = (todo["group_id"] == log.stopped_in[0]) & (todo["cores"] == log.stopped_in[1])
        if last.any():
            notes.append(f"the last run stopped while measuring {log.stopped_in[0]} at {log.stopped_in[1]} cores; "
                         "it was measured last")
            todo = pd.concat([todo[~last], todo[last]])
    return todo


def _prepare(path: Path, seed: int, mem_bytes: int | None) -> tuple[bytes, str]:
    """(the runnable model's bytes, "") for one exported group, or (b"", why) for one too large to run:
    over protobuf's weight limit, or needing more memory than `mem_bytes` (default ROW_SHARE of what
    is available now), judged from its shapes before anything is allocated."""
    import onnx

    from autotune.device.ort import memory_estimate, runnable, weight_bytes
    from autotune.hardware.host import available_memory

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and onnx's own: a damaged file
        raise AutotuneError(f"{path}: not a readable ONNX file ({type(err).__name__}); export the groups "
                            "again") from None
    size = weight_bytes(model)
    if size > MAX_WEIGHT_BYTES:
        return b"", f"{size / 2**30:.1f} GiB of weights"
    need = memory_estimate(model)
    allowed = mem_bytes if mem_bytes is not None else int(ROW_SHARE * available_memory())
    if need > allowed:
        return b"", f"needs about {byte_text(need)}, over the {byte_text(allowed)} a row may take"
    return runnable(model, seed).SerializeToString(), ""

