"""Labelling a hardware family (`autotune synth --hw-family`): D datasheets drawn from the family's
ranges, each labelled like one device (`pipeline.run`, its own groups and seed) in a subfolder,
and `family.json` listing the draw. The universal model trains on all of them (autotune/costmodel/universal.py).

With S siblings, each datasheet's rows are measured again on S - 1 more devices of that datasheet
(device values redrawn from the family): what a lab with several boards of one part would record.
The mean over a datasheet's siblings is the universal model's target, so it learns what the family
does for a datasheet from the labels themselves, not by averaging neighbouring datasheets.

Every device also runs the probe kernels (autotune/costmodel/probes.py); family.json records their latencies,
from which the universal model learns what a part's probes say about the rest of its kernels.

A device's subfolder is an ordinary dataset folder (resumable shards, manifest.json, its config in
`hardware.yaml`); its siblings' measurements sit beside it in `siblings.parquet`. A killed run
resumes device by device and shard by shard.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from autotune.artefacts import FAMILY_DATASET, check_folder_output
from autotune.costmodel.probes import probe_noise_seed, probe_pairs
from autotune.costmodel.universal import sibling_rows, sibling_stamp
from autotune.data.dataset import groups_of, parquet_bytes, read_dataset
from autotune.device.base import Simulator
from autotune.errors import DatasetError
from autotune.fileio import FolderLock, atomic_write, atomic_write_json, atomic_write_text
from autotune.frontends.synthetic import GENERATOR_VERSION
from autotune.hardware.config import HardwareConfig, dump_hardware
from autotune.hardware.family import FAMILY_MANIFEST, SIBLINGS_FILE, Family
from autotune.ir.tables import GroupBatch
from autotune.synth.active import min_budget
from autotune.synth.pipeline import code_digest, run

#: Defaults of the universal dataset (the Makefile's universal target): 256 datasheets, each measured
#: on 16 devices, 1,500 labels each (about 300 groups at every core count). Many datasheets with few
#: labels each teach what the datasheet decides better than few with many; siblings cut the device
#: values' noise in the target (bench/bench_transfer.py).
DEFAULT_DEVICES = 256
#: Siblings (devices per datasheet): more halve the target's noise from redrawn device values, for
#: half a minute more measuring (docs/costmodel.md, "Measured choices behind constants").
DEFAULT_SIBLINGS = 16
DEFAULT_BUDGET = 6_144_000


def device_seed(seed: int, i: int) -> int:
    """Generator seed of device i: each device labels its own groups."""
    return int(np.random.SeedSequence([seed, i, 0xFA]).generate_state(1)[0] % 2**31)


def sibling_seed(seed: int, i: int) -> int:
    """Seed of datasheet i's siblings (their device values and their timing noise)."""
    return int(np.random.SeedSequence([seed, i, 0x51B]).generate_state(1)[0] % 2**31)


def family_settings(fam: Family, devices: int, budget: int, seed: int, sampling: str, siblings: int = 1) -> dict:
    return {"family": fam.name, "family_hash": fam.hash, "devices": int(devices), "budget": int(budget),
            "seed": int(seed), "sampling": sampling, "siblings": int(siblings),
            "generator_version": GENERATOR_VERSION, "code_digest": code_digest()}


def run_family(fam: Family, folder: str | Path, devices: int, budget: int, seed: int = 0, jobs: int = 1,
               force: bool = False, progress: bool = False, sampling: str = "sobol", siblings: int = 1) -> dict:
    """Draw `devices` datasheets from `fam` (seeded), each measured on `siblings` devices, and label
    `budget` labels split evenly over all of them; returns family.json's content. A folder made with
    other settings is refused unless `force`."""
    if devices < 1:
        raise DatasetError(f"--devices must be at least 1, got {devices}")
    if siblings < 1:
        raise DatasetError(f"--siblings must be at least 1, got {siblings}")
    if siblings > 1 and sampling == "active":
        raise DatasetError("--siblings measures one datasheet's rows on several devices; active sampling picks "
                           "rows per device, so use --sampling sobol (or --siblings 1)")
    per = budget // (devices * siblings)
    if per < 1:
        raise DatasetError(f"--budget {budget} is less than one label for each of {devices} x {siblings} devices")
    folder = Path(folder)
    check_folder_output(folder, FAMILY_DATASET)
    settings = family_settings(fam, devices, budget, seed, sampling, siblings)
    mpath = folder / FAMILY_MANIFEST
    with FolderLock(folder):
        if mpath.is_file() and not force:
            try:
                old = json.loads(mpath.read_text())
            except (ValueError, OSError):
                old = None
            if not isinstance(old, dict) or old.get("settings") != settings:
                raise DatasetError(f"{folder}/ holds a family dataset made with other settings; "
                                   "pass --force to replace it")
        hws = fam.draw(devices, seed)
        if sampling == "active":
            need = max(min_budget(len(hw.core_counts)) for hw in hws)
            if per < need:
                raise DatasetError(f"--budget {budget} gives each of {devices} devices {per} labels, too few for "
                                   f"active sampling (at least {need} each, {need * devices} in all)")
        t0 = time.perf_counter()
        manifests = _label_devices(hws, folder, per, seed, jobs, force, progress, sampling)
        sibs = [fam.siblings(hw, siblings - 1, sibling_seed(seed, i)) for i, hw in enumerate(hws)]
        if siblings > 1:
            _label_siblings(hws, sibs, folder, seed, jobs, progress)
        probes = _probe_devices(hws, sibs, seed, jobs)
        entries = []
        for i, (hw, m) in enumerate(zip(hws, manifests)):
            entries.append({"name": hw.name, "folder": hw.name, "hardware_hash": hw.hash,
                            "datasheet_hash": hw.datasheet_hash, "labels": m["labels"] * siblings,
                            "seed": device_seed(seed, i), "config": hw.model_dump(),
                            "siblings": [{"name": s.name, "hardware_hash": s.hash, "config": s.model_dump()}
                                         for s in sibs[i]],
                            "probes_ms": probes[i]})
        out = {"settings": settings, "family_spec": fam.spec, "labels": sum(e["labels"] for e in entries),
               "devices": entries}
        atomic_write_json(mpath, out)
        out["label_s"] = time.perf_counter() - t0
    return out


def _label_one(hw: HardwareConfig, sub: Path, per: int, seed: int, force: bool, sampling: str) -> dict:
    m = run(hw, sub, per, seed, jobs=1, force=force, progress=False, zoo_models=[], sampling=sampling)
    atomic_write_text(sub / "hardware.yaml", dump_hardware(hw))  # for people: family.json is what is read
    return m


def _label_devices(hws: list[HardwareConfig], folder: Path, per: int, seed: int, jobs: int, force: bool,
                   progress: bool, sampling: str) -> list[dict]:
    """Label every device (joblib processes over devices), with one bar over all labels."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    bar = tqdm(total=per * len(hws), desc=f"labelling {len(hws)} devices", unit="label", disable=not progress,
               smoothing=0.1)
    try:
        work = (delayed(_label_one)(hw, folder / hw.name, per, device_seed(seed, i), force, sampling)
                for i, hw in enumerate(hws))
        out = []
        for m in Parallel(n_jobs=jobs, return_as="generator")(work):
            out.append(m)
            bar.update(m["labels"])
        return out
    finally:
        bar.close()


def _measure_siblings(hw: HardwareConfig, sibs: list[HardwareConfig], sub: Path, seed: int) -> int:
    """Measure the rows of hw's dataset in `sub` on each sibling (timing noise included) into
    siblings.parquet; kept when it already holds these siblings' measurements of these rows."""
    import pyarrow as pa

    data = read_dataset(sub, hw)
    hashes = [s.hash for s in sibs]
    try:
        sibling_rows(sub, data, hashes)
        return len(data.rows) * len(sibs)  # already measured, and intact
    except DatasetError:
        pass
    groups, codes = groups_of(data.rows)
    batch = GroupBatch.build(groups)
    cores = data.rows["cores"].to_numpy(np.int64)
    cols = {"group_id": data.rows["group_id"].to_numpy(), "cores": cores}
    for j, s in enumerate(sibs):
        cols[f"latency_ms_{j + 1}"] = Simulator(s).measure_batch(batch, codes, cores, seed=seed * 131 + j)
    table = pa.table(cols).replace_schema_metadata({"autotune": json.dumps(sibling_stamp(data, hashes))})
    raw = parquet_bytes(table)
    atomic_write(sub / SIBLINGS_FILE, lambda tmp: Path(tmp).write_bytes(raw))
    return len(data.rows) * len(sibs)


def _probe_one(hw: HardwareConfig, sibs: list[HardwareConfig], seed: int, i: int) -> list[list[float]]:
    pairs = probe_pairs(hw)  # one datasheet: the same kernels on each of its devices
    return [measure_probes(d, probe_noise_seed(seed, i, j), pairs).tolist() for j, d in enumerate([hw, *sibs])]


def _probe_devices(hws: list[HardwareConfig], sibs: list[list[HardwareConfig]], seed: int,
                   jobs: int) -> list[list[list[float]]]:
    """Per datasheet, the probes (autotune/costmodel/probes.py) measured on its first device and each sibling (ms)."""
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=jobs)(delayed(_probe_one)(hw, sibs[i], seed, i) for i, hw in enumerate(hws)))


def _label_siblings(hws: list[HardwareConfig], sibs: list[list[HardwareConfig]], folder: Path, seed: int,
                    jobs: int, progress: bool) -> None:
    """Every datasheet's rows on its siblings (joblib processes over datasheets), with one bar."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    n = sum(len(s) for s in sibs)
    bar = tqdm(total=n, desc=f"measuring on {n} sibling devices", unit="device", disable=not progress, smoothing=0.1)
    try:
        work = (delayed(_measure_siblings)(hw, sibs[i], folder / hw.name, sibling_seed(seed, i))
                for i, hw in enumerate(hws))
        for _ in Parallel(n_jobs=jobs, return_as="generator")(work):
            bar.update(len(sibs[0]))
    finally:
        bar.close()


def measure_probes(hw: HardwareConfig, seed: int, pairs: tuple | None = None) -> np.ndarray:
    """The probes' latencies (ms) as `hw`'s device measures them (the simulator, timing noise included):
    labelling, so it lives with synth, not with the model-side probes (autotune/costmodel/probes.py)."""

    batch, gidx, cores = pairs if pairs is not None else probe_pairs(hw)
    return Simulator(hw).measure_batch(batch, gidx, cores, seed=seed)
