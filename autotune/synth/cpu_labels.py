"""Labels from this machine's CPU (`autotune synth --backend onnxruntime`): random kernels of the
built-in networks, synthetic groups and, with `plans`, rounds on the kernels the plans use, each
timed as an ONNX Runtime session.

Kept apart from autotune/synth/profiles.py (the export and profile formats), which it builds on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from autotune.errors import DatasetError
from autotune.fileio import atomic_write_json
from autotune.frontends.loader import load_graph
from autotune.hardware.config import HardwareConfig
from autotune.synth.measure import measure
from autotune.synth.plan_labels import (
    CPU_ROUNDS,
    NETWORK_SHARE,
    ZOO_SHARE,
    first_share,
    measure_picks,
    plan_rounds,
)
from autotune.synth.profiles import (
    MANIFEST,
    export_groups,
    import_profile,
    skipped_note,
    synthetic_export_of,
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
                       passes: int = CPU_PASSES, network_share: float = NETWORK_SHARE,
                       zoo_share: float = ZOO_SHARE) -> dict:
    """`autotune synth --backend onnxruntime`: time `budget` (group, core count) pairs on this CPU and
    import them into `folder`. Before any plan (the whole budget, or all but `plan_share` of it with
    `plans`): `network_share` on random candidate kernels of the `plans` networks, `zoo_share` of the
    rest on random kernels of the other built-in networks (both in `<folder>.networks`), what is left
    on synthetic groups at every core count (`<folder>.groups`); then, with `plans`, rounds on the
    kernels their plans use (autotune/synth/plan_labels.py) in `<folder>.rounds`, `log` getting a
    line per round. Every export's measured.csv is written row by row, so a rerun after a crash or
    a kill measures only the rows it lacks; each row is timed in `passes` passes and its label is
    the fastest. A folder already made with the same settings is kept (measuring is the slow part)."""
    folder = Path(folder)
    if not 0.0 <= zoo_share <= 1.0 or not 0.0 <= network_share <= 1.0:
        raise DatasetError(f"zoo_share and network_share are fractions from 0 to 1, got {zoo_share} and "
                           f"{network_share}")
    settings = {"hardware_hash": hw.hash, "budget": int(budget), "seed": int(seed), "backend": "onnxruntime",
                "passes": int(passes), "zoo_share": zoo_share}
    if plans:
        settings.update({"plans": list(plans), "plan_share": plan_share, "network_share": network_share})
    try:
        old = json.loads((folder / MANIFEST).read_text())
        if old.get("settings") == settings:
            return {**old, "outliers": [], "kept": True}
    except (OSError, ValueError):
        pass
    graphs = [load_graph(p) for p in plans] if plans else []
    first = budget - (round(budget * plan_share) if plans else 0)
    kernels, others = first_share(hw, graphs, first, network_share, zoo_share, seed)
    n = (first - len(kernels) - len(others)) // len(hw.core_counts)
    if n == 0 and not kernels and not others:
        n = 1  # a budget short of one group at every core count measures what it can of one
    notes: list[str] = []

    def on_cpu(export: Path) -> Path:
        frame, said = measure(export, "onnxruntime", limit=budget, seed=seed, repeats=repeats, warmup=1,
                              timeout_s=timeout_s, progress=progress, out=export / "measured.csv", passes=passes)
        notes.extend(said)
        if frame.empty:
            raise DatasetError(f"nothing could be measured on this CPU ({'; '.join(said) or 'no rows'})")
        return export / "measured.csv"

    # a label is a pair's fastest pass: the one a slow spell of this machine touched least
    unfinished = {**settings, "complete": False}
    info: dict | None = None
    m: dict = {}
    if n > 0:
        groups = folder.parent / f"{folder.name}.groups"
        info = synthetic_export_of(groups, hw, n, seed)
        if info is None:
            info = export_groups(hw, groups, n_groups=n, seed=seed, force=True, progress=progress)
        m = import_profile(on_cpu(groups), hw, folder, groups=groups, force=True, settings=unfinished,
                           how=CPU_AGGREGATE)
    outliers = list(m.get("outliers", []))
    say = log or (lambda _m: None)
    picks = kernels + others
    if picks:
        nets = folder.parent / f"{folder.name}.networks"
        before = int(m.get("labels", 0))
        m = measure_picks(hw, on_cpu, nets, folder, picks, seed, CPU_AGGREGATE, settings=None if m else unfinished)
        outliers += m["outliers"]
        say(f"round 0: {before} synthetic labels, {int(m['labels']) - before} on random candidate kernels "
            f"({len(kernels)} pairs drawn from the plans' networks, {len(others)} from other built-in networks)")
    if plans:
        rounds = folder.parent / f"{folder.name}.rounds"
        plan_rounds(hw, on_cpu, rounds, folder, rounds / "model", budget, graphs, seed,
                    rounds=CPU_ROUNDS, train_kw={"seed": seed}, say=say, how=CPU_AGGREGATE)
    _mark_settings(folder, settings)
    m = json.loads((folder / MANIFEST).read_text())
    skipped = skipped_note(info) if info is not None else None
    return {**m, "outliers": outliers, "notes": [x for x in [skipped] if x] + notes, "kept": False}


def _mark_settings(folder: Path, settings: dict) -> None:
    """Record the finished dataset's settings in its manifest (a rerun then keeps it)."""
    man = json.loads((folder / MANIFEST).read_text())
    man["settings"] = settings
    atomic_write_json(folder / MANIFEST, man)


