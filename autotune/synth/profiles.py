"""Measurements from outside: export groups for any device to run, measure them (the simulator playing a
remote device, or ONNX Runtime on this CPU), and import the table of times as a dataset `train` reads.

An export folder holds `onnx/<id>.onnx` (each group a self-contained file, shapes only unless
`--weights`), `groups.parquet` (the groups as IR JSON, so an import needs nothing else), `manifest.csv`
(one row per (group_id, cores, onnx_file) to measure, header first), `export.json` (what made it)
and a README saying how to fill in `latency_ms`. A profile is any CSV whose header has at least
`group_id,cores,latency_ms`; repeated rows of a (group, cores) pair are repeats and are aggregated by
their median.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from autotune.artefacts import DATASET, EXPORT, check_folder_output, kind_of
from autotune.costmodel.probes import probe_cores, probe_graphs, probe_id
from autotune.data.dataset import (
    MANIFEST,
    ROW_COLUMNS,
    UNRUNNABLE_FILE,
    Dataset,
    file_digest,
    parquet_bytes,
    read_dataset,
    read_parquet,
)
from autotune.errors import AutotuneError, DatasetError
from autotune.fileio import FolderLock, atomic_write, atomic_write_json, recover_folder, replace_folder
from autotune.frontends.loader import load_graph
from autotune.frontends.onnx_export import graph_to_onnx
from autotune.frontends.onnx_standard import README_NOTE
from autotune.frontends.synthetic import GENERATOR_VERSION, byte_cap, describe, extract, generate_within
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph, graph_from_dict, graph_to_dict
from autotune.planning.costs import MeasuredTable
from autotune.planning.planner import candidate_id, candidates

EXPORT_FILE = "export.json"
GROUPS_FILE = "groups.parquet"
MANIFEST_CSV = "manifest.csv"
MANIFEST_COLUMNS = ["group_id", "cores", "onnx_file"]
#: Rows a profile must have; others (repeat, backend, spread) are kept out of the dataset.
PROFILE_COLUMNS = ["group_id", "cores", "latency_ms"]
#: A repeat this many scaled MADs from its pair's median is reported as an outlier.
MAD_OUTLIER = 5.0
#: The smallest pooled spread (log latency) outliers are judged against: timers are not exact.
MIN_SPREAD = 0.01
#: A measured latency must lie in [1 ns, 1 hour] (in ms) and be written as a plain decimal number.
MIN_MS, MAX_MS = 1e-6, 3.6e6
_DECIMAL = re.compile(r"[+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
MAX_LISTED = 20
#: Labels `synth --backend onnxruntime` measures by default: a 2-core machine times them in minutes.
CPU_BUDGET = 1200

README = """# Groups to measure

Each file in `onnx/` is one layer group as a self-contained ONNX model{weights}. Run each row of
`manifest.csv` on your device: the group in `onnx_file`, compiled for `cores` cores, as one kernel
(or the closest your toolchain has), and write its latency.

Hand back a CSV whose first line is the header `group_id,cores,latency_ms` (more columns may
follow, e.g. `repeat`): one line per measurement, `latency_ms` in milliseconds, a positive number.
Measure a row several times if you can: repeats of a (group_id, cores) pair are aggregated by
their median, and outliers are reported. On a machine shared with others, measure the whole table
several times over (minutes apart) and add `--aggregate fastest` to import-profile: slow spells
only slow a run down, so the fastest repeat is the one they touched least. Then:

    autotune import-profile measured.csv --hw {hw} --groups {folder} --out data/<name>
    autotune train --hw {hw} --data data/<name>

`autotune measure {folder} --backend simulator --hw {hw}` fills the table from the simulator, and
`--backend onnxruntime` from this machine's CPU, to try the path end to end.

## Group ids

A network's candidate is `NET:i-j`: its layers i to j-1 in the network's layer order, j exclusive
(`vit_b16:3-7` is layers 3, 4, 5 and 6; a plan's groups carry it as `candidate_id`). A synthetic
group is `SEED-K` (the K-th group of generator seed SEED), a device probe `probe-K`. The file of
group `G` is `onnx/G.onnx` with characters outside `A-Za-z0-9_.-` written `_`; `groups.parquet`
holds each group's exact layers (IR JSON) by id.

## Pure views

A group whose layers only reshape or flatten (a pure view) moves no data: a compiler launches no
kernel for it, so there is nothing to measure. Their rows stay in `manifest.csv` (their files
hold Reshape nodes only), and measuring them is optional: `import-profile` takes their rows like
any other, and `eval --measured` and `tune --verify --measured` count a view with no measurement at
a core count as free (0 ms), never as missing.

{views}

## What the files hold

{forms}
"""


def byte_text(n: float) -> str:
    """Bytes in GiB, MiB or KiB, for messages."""
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            return f"{n / 2**k:.3g} {unit}"
    return f"{int(n)} B"


def skipped_note(info: dict) -> str | None:
    """One line on the groups an export left out for holding more than the part's byte cap, or None."""
    over = info.get("over_byte_cap") or []
    if not over:
        return None
    gid, size = max(over, key=lambda r: r[1])
    return (f"skipped {len(over)} of {info['requested_groups']} groups holding more than "
            f"{byte_text(info['max_group_bytes'])} (the byte cap for {info['hardware']}: a share of this host's "
            f"free memory; the largest, {gid}, holds {byte_text(size)})")


#: Op kinds that only relabel a tensor's shape: a group of nothing else is a pure view.
VIEW_OPS = frozenset({"reshape"})


def pure_view(ops: list[str]) -> bool:
    """Whether a group of layers of these op kinds is a pure view (reshapes and flattens only)."""
    return bool(ops) and set(ops) <= VIEW_OPS


def _views_text(views: list[str]) -> str:
    """The README's sentence on this export's pure views."""
    if not views:
        return "This export has none."
    shown = ", ".join(f"`{v}`" for v in views[:5]) + (", ..." if len(views) > 5 else "")
    return f"This export has {len(views)} ({shown}), listed in export.json as `views`."


def _free_views(spans: dict[tuple[int, int], np.ndarray], gframe: pd.DataFrame, width: int) -> None:
    """Fill the unmeasured core counts of every pure-view candidate with 0 ms: a view launches no kernel."""
    for gid, js in zip(gframe["group_id"], gframe["group_json"]):
        m = re.fullmatch(r".*:(\d+)-(\d+)", str(gid))
        if m is None or not pure_view([x["op"] for x in json.loads(js)["layers"]]):
            continue
        row = spans.setdefault((int(m.group(1)), int(m.group(2))), np.full(width, np.nan))
        row[np.isnan(row)] = 0.0


def _safe(group_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", group_id)


def export_groups(hw: HardwareConfig, out: str | Path, n_groups: int | None = None, seed: int = 0,
                  model: str | None = None, weights: bool = False, force: bool = False,
                  progress: bool = False, probes: bool = False, pairs: list | None = None) -> dict:
    """Write `n_groups` synthetic groups (or, with `model`, that network's planner candidates) to
    `out` for measuring on a device, with `probes` also the device probes (autotune/costmodel/probes.py, at
    their own core counts: `adapt --data` finds them by id); returns export.json's content.
    `pairs` exports chosen candidates instead: (graph, i, j, core counts) each, as
    autotune/synth/plan_labels.py picks them, with ids `NET:i-j` and only those core counts in the manifest."""
    from tqdm import tqdm

    out = Path(out)
    check_folder_output(out, EXPORT, inputs=[model if model and Path(model).exists() else None], force=force,
                        replace_needs_force=True)
    graphs: list[Graph]
    cap: int | None = None
    skipped: list[tuple[int, int]] = []
    cores: list[list[int]] | None = None
    if pairs is not None:
        if not pairs:
            raise AutotuneError("no pairs to export: every pair the plans pick is measured already")
        graphs = [extract(g, i, j, name=f"{g.name}[{i}:{j}]") for g, i, j, _ in pairs]
        ids = [candidate_id(g.name, i, j) for g, i, j, _ in pairs]
        kinds = [("network", g.name) for g, _, _, _ in pairs]
        cores = [sorted(int(k) for k in ks) for _, _, _, ks in pairs]
    elif model is not None:
        g = load_graph(model)
        cands = candidates(g, hw)
        graphs = [extract(g, c.i, c.j, name=f"{g.name}[{c.i}:{c.j}]") for c in cands]
        ids = [candidate_id(g.name, c.i, c.j) for c in cands]
        kinds = [("network", g.name)] * len(graphs)
    elif n_groups is None and probes:
        graphs, ids, kinds = [], [], []
    else:
        if n_groups is None:
            raise AutotuneError("say what to export: --groups N synthetic groups, --model NAME_OR_ONNX, or --probes")
        if n_groups < 1:
            raise AutotuneError(f"--groups must be at least 1, got {n_groups}")
        cap = byte_cap(hw)
        kept, skipped = generate_within(n_groups, hw, seed, cap)
        if not kept:
            raise AutotuneError(f"all {n_groups} groups hold more than {byte_text(cap or 0)} (the byte cap for "
                                f"{hw.name}: a share of this host's free memory); free some memory")
        graphs = [g for _, g in kept]
        ids = [f"{seed}-{k}" for k, _ in kept]
        kinds = [describe(g) for g in graphs]
    if cores is None:
        cores = [list(hw.core_counts)] * len(graphs)
    if probes:
        pg = probe_graphs(hw)
        graphs, ids = graphs + pg, ids + [probe_id(k) for k in range(len(pg))]
        kinds, cores = kinds + [("probe", describe(g)[1]) for g in pg], cores + [sorted(set(probe_cores(hw)))] * len(pg)
    info = {"hardware": hw.name, "hardware_hash": hw.hash, "datasheet_hash": hw.datasheet_hash,
            "core_counts": list(hw.core_counts), "groups": len(graphs), "seed": seed, "model": model,
            "probes": probes, "weights": weights, "generator_version": GENERATOR_VERSION,
            "rows": sum(len(ks) for ks in cores), "requested_groups": n_groups if model is None else None,
            "plan_pairs": pairs is not None,
            "max_group_bytes": cap, "over_byte_cap": [[f"{seed}-{k}", b] for k, b in skipped]}
    views = [gid for gid, g in zip(ids, graphs) if pure_view([lyr.op for lyr in g.order])]
    info["views"] = views
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        (tmp / "onnx").mkdir()
        files = []
        for k, (gid, g) in enumerate(tqdm(list(zip(ids, graphs)), desc="export", unit="group", disable=not progress)):
            name = f"onnx/{_safe(gid)}.onnx"
            model_proto = graph_to_onnx(g, weights=weights, seed=seed + k, standard=True)
            (tmp / name).write_bytes(model_proto.SerializeToString())
            files.append(name)
        frame = pd.DataFrame({"group_id": ids, "group_json": [json.dumps(graph_to_dict(g), separators=(",", ":"))
                                                              for g in graphs],
                              "onnx_file": files, "kind": [a for a, _ in kinds], "structure": [b for _, b in kinds]})
        import pyarrow as pa

        (tmp / GROUPS_FILE).write_bytes(parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False)))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS)
        for gid, f, ks in zip(ids, files, cores):
            for c in ks:
                w.writerow([gid, c, f])
        (tmp / MANIFEST_CSV).write_text(buf.getvalue())
        (tmp / "README.md").write_text(README.format(
            weights=" with random weights" if weights else " with shapes only (weights are graph inputs listed "
            "in its `autotune.weights` metadata; feed any values)", hw=hw.name, folder=out,
            views=_views_text(views), forms=README_NOTE))
        (tmp / EXPORT_FILE).write_text(json.dumps(info, indent=1))
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def synthetic_export_of(folder: str | Path, hw: HardwareConfig, n_groups: int, seed: int) -> dict | None:
    """export.json of `folder` if it holds `n_groups` synthetic groups of this generator for `hw`
    and `seed`, shapes only (whatever byte cap free memory gave then: the measurements check memory
    again), else None: what a rerun reuses with its profile instead of exporting again."""
    folder = Path(folder)
    try:
        info = json.loads((folder / EXPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    want = {"hardware_hash": hw.hash, "seed": seed, "requested_groups": n_groups, "model": None, "probes": False,
            "weights": False, "generator_version": GENERATOR_VERSION}
    same = isinstance(info, dict) and all(info.get(k) == v for k, v in want.items())
    return info if same and (folder / MANIFEST_CSV).is_file() and (folder / GROUPS_FILE).is_file() else None


def check_export_for(info: dict, hw: HardwareConfig, folder: str | Path) -> None:
    """Refuse, in one line, an export (its export.json `info`) made for another datasheet: its
    groups' features and core counts are that part's."""
    if info.get("datasheet_hash") not in (None, hw.datasheet_hash) or info.get("core_counts") != list(hw.core_counts):
        raise AutotuneError(f"{folder}/ was exported for hardware {info.get('hardware')!r}, not {hw.name!r}; give "
                            "the --hw it was exported with")


def read_export(folder: str | Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(export.json, groups.parquet, manifest.csv) of an export folder, or one clear line."""
    folder = Path(folder)
    if not (folder / EXPORT_FILE).is_file() or not (folder / GROUPS_FILE).is_file():
        raise AutotuneError(f"{folder}/ is not an export folder (no {EXPORT_FILE} / {GROUPS_FILE}); "
                            "make one with `autotune export-groups`")
    try:
        info = json.loads((folder / EXPORT_FILE).read_text())
        man = pd.read_csv(folder / MANIFEST_CSV, dtype={"group_id": str})
    except (OSError, ValueError) as err:
        raise AutotuneError(f"{folder}/: cannot read its export files ({err})") from None
    if list(man.columns[:3]) != MANIFEST_COLUMNS:
        raise AutotuneError(f"{folder}/{MANIFEST_CSV}: header must start with {','.join(MANIFEST_COLUMNS)}")
    if man.empty:
        raise AutotuneError(f"{folder}/{MANIFEST_CSV} lists no rows to measure (only its header); export the groups "
                            "again")
    return info, read_parquet(folder / GROUPS_FILE), man


# -- importing a profile ---------------------------------------------------------------------------
#: What a measuring command may write as a latency for a pair the part could not run (any case); with
#: `read_profile(..., unrunnable=True)` such a row counts as left out.
FAILED_WORDS = ("", "nan", "inf", "-inf", "infinity", "fail", "failed", "error", "n/a", "null", "none")


def read_profile(path: str | Path, known: dict[str, str], core_counts: list[int],
                 unrunnable: bool = False) -> pd.DataFrame:
    """The measurement rows of a profile CSV, checked: every bad row is named (the first 20, then a
    count) in one DatasetError, so nothing is imported from a file with any. With `unrunnable`, a
    row whose latency is one of FAILED_WORDS is left out (the part could not run that pair) and a
    header alone is no error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is no part of the header
        rows = list(csv.reader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read it ({err})") from None
    except csv.Error as err:
        raise DatasetError(f"{path}: not a CSV profile ({err})") from None
    if not rows:
        raise DatasetError(f"{path}: empty file; its first line must be the header {','.join(PROFILE_COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in PROFILE_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: the header (first line) lacks column {missing[0]!r}; it must have "
                           f"{','.join(PROFILE_COLUMNS)}")
    twice = sorted({c for c in header if header.count(c) > 1} & {*PROFILE_COLUMNS, "repeat"})
    if twice:
        raise DatasetError(f"{path}: the header names column {twice[0]!r} twice")
    col = {c: header.index(c) for c in header}
    problems: list[str] = []
    seen: dict[tuple, int] = {}
    out = []
    failed: list[tuple[str, int]] = []
    for line, r in enumerate(rows[1:], start=2):
        if not any(x.strip() for x in r):
            continue
        if len(r) < len(header):
            problems.append(f"line {line}: {len(r)} fields, the header has {len(header)}")
            continue
        gid, cores_s, lat_s = (r[col[c]].strip() for c in PROFILE_COLUMNS)
        rep = r[col["repeat"]].strip() if "repeat" in col else None
        if gid not in known:
            problems.append(f"line {line}: unknown group_id {gid!r} (not in the exported groups)")
            continue
        if not re.fullmatch(r"[0-9]{1,9}", cores_s):
            problems.append(f"line {line}: cores {cores_s!r} is not a whole number written in digits")
            continue
        cores = int(cores_s)
        if cores not in core_counts:
            problems.append(f"line {line}: cores {cores} is not one of the hardware's core counts {core_counts}")
            continue
        if unrunnable and lat_s.lower() in FAILED_WORDS:
            failed.append((gid, cores))
            continue
        lat = float(lat_s) if _DECIMAL.fullmatch(lat_s) else math.nan
        if not MIN_MS <= lat <= MAX_MS:
            problems.append(f"line {line}: latency_ms {lat_s!r} is not a decimal number of milliseconds in "
                            f"[{MIN_MS:g}, {MAX_MS:g}] (1 ns to 1 hour)")
            continue
        if rep is not None:  # without a repeat column, equal rows are repeats that happened to agree
            key = (gid, cores, rep)
            if key in seen:
                problems.append(f"line {line}: duplicate of line {seen[key]} ({gid}, {cores} cores, repeat {rep!r})")
                continue
            seen[key] = line
        out.append((gid, cores, lat))
    if len(problems) == 1:
        raise DatasetError(f"{path}: 1 bad row(s), nothing imported: {problems[0]}")
    if problems:
        more = f"\n... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DatasetError(f"{path}: {len(problems)} bad row(s), nothing imported:\n"
                           + "\n".join(problems[:MAX_LISTED]) + more)
    if not out and not unrunnable:
        raise DatasetError(f"{path}: no measurements (only the header)")
    frame = pd.DataFrame(out, columns=PROFILE_COLUMNS).astype({"cores": np.int64, "latency_ms": np.float64})
    frame.attrs["ignored_columns"] = [c for c in header if c not in (*PROFILE_COLUMNS, "repeat")]
    frame.attrs["failed"] = failed
    return frame


#: How import-profile makes one label of a pair's repeats: their median, or the fastest (for a machine
#: shared with others, whose slow spells only slow a run down: docs/costmodel.md, "Timing on the CPU").
AGGREGATES = ("median", "fastest")


def aggregate(frame: pd.DataFrame, how: str = "median") -> tuple[pd.DataFrame, list[str]]:
    """One row per (group_id, cores): the median of its repeats (`how` "fastest": the least), and a
    report line for each repeat of a pair with 3 or more that lies more than MAD_OUTLIER spreads
    from its median (kept, but the median resists it). The spread is one robust scale of log latency
    pooled over every pair: a MAD of 3 values is too small to judge by (``pooled_spread``)."""
    if how not in AGGREGATES:
        raise AutotuneError(f"--aggregate must be one of {', '.join(AGGREGATES)}, not {how!r}")
    g = frame.groupby(["group_id", "cores"], sort=False)["latency_ms"]
    med = g.transform("median")
    dev = np.abs(np.log(frame["latency_ms"] / med))
    n = g.transform("size")
    out_mask = (n >= 3) & (dev > MAD_OUTLIER * pooled_spread(dev, n))
    report = [f"{r.group_id} at {r.cores} cores: {r.latency_ms:.4g} ms against a median of {m:.4g} ms"
              for r, m in zip(frame[out_mask].itertuples(), med[out_mask])]
    stat = "median" if how == "median" else "min"
    agg = g.agg([stat, "size"]).reset_index().rename(columns={stat: "latency_ms", "size": "repeats"})
    return agg, report


def pooled_spread(dev: pd.Series, n: pd.Series) -> float:
    """1.4826 x the median absolute log deviation from the pair's median, over all repeats of pairs
    with 2 or more (an odd pair's median itself, deviation exactly 0, left out), at least MIN_SPREAD."""
    pool = dev[(n >= 2) & (dev > 0)].to_numpy()
    return max(1.4826 * float(np.median(pool)) if len(pool) else 0.0, MIN_SPREAD)


def import_profile(csv_path: str | Path, hw: HardwareConfig, out: str | Path, groups: str | Path | None = None,
                   force: bool = False, settings: dict | None = None, append: bool = False,
                   again: bool = False, how: str = "median", unrunnable: bool = False) -> dict:
    """Validate a profile, aggregate its repeats (`how`: AGGREGATES) and write the dataset `train`
    reads to `out`; returns
    the manifest plus `outliers` (report lines) and `measurements` (rows read). With `append`, the
    rows become one more shard of the measured dataset already in `out` (a later round of labels);
    with `again` too they may re-measure pairs already there (both rows are kept, and a model's
    memory answers the kernel with a robust mean of its rows, memory.huber_location). With
    `unrunnable`, every pair of the export the profile has no row for is one the part could not run
    (a measuring command leaves out what fails to compile or run): the dataset lists it
    (UNRUNNABLE_FILE, `new_unrunnable` in the result counts this profile's) and a model trained on
    it never plans it."""
    csv_path = Path(csv_path)
    groups = Path(groups) if groups is not None else csv_path.parent
    info, gframe, man = read_export(groups)
    check_export_for(info, hw, groups)
    out = Path(out)
    if again and not append:
        raise AutotuneError("--again re-measures pairs of the dataset in --out; it needs --append")
    if append:
        if force:
            raise AutotuneError("--append adds to the dataset in --out; --force would replace it: give one")
        if not (out / MANIFEST).is_file():
            raise DatasetError(f"{out}/ holds no dataset to append to; import the first profile without --append")
    elif not force and (out / MANIFEST).is_file() and kind_of(out) == DATASET:
        raise DatasetError(f"{out}/ already holds a dataset; add --force to replace it, --append to add these "
                           "rows to it, or choose another --out")
    check_folder_output(out, DATASET, inputs=[csv_path, groups], force=force or append, replace_needs_force=True)
    known = dict(zip(gframe["group_id"], gframe["group_json"]))
    frame = read_profile(csv_path, known, list(hw.core_counts), unrunnable=unrunnable)
    if len(frame):
        agg, outliers = aggregate(frame, how)
        rows = _dataset_rows(agg, gframe, hw)
    else:  # every pair failed (`unrunnable`)
        outliers, rows = [], pd.DataFrame(columns=ROW_COLUMNS)
    failed = _missing_pairs(man, frame, known) if unrunnable else None
    with FolderLock(out):
        recover_folder(out)
        if (out / MANIFEST).is_file() and not force and not append:
            raise DatasetError(f"{out}/ already holds a dataset; add --force to replace it, --append to add these "
                               "rows to it, or choose another --out")
        before = _appendable(out, hw, rows, again) if append else None
        old = before.manifest if before is not None else None
        if rows.empty and not old:
            raise DatasetError(f"{csv_path}: no measurements: the part ran none of the {len(man)} pairs exported "
                               f"to {groups}/")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent if out.parent.exists() else None))
        try:
            import pyarrow as pa

            shards = list(old["shards"]) if old else []
            if old:
                for f in shards:
                    shutil.copy2(out / f, tmp / f)
            new: list[tuple[str, int, str]] = []  # the shard this profile adds (none if the part ran nothing)
            if not rows.empty:
                name = f"shard-{len(shards):05d}.parquet"
                (tmp / name).write_bytes(parquet_bytes(pa.Table.from_pandas(rows, preserve_index=False)))
                new.append((name, len(rows), file_digest(tmp / name)))
            blocked = _unrunnable_entry(tmp, before, failed)
            exports = (old.get("exports") or [old.get("export")]) + [info] if old else [info]
            if old and settings is None:
                settings = old.get("settings")
            manifest = {"hardware": hw.name, "hardware_hash": hw.hash, "sampling": "profile", "settings": settings,
                        "source": "measured", "profile": str(csv_path), "export": exports[0], "exports": exports,
                        "rows": len(rows) + (old["rows"] if old else 0),
                        "labels": len(rows) + (old["labels"] if old else 0),
                        "measurements": len(frame) + (old.get("measurements", 0) if old else 0),
                        "aggregate": how,
                        "shards": shards + [n for n, _, _ in new],
                        "shard_rows": (list(old["shard_rows"]) if old else []) + [r for _, r, _ in new],
                        "shard_digests": (list(old["shard_digests"]) if old else []) + [d for _, _, d in new],
                        "zoo": None, "unrunnable": blocked,
                        "columns": {"rows": ROW_COLUMNS, "label": "latency_ms", "descriptive": ["repeats", "macs",
                                                                                                 "n_layers", "batch",
                                                                                                 "kind", "structure"]}}
            atomic_write_json(tmp / MANIFEST, manifest)
            out.parent.mkdir(parents=True, exist_ok=True)
            replace_folder(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return {**manifest, "outliers": outliers, "ignored_columns": frame.attrs.get("ignored_columns", []),
            "new_rows": len(rows), "new_unrunnable": 0 if failed is None else len(failed)}


def labels_spent(manifest: dict) -> int:
    """The pairs a measured dataset's part was asked to time: its labels and each time it could not run
    one (a failed compile costs device time all the same)."""
    return int(manifest["labels"]) + unrunnable_asks(manifest)


def unrunnable_asks(manifest: dict) -> int:
    """How many times the dataset's part was asked for a pair it could not run (a pair asked twice counts twice)."""
    entry = manifest.get("unrunnable") or {}
    return int(entry.get("asks", entry.get("rows", 0)))


def _missing_pairs(man: pd.DataFrame, frame: pd.DataFrame, known: dict[str, str]) -> pd.DataFrame:
    """The export's (group, cores) pairs the profile has no row for, as unrunnable rows."""
    have = set(zip(frame["group_id"].astype(str), frame["cores"].astype(int)))
    pairs = sorted({(str(g), int(c)) for g, c in zip(man["group_id"], man["cores"])} - have)
    return pd.DataFrame({"group_id": [g for g, _ in pairs], "group_json": [known[g] for g, _ in pairs],
                         "cores": np.array([c for _, c in pairs], dtype=np.int64)})


def _unrunnable_entry(tmp: Path, before: Dataset | None, failed: pd.DataFrame | None) -> dict | None:
    """Write the unrunnable pairs of the dataset appended to (`before`, if any) and `failed` to `tmp`;
    their manifest entry, or None when there are none."""
    import pyarrow as pa

    frames = [f for f in ((before.unrunnable if before is not None else None), failed) if f is not None and len(f)]
    if not frames:
        return None
    both = pd.concat(frames, ignore_index=True)[["group_id", "group_json", "cores"]]
    both = both.drop_duplicates(["group_id", "cores"]).reset_index(drop=True)
    (tmp / UNRUNNABLE_FILE).write_bytes(parquet_bytes(pa.Table.from_pandas(both, preserve_index=False)))
    asks = (unrunnable_asks(before.manifest) if before is not None else 0) + (len(failed) if failed is not None else 0)
    return {"file": UNRUNNABLE_FILE, "rows": len(both), "digest": file_digest(tmp / UNRUNNABLE_FILE), "asks": asks}


def _appendable(out: Path, hw: HardwareConfig, rows: pd.DataFrame, again: bool = False) -> Dataset:
    """The measured dataset in `out` that `rows` may join, or one clear error; pairs already there are
    refused (a profile imported twice) unless `again` says they are re-measured."""

    ds = read_dataset(out, hw)
    if ds.manifest.get("source") != "measured":
        raise DatasetError(f"{out}/ holds a {ds.manifest.get('source') or 'simulated'} dataset; --append adds "
                           "measurements to a dataset made by import-profile")
    if again:
        return ds
    have = set(zip(ds.rows["group_id"].astype(str), ds.rows["cores"].astype(int)))
    again_pairs = [f"{g}@{c}" for g, c in zip(rows["group_id"].astype(str), rows["cores"].astype(int))
                   if (g, c) in have]
    if again_pairs:
        raise DatasetError(f"{out}/ already holds {len(again_pairs)} of these pairs (first: {again_pairs[0]}); "
                           "measure new pairs, add --again if they are re-measurements, or import into a new --out")
    return ds


def measured_table(folder: str | Path, hw: HardwareConfig, profile: str | Path | None = None
                   ) -> tuple[str, MeasuredTable]:
    """(network spec, its measured table) from an export of a network's candidates
    (`export-groups --model NET`) and the profile measured from it (default `folder/measured.csv`),
    repeats aggregated by their median: what `eval --measured` scores plans on. A pair whose only
    rows give a failure word (FAILED_WORDS) as latency is one the part could not run: +inf ms."""
    folder = Path(folder)
    info, gframe, _ = read_export(folder)
    if not info.get("model"):
        raise AutotuneError(f"{folder}/ holds synthetic groups, not a network's candidates; export one with "
                            "`autotune export-groups --model NET`")
    check_export_for(info, hw, folder)
    csv_path = Path(profile) if profile is not None else folder / "measured.csv"
    if not csv_path.is_file():
        raise AutotuneError(f"{csv_path}: no such profile; measure {folder}/manifest.csv on the part, write it there")
    known = dict(zip(gframe["group_id"], gframe["group_json"]))
    frame = read_profile(csv_path, known, list(hw.core_counts), unrunnable=True)
    agg = aggregate(frame)[0] if len(frame) else frame
    ran = set(zip(agg["group_id"].astype(str), agg["cores"].astype(int)))
    failed = [(g, c, math.inf) for g, c in dict.fromkeys(frame.attrs["failed"]) if (g, c) not in ran]
    if not len(agg) and not failed:
        raise DatasetError(f"{csv_path}: no measurements (only the header)")
    col = {int(k): n for n, k in enumerate(hw.core_counts)}
    spans: dict[tuple[int, int], np.ndarray] = {}
    for gid, c, ms in [*zip(agg["group_id"], agg["cores"], agg["latency_ms"]), *failed]:
        m = re.fullmatch(r".*:(\d+)-(\d+)", str(gid))
        if m is None:
            continue  # a probe or other extra row
        row = spans.setdefault((int(m.group(1)), int(m.group(2))), np.full(len(col), np.nan))
        row[col[int(c)]] = float(ms)
    _free_views(spans, gframe, len(col))
    name = str(gframe["group_id"].iloc[0]).rsplit(":", 1)[0] if len(gframe) else str(info["model"])
    return str(info["model"]), MeasuredTable(name, spans, source=str(csv_path))


def _dataset_rows(agg: pd.DataFrame, gframe: pd.DataFrame, hw: HardwareConfig) -> pd.DataFrame:
    """Dataset rows (autotune.data.dataset's format) of aggregated measurements, marked `measured`."""
    meta = gframe.set_index("group_id")
    js = meta.loc[agg["group_id"], "group_json"].to_numpy()
    graphs = {gid: graph_from_dict(json.loads(meta.at[gid, "group_json"])) for gid in agg["group_id"].unique()}
    desc = pd.DataFrame([{"macs": float(graphs[g].total_macs), "n_layers": len(graphs[g]),
                          "batch": int(graphs[g].batch)} for g in agg["group_id"]])
    rows = pd.DataFrame({"group_id": agg["group_id"].to_numpy(dtype=object), "group_json": js,
                         "cores": agg["cores"].to_numpy(np.int64), "latency_ms": agg["latency_ms"].to_numpy(np.float64),
                         "source": "measured", "repeats": agg["repeats"].to_numpy(np.int64)})
    rows = pd.concat([rows, desc], axis=1)
    rows["kind"] = meta.loc[agg["group_id"], "kind"].to_numpy()
    rows["structure"] = meta.loc[agg["group_id"], "structure"].to_numpy()
    return rows


def write_profile(path: str | Path, frame: pd.DataFrame) -> None:
    """Write measurement rows as a profile CSV (header first), atomically."""
    data = frame.to_csv(index=False, lineterminator="\n")
    atomic_write(path, lambda tmp: Path(tmp).write_text(data))
