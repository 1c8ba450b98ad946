"""The model's error on the kernels the label loop picks, recorded as each folder is measured.

A pick unmeasured when picked is out of sample for the model that picked it, and it lies where the
plans are. Each round's progress line reports it; the validation split (synthetic groups and
random kernels far from any plan) overstates it 1.5-3x (docs/costmodel.md, "The model's error where
it plans", which also records that the settle passes weighing it instead were not kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autotune.fileio import atomic_write_text
from autotune.hardware.config import HardwareConfig
from autotune.planning.planner import candidate_id
from autotune.synth.plan_tables import Pick
from autotune.synth.profiles import aggregate, read_export, read_profile

#: Each measured folder's picks: their prediction when picked, how often they were timed then, and
#: what the folder measured (`record_plan_errors`).
PLAN_ERRORS = "plan_errors.csv"


def record_plan_errors(hw: HardwareConfig, folder: Path, profile: Path, picks: list[Pick], how: str = "median"
                       ) -> None:
    """Write `folder`/PLAN_ERRORS: each pick's prediction when picked, its timings then, and what
    `profile` measured (its repeats aggregated by `how`): the model's error on the kernels the loop
    chooses, out of sample, which `plan_error` reads."""
    _, gframe, _ = read_export(folder)
    frame = read_profile(profile, dict(zip(gframe["group_id"], gframe["group_json"])), list(hw.core_counts),
                         unrunnable=True)  # the part may have failed on some, or all, of them
    got = aggregate(frame, how)[0] if len(frame) else frame
    ms = {(str(gid), int(c)): float(v) for gid, c, v in zip(got["group_id"], got["cores"], got["latency_ms"])}
    rows = [(candidate_id(p.graph.name, p.i, p.j), p.cores, p.predicted_ms, p.timed) for p in picks
            if p.predicted_ms > 0]  # a random draw's picks have no prediction
    lines = ["group_id,cores,predicted_ms,timed,measured_ms"]
    lines += [f"{gid},{c},{pr!r},{t},{ms[(gid, c)]!r}" for gid, c, pr, t in rows if (gid, c) in ms]
    atomic_write_text(folder / PLAN_ERRORS, "\n".join(lines) + "\n")


def plan_errors(folders: list[Path]) -> np.ndarray:
    """log(predicted / measured) of each kernel the loop picked before it was measured, from the
    PLAN_ERRORS of `folders`: the model's error out of sample, where the plans are."""
    errs: list[np.ndarray] = [np.empty(0)]
    for f in folders:
        if (f / PLAN_ERRORS).is_file():
            t = pd.read_csv(f / PLAN_ERRORS)
            t = t[t["timed"] == 0]
            errs.append(np.log(t["predicted_ms"].to_numpy(np.float64) / t["measured_ms"].to_numpy(np.float64)))
    e = np.concatenate(errs)
    return e[np.isfinite(e)]


def plan_error(folders: list[Path]) -> float | None:
    """The root mean square of `plan_errors` (None where there are none). The validation split's
    error is larger, 1.5-3x on the black boxes: it holds synthetic groups and random kernels far
    from any plan (docs/costmodel.md, "The model's error where it plans")."""
    e = plan_errors(folders)
    return _rms(e) if len(e) else None


def error_text(folder: Path) -> str:
    """The tail of a round's progress line: the model's error on the folder's unmeasured picks."""
    e = plan_errors([folder])
    return "" if not len(e) else f"; the model erred {_rms(e):.1%} (rms) on its {len(e)} unmeasured picks"


def _rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e * e)))
