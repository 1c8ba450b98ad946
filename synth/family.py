"""Labelling a hardware family (`autotune synth --hw-family`): D devices drawn from the family's
ranges, each labelled like one device (`pipeline.run`, its own groups and seed) in a subfolder,
and `family.json` listing the draw. The universal model trains on all of them (autotune/universal.py).

A device's subfolder is an ordinary dataset folder (resumable shards, manifest.json, its config in
`hardware.yaml`), so a killed run resumes device by device and shard by shard.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from autotune.errors import DatasetError
from autotune.family import FAMILY_MANIFEST, Family
from autotune.fileio import FolderLock, atomic_write_json, atomic_write_text, check_output
from autotune.hardware import HardwareConfig, dump_hardware

from .generator import GENERATOR_VERSION
from .pipeline import code_digest, run

#: Defaults of `make universal`: 256 devices, 1,500 labels each (about 300 groups at every core count):
#: many devices with few labels each teach what the datasheet decides better than few devices with many.
DEFAULT_DEVICES = 256
DEFAULT_BUDGET = 384_000


def device_seed(seed: int, i: int) -> int:
    """Generator seed of device i: each device labels its own groups."""
    return int(np.random.SeedSequence([seed, i, 0xFA]).generate_state(1)[0] % 2**31)


def family_settings(fam: Family, devices: int, budget: int, seed: int, sampling: str) -> dict:
    return {"family": fam.name, "family_hash": fam.hash, "devices": int(devices), "budget": int(budget),
            "seed": int(seed), "sampling": sampling, "generator_version": GENERATOR_VERSION,
            "code_digest": code_digest()}


def run_family(fam: Family, folder: str | Path, devices: int, budget: int, seed: int = 0, jobs: int = 1,
               force: bool = False, progress: bool = False, sampling: str = "sobol") -> dict:
    """Draw `devices` devices from `fam` (seeded) and label `budget` labels split evenly over them;
    returns family.json's content. A folder made with other settings is refused unless `force`."""
    if devices < 1:
        raise DatasetError(f"--devices must be at least 1, got {devices}")
    per = budget // devices
    if per < 1:
        raise DatasetError(f"--budget {budget} is less than one label for each of {devices} devices")
    folder = Path(folder)
    check_output(folder, "folder")
    settings = family_settings(fam, devices, budget, seed, sampling)
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
            from .active import min_budget

            need = max(min_budget(len(hw.core_counts)) for hw in hws)
            if per < need:
                raise DatasetError(f"--budget {budget} gives each of {devices} devices {per} labels, too few for "
                                   f"active sampling (at least {need} each, {need * devices} in all)")
        t0 = time.perf_counter()
        manifests = _label_devices(hws, folder, per, seed, jobs, force, progress, sampling)
        entries = []
        for i, (hw, m) in enumerate(zip(hws, manifests)):
            entries.append({"name": hw.name, "folder": hw.name, "hardware_hash": hw.hash,
                            "datasheet_hash": hw.datasheet_hash, "labels": m["labels"],
                            "seed": device_seed(seed, i), "config": hw.model_dump()})
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
