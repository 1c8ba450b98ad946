"""Labels from this machine's CPU (`autotune synth --backend onnxruntime`): synthetic groups and,
with `plans`, rounds on the kernels the plans use, each timed as an ONNX Runtime session.

Kept apart from autotune/synth/profiles.py (the export and profile formats), which it builds on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from autotune.errors import DatasetError
from autotune.fileio import atomic_write_json
from autotune.frontends.loader import load_graph
from autotune.frontends.synthetic import GENERATOR_VERSION
from autotune.hardware.config import HardwareConfig
from autotune.synth.measure import measure
from autotune.synth.plan_labels import CPU_ROUNDS, NETWORK_SHARE, measure_picks, network_picks, plan_rounds
from autotune.synth.profiles import (
    EXPORT_FILE,
    GROUPS_FILE,
    MANIFEST,
    MANIFEST_CSV,
    export_groups,
    import_profile,
    skipped_note,
)

#: Share of a CPU budget spent on the kernels the plans use (`synth --backend onnxruntime --plans`).
CPU_PLAN_SHARE = 0.3
#: Passes over each batch of rows; a label is its fastest pass (docs/costmodel.md, "Timing on the CPU").
CPU_PASSES = 2
#: How a pair's passes become its label (profiles.AGGREGATES).
CPU_AGGREGATE = "fastest"


def synth_by_measuring(hw: HardwareConfig, folder: str | Path, budget: int, seed: int = 0, timeout_s: float = 1.0,
                       repeats: int = 5, progress: bool = False, plans: list[str] | None = None,
                       plan_share: float = CPU_PLAN_SHARE, log: Callable[[str], None] | None = None,
                       passes: int = CPU_PASSES, network_share: float = NETWORK_SHARE) -> dict:
    """`autotune synth --backend onnxruntime`: export budget / len(core_counts) synthetic groups, time
    each on this CPU at every core count, import the profile into `folder`. A folder already made
    with the same settings is kept (measuring is the slow part). The export sits beside it,
    `<folder>.groups`, its measured.csv written row by row: a rerun after a crash or a kill reuses
    an export made with the same settings and measures only the rows it lacks. Each row is timed in
    `passes` passes over its batch, and its label is the fastest. With `plans`
    (networks), `network_share` of the rest goes to their candidate kernels drawn at random
    (`<folder>.networks`) and `plan_share` of the budget to rounds on the kernels their plans use
    (autotune/synth/plan_labels.py), exported and measured beside it in `<folder>.rounds`; `log` gets
    a line per round."""
    folder = Path(folder)
    settings = {"hardware_hash": hw.hash, "budget": int(budget), "seed": int(seed), "backend": "onnxruntime",
                "passes": int(passes)}
    if plans:
        settings.update({"plans": list(plans), "plan_share": plan_share, "network_share": network_share})
    try:
        old = json.loads((folder / MANIFEST).read_text())
        if old.get("settings") == settings:
            return {**old, "outliers": [], "kept": True}
    except (OSError, ValueError):
        pass
    first = budget - (round(budget * plan_share) if plans else 0)
    graphs = [load_graph(p) for p in plans] if plans else []
    kernels = network_picks(hw, graphs, int(round(first * network_share)), seed)
    n = max(1, (first - len(kernels)) // len(hw.core_counts))
    groups = folder.parent / f"{folder.name}.groups"
    info = _export_made_with(groups, hw, n, seed)
    if info is None:
        info = export_groups(hw, groups, n_groups=n, seed=seed, force=True, progress=progress)
    notes: list[str] = []

    def on_cpu(export: Path) -> Path:
        frame, said = measure(export, "onnxruntime", limit=budget, seed=seed, repeats=repeats, warmup=1,
                              timeout_s=timeout_s, progress=progress, out=export / "measured.csv", passes=passes)
        notes.extend(said)
        if frame.empty:
            raise DatasetError(f"nothing could be measured on this CPU ({'; '.join(said) or 'no rows'})")
        return export / "measured.csv"

    # a label is a pair's fastest pass: the one a slow spell of this machine touched least
    m = import_profile(on_cpu(groups), hw, folder, groups=groups, force=True,
                       settings={**settings, "complete": False} if plans else settings, how=CPU_AGGREGATE)
    outliers = list(m["outliers"])
    say = log or (lambda _m: None)
    if kernels:
        nets = folder.parent / f"{folder.name}.networks"
        before = int(m["labels"])
        m = measure_picks(hw, on_cpu, nets, folder, kernels, seed, CPU_AGGREGATE)
        outliers += m["outliers"]
        say(f"round 0: {before} synthetic labels and {int(m['labels']) - before} on random candidate kernels "
            "of the networks")
    if plans:
        rounds = folder.parent / f"{folder.name}.rounds"
        plan_rounds(hw, on_cpu, rounds, folder, rounds / "model", budget, graphs, seed,
                    rounds=CPU_ROUNDS, train_kw={"seed": seed}, say=say, how=CPU_AGGREGATE)
        _mark_settings(folder, settings)
        m = json.loads((folder / MANIFEST).read_text())
    return {**m, "outliers": outliers, "notes": [x for x in [skipped_note(info)] if x] + notes, "kept": False}


def _mark_settings(folder: Path, settings: dict) -> None:
    """Record the finished dataset's settings in its manifest (a rerun then keeps it)."""
    man = json.loads((folder / MANIFEST).read_text())
    man["settings"] = settings
    atomic_write_json(folder / MANIFEST, man)


def _export_made_with(groups: Path, hw: HardwareConfig, n: int, seed: int) -> dict | None:
    """export.json of `groups` if it holds `n` synthetic groups of this generator for `hw` and `seed`
    (whatever byte cap free memory gave then: the measurements check memory again), else None."""
    try:
        info = json.loads((groups / EXPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    want = {"hardware_hash": hw.hash, "seed": seed, "requested_groups": n, "model": None, "probes": False,
            "weights": False, "generator_version": GENERATOR_VERSION}
    same = isinstance(info, dict) and all(info.get(k) == v for k, v in want.items())
    return info if same and (groups / MANIFEST_CSV).is_file() and (groups / GROUPS_FILE).is_file() else None
