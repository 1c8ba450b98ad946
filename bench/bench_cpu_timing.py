"""How reproducible is a label on this CPU? Times a sample of an export's rows in several passes over
the sample (as `measure --passes` does) and prints how often two independent labels of the same row
agree within 10%: one pass against another, the fastest of N passes against the fastest of N
others, and (with 6 passes) the fastest of 2 with a third pass only where those two disagree. A
machine shared with others has slow spells; this says how much they move a label here.

    autotune export-groups --hw cpu --groups 200 --out G
    python bench/bench_cpu_timing.py G --rows 120 --passes 6     # writes reports/cpu/bench_cpu_timing.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autotune.device.ort import OrtDevice  # noqa: E402
from autotune.fileio import atomic_write_json  # noqa: E402
from autotune.synth.measure import PreparedModels  # noqa: E402
from autotune.synth.profiles import read_export  # noqa: E402


def agree(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose two labels are within 10% of each other."""
    return float(np.mean(np.abs(a / b - 1.0) < 0.10))


def fastest_deciding(ms: np.ndarray, tolerance: float) -> tuple[np.ndarray, float]:
    """Each row's fastest of its first two passes (columns), or of all three where those two differ by
    more than `tolerance` (a deciding third pass: measured, not shipped; docs/costmodel.md, "Timing on
    the CPU"); and the mean number of passes taken."""
    first = ms[:, :2].min(axis=1)
    split = np.abs(np.log(ms[:, 0] / ms[:, 1])) > np.log1p(tolerance)
    return np.where(split, np.minimum(first, ms[:, 2]), first), 2.0 + float(split.mean())


def time_passes(folder: Path, rows: pd.DataFrame, passes: int, repeats: int, timeout_s: float) -> np.ndarray:
    """ms of each row (its median run) in each pass: rows x passes, NaN where a row could not run."""
    prepared = PreparedModels(folder, 0, None, 1 << 30)
    device = OrtDevice(repeats=repeats, timeout_s=timeout_s, passes=1, warmup=1)
    out = np.full((len(rows), passes), np.nan)
    bar = tqdm(total=len(rows) * passes, desc="time", unit="row")
    for p in range(passes):
        for i, r in enumerate(rows.itertuples(index=False)):
            model = prepared.get(r.onnx_file, r.group_id)
            if model:
                try:
                    out[i, p] = device.time_one(model, int(r.cores)).ms
                except Exception:  # noqa: BLE001 - a row that fails is left out of the comparison
                    pass
            bar.update()
    bar.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=Path, nargs="?", default=ROOT / "data" / "cpu.groups",
                    help="an export-groups folder made for --hw cpu (default: the one `make synth HW=cpu` leaves)")
    ap.add_argument("--rows", type=int, default=120)
    ap.add_argument("--passes", type=int, default=6, help="an even number: half against half")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "cpu" / "bench_cpu_timing.json")
    args = ap.parse_args()
    _, _, man = read_export(args.export)
    rows = man.sample(min(args.rows, len(man)), random_state=args.seed)
    t0 = time.perf_counter()
    ms = time_passes(args.export, rows, args.passes, args.repeats, args.timeout)
    wall = time.perf_counter() - t0
    ms = ms[np.isfinite(ms).all(axis=1)]
    h = args.passes // 2
    single = [agree(ms[:, a], ms[:, b]) for a in range(args.passes) for b in range(a + 1, args.passes)]
    res = {"rows": len(ms), "passes": args.passes, "wall_s": round(wall, 1),
           "one_pass_vs_another": float(np.mean(single)),
           f"fastest_of_{h}_vs_fastest_of_{h}": agree(ms[:, 0::2].min(axis=1), ms[:, 1::2].min(axis=1)),
           f"median_of_{h}_vs_median_of_{h}": agree(np.median(ms[:, 0::2], axis=1), np.median(ms[:, 1::2], axis=1))}
    if h >= 2:
        res["fastest_of_2_vs_fastest_of_2"] = agree(ms[:, [0, 2]].min(axis=1), ms[:, [1, 3]].min(axis=1))
    if h >= 3:
        for tol in (0.03, 0.05, 0.10):
            a, na = fastest_deciding(ms[:, 0::2], tol)
            b, nb = fastest_deciding(ms[:, 1::2], tol)
            res[f"fastest_of_2_third_past_{tol:.0%}"] = agree(a, b)
            res[f"passes_taken_third_past_{tol:.0%}"] = (na + nb) / 2
    for k, v in res.items():
        print(f"{k:34s} {v:.3f}" if isinstance(v, float) and k != "wall_s" else f"{k:34s} {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
