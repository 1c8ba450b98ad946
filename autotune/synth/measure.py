"""`autotune measure`: fill an export folder's table of times from a backend.

- `simulator` plays a remote device: any hardware YAML with a `device:` section (including one the
  model never saw), with its timing noise, so export -> measure -> import -> train -> tune runs
  without a chip. Its latencies are exactly those `autotune synth` would label.
- `onnxruntime` runs each group on this machine's CPU, one measurement at a time, with intra-op
  threads = cores: warm-up runs, then repeats (the median is recorded), a time limit per group.
  With `passes` > 1 it goes over the rows that many times, so a row's measurements lie minutes
  apart: a machine shared with others has slow spells, which only slow a run down, and the fastest
  pass (`profiles.aggregate(..., "fastest")`) is the one they touched least (docs/costmodel.md,
  "Timing on the CPU").
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

from autotune.device.base import Simulator
from autotune.device.ort import OrtDevice, memory_estimate, require_ort, runnable, weight_bytes
from autotune.errors import AutotuneError
from autotune.fileio import FolderLock, atomic_write_text
from autotune.hardware.config import HardwareConfig
from autotune.hardware.host import available_memory, host_cores
from autotune.ir.graph import graph_from_dict
from autotune.synth.profiles import byte_text, read_export

BACKENDS = ("simulator", "onnxruntime")
#: Groups whose weights exceed this are not run on the CPU (and protobuf stops at 2 GiB).
MAX_WEIGHT_BYTES = 1 << 30
#: The share of available memory one row may take while measured (autotune.device.ort.memory_estimate).
ROW_SHARE = 0.5
#: The columns of a profile `measure --backend onnxruntime` writes (one line per row and pass).
ORT_COLUMNS = ["group_id", "cores", "latency_ms", "runs", "spread", "backend", "pass"]
#: Prepared (runnable) models kept between passes, as a share of the memory available at the start.
CACHE_SHARE = 0.1


def measure(folder: str | Path, backend: str, hw: HardwareConfig | None = None, limit: int | None = None,
            seed: int = 0, repeats: int = 7, warmup: int = 2, timeout_s: float = 10.0,
            progress: bool = False, out: str | Path | None = None, mem_bytes: int | None = None,
            passes: int = 1) -> tuple[pd.DataFrame, list[str]]:
    """(profile rows group_id, cores, latency_ms, ..., notes) for the first `limit` rows of the
    export's manifest (all when None). onnxruntime: `passes` lines per row, one per pass over the
    rows; with `out`, lines are appended to that CSV as they are measured and those it already holds
    are kept (the frame holds them all); a row may take `mem_bytes` (default ROW_SHARE of the memory
    available when its group is loaded)."""
    if backend not in BACKENDS:
        raise AutotuneError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if limit is not None and limit < 1:
        raise AutotuneError(f"--limit must be at least 1, got {limit}")
    if passes < 1:
        raise AutotuneError(f"--passes must be at least 1, got {passes}")
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
                            mem_bytes, passes)
    with FolderLock(folder, "measuring"), ProfileLog(Path(out), known) as log:
        return _onnxruntime(folder, man, log, seed, repeats, warmup, timeout_s, progress, mem_bytes, passes)


def _simulate(groups: pd.DataFrame, man: pd.DataFrame, hw: HardwareConfig, seed: int) -> pd.DataFrame:
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
    run was killed in, is dropped) and reads which row that run stopped in (a `.NAME.pending` file).
    A row is (group_id, cores, latency_ms, runs, spread, backend, pass)."""

    def __init__(self, path: Path | None, known: set[tuple[str, int]]):
        self.path, self.known = path, known
        self.rows: list[tuple] = []
        self.kept = 0
        self.stopped_in: tuple[str, int, int] | None = None
        self._f: io.TextIOWrapper | None = None

    @property
    def pending(self) -> Path | None:
        return self.path.parent / f".{self.path.name}.pending" if self.path is not None else None

    @property
    def done(self) -> set[tuple[str, int, int]]:
        """(group_id, cores, pass) of each line measured."""
        return {(r[0], r[1], r[6]) for r in self.rows}

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
            gid, cores, pass_ = self.pending.read_text().strip().rsplit(",", 2)
            self.stopped_in = (gid, int(cores), int(pass_))
        except (OSError, ValueError):
            pass
        return self

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()
        if exc[0] is None and self.pending is not None:
            self.pending.unlink(missing_ok=True)

    def begin(self, gid: str, cores: int, pass_: int = 0) -> None:
        """Note the row about to be measured, so a run killed in it can put it last next time."""
        if self.pending is not None:
            atomic_write_text(self.pending, f"{gid},{cores},{pass_}\n")

    def add(self, row: tuple) -> None:
        """Record one measured row (and append it to the CSV)."""
        self.rows.append(row)
        if self._f is not None:
            self._write(_fields(row))

    def _write(self, fields: list) -> None:
        assert self._f is not None
        self._f.write(_line(fields))
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
    # the header says the layout: the current one, or the one before passes (its lines are pass 0)
    widths = {",".join(ORT_COLUMNS): len(ORT_COLUMNS), ",".join(ORT_COLUMNS[:-1]): len(ORT_COLUMNS) - 1}
    width = widths.get(lines[0], 0) if lines else len(ORT_COLUMNS)
    if not width:
        raise AutotuneError(f"{path}: not a profile `measure --backend onnxruntime` writes (its header is "
                            f"{lines[0][:60]!r}); {again}")
    rows: list[tuple] = []
    seen: set[tuple[str, int, int]] = set()
    for n, line in enumerate(lines[1:], start=2):
        row = _log_row(line, width)
        if row is None or (row[0], row[1]) not in known or (row[0], row[1], row[6]) in seen:
            what = "a row measured for another export" if row is not None and (row[0], row[1]) not in known else \
                "a repeated row" if row is not None else "not a row this command writes"
            raise AutotuneError(f"{path} line {n}: {what}; {again}")
        seen.add((row[0], row[1], row[6]))
        rows.append(row)
    if width < len(ORT_COLUMNS):  # appended lines have a pass column: the file moves to the new layout
        atomic_write_text(path, _line(ORT_COLUMNS) + "".join(_line(_fields(r)) for r in rows))
    return rows


def _fields(row: tuple) -> list:
    """A row's CSV fields, its floats written so they read back bit for bit."""
    return [row[0], row[1], repr(row[2]), row[3], repr(row[4]), row[5], row[6]]


def _line(fields: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


def _log_row(line: str, width: int = len(ORT_COLUMNS)) -> tuple | None:
    """(group_id, cores, latency_ms, runs, spread, backend, pass) of one profile line (pass 0 in the
    layout before passes, `width` 6), or None if malformed."""
    r = next(csv.reader([line]), [])
    if len(r) != width or r[5] != "onnxruntime":
        return None
    try:
        row = (r[0], int(r[1]), float(r[2]), int(r[3]), float(r[4]), r[5], int(r[6]) if width > 6 else 0)
    except ValueError:
        return None
    return row if row[2] > 0 and np.isfinite(row[2]) and row[6] >= 0 else None


def _onnxruntime(folder: Path, man: pd.DataFrame, log: ProfileLog, seed: int, repeats: int, warmup: int,
                 timeout_s: float, progress: bool, mem_bytes: int | None,
                 passes: int = 1) -> tuple[pd.DataFrame, list[str]]:
    from tqdm import tqdm

    require_ort()
    cap = host_cores()
    notes = []
    over = man["cores"] > cap
    if over.any():
        notes.append(f"skipped {int(over.sum())} row(s) asking for more than this host's {cap} cores")
    man = man[~over]
    todo = _todo(man, log, notes, passes)
    device = OrtDevice(repeats=repeats, timeout_s=timeout_s, passes=1, warmup=warmup)
    prepared = PreparedModels(folder, seed, mem_bytes, int(CACHE_SHARE * available_memory()))
    failed: dict[tuple[str, int], str] = {}
    for r in tqdm(list(todo.itertuples(index=False)), desc="measure", unit="row", disable=not progress):
        pair = (r.group_id, int(r.cores))
        model = prepared.get(r.onnx_file, r.group_id)
        if not model or pair in failed:  # too large, or it failed in an earlier pass: not tried again
            continue
        log.begin(r.group_id, int(r.cores), int(r.pass_))
        try:
            t = device.time_one(model, int(r.cores), seed)
        except AutotuneError as err:
            failed[pair] = str(err)
            continue
        log.add((r.group_id, int(r.cores), t.ms, t.repeats, t.spread, "onnxruntime", int(r.pass_)))
    if prepared.too_big:
        rows = int(man["group_id"].isin(prepared.too_big).sum())
        first = next(iter(prepared.too_big.items()))
        notes.append(f"skipped {rows} row(s) of {len(prepared.too_big)} group(s) too large to run here (first: "
                     f"{first[0]}: {first[1]})")
    if failed:
        (g, c), why = next(iter(failed.items()))
        notes.append(f"{len(failed)} row(s) not measured (first: {g} at {c} cores: {why})")
    return log.frame(), notes


class PreparedModels:
    """The runnable models of an export's groups, made once and kept while they fit in `keep_bytes`
    (the oldest dropped first), so a second pass does not make them again."""

    def __init__(self, folder: Path, seed: int, mem_bytes: int | None, keep_bytes: int):
        self.folder, self.seed, self.mem_bytes, self.keep_bytes = folder, seed, mem_bytes, keep_bytes
        self.models: dict[str, bytes] = {}
        self.too_big: dict[str, str] = {}
        self.held = 0

    def get(self, onnx_file: str, group_id: str) -> bytes:
        """The group's runnable model, or b"" for one too large to run here."""
        if onnx_file in self.models:
            return self.models[onnx_file]
        model, why = _prepare(self.folder / onnx_file, self.seed, self.mem_bytes)
        if why:
            self.too_big[group_id] = why
        while self.models and self.held + len(model) > self.keep_bytes:
            self.held -= len(self.models.pop(next(iter(self.models))))
        self.models[onnx_file] = model
        self.held += len(model)
        return model


def _todo(man: pd.DataFrame, log: ProfileLog, notes: list[str], passes: int = 1) -> pd.DataFrame:
    """The (row, pass) lines still to measure, pass by pass (column `pass_`), the one an earlier run
    stopped in put last (it may be what stopped it)."""
    done = log.done
    lines = pd.concat([man.assign(pass_=p) for p in range(passes)], ignore_index=True)
    todo = lines[[(g, int(c), p) not in done for g, c, p in zip(lines["group_id"], lines["cores"], lines["pass_"])]]
    if log.kept:
        notes.append(f"kept {log.kept} measurement(s) made earlier in {log.path}; made the other {len(todo)}")
    if log.stopped_in is not None:
        gid, cores, pass_ = log.stopped_in
        last = (todo["group_id"] == gid) & (todo["cores"] == cores) & (todo["pass_"] == pass_)
        if last.any():
            notes.append(f"the last run stopped while measuring {gid} at {cores} cores; it was measured last")
            todo = pd.concat([todo[~last], todo[last]])
    return todo


def _prepare(path: Path, seed: int, mem_bytes: int | None) -> tuple[bytes, str]:
    """(the runnable model's bytes, "") for one exported group, or (b"", why) for one too large to run:
    over protobuf's weight limit, or needing more memory than `mem_bytes` (default ROW_SHARE of what
    is available now), judged from its shapes before anything is allocated."""
    import onnx

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

