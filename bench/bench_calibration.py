"""Time of one calibrated-roofline fit (`calibration.fit_roofline`, best of 2) against the number of
labels, with the Jacobian as it is computed (batched perturbed vectors on few rows, each core
count's constants on its own rows on many) and as scipy's '2-point' differences do it (one
parameter vector a pass over every row), with how far apart the two fits' predictions are.

Usage: python bench/bench_calibration.py [--hw mlu100] [--data data/mlu100] [--rows 200,2000,8000,30000]
(after `make synth`)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from autotune.cli.report import format_table
from autotune.costmodel import calibration
from autotune.costmodel.feature_cache import dataset_features
from autotune.costmodel.features import FEATURE_NAMES
from autotune.data.dataset import read_dataset
from autotune.errors import AutotuneError
from autotune.hardware.config import load_hardware


def _fit(parts: dict[str, np.ndarray], y_us: np.ndarray, differences: str = "fast",
         repeat: int = 2) -> tuple[float, np.ndarray]:
    best, pred = float("inf"), np.empty(0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        fit = calibration.fit_roofline(parts, y_us, differences=differences)
        best = min(best, time.perf_counter() - t0)
        pred = fit.predict_us(parts)
    return best, pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="mlu100")
    ap.add_argument("--data", default="data/mlu100")
    ap.add_argument("--rows", default="200,2000,8000,30000")
    args = ap.parse_args()
    try:
        hw = load_hardware(args.hw)
        ds = read_dataset(args.data, hw)
    except AutotuneError as err:
        sys.exit(f"bench_calibration: {err} (run `make synth` first)")
    X, _ = dataset_features(ds, hw)
    y = ds.rows["latency_ms"].to_numpy() * 1e3
    names = list(FEATURE_NAMES)
    parts = calibration.columns_to_parts(X, {c: names.index(c) for c in calibration.COLUMNS})
    rng = np.random.default_rng(0)
    rows = []
    for n in (int(v) for v in args.rows.split(",")):
        if n > len(y):
            print(f"skipping {n} rows: the dataset has {len(y)}")
            continue
        take = rng.choice(len(y), n, replace=False)
        sub = {k: v[take] for k, v in parts.items()}
        fast, p_fast = _fit(sub, y[take])
        plain, p_plain = _fit(sub, y[take], "plain")  # one vector a pass, as scipy's '2-point'
        rows.append([f"{n:,}", f"{plain:.2f}", f"{fast:.2f}", f"{plain / fast:.1f}x",
                     f"{np.abs(np.log(p_fast / p_plain)).max():.1e}"])
    print(format_table(rows, ["labels", "one vector a pass (s)", "as computed (s)", "speed-up",
                              "max |log| between the fits' predictions"], right={0, 1, 2, 3, 4}))


if __name__ == "__main__":
    main()
