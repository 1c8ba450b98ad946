"""Labelled rows per second of `autotune synth`: 1 and 2 local jobs, and through a dask LocalCluster.

Generation + features + simulator labels + Parquet shard written; the zoo file and plot are left out.
Usage: .venv/bin/python bench/bench_synth.py [--groups 3000] [--hw mlu100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from joblib import Parallel, delayed

from autotune.hardware.config import load_hardware
from autotune.synth.pipeline import run


def _rate(hw, folder: Path, groups: int, **kw) -> tuple[float, float]:
    t0 = time.perf_counter()
    m = run(hw, folder, groups, seed=0, progress=False, zoo_models=[], **kw)
    dt = time.perf_counter() - t0
    return m["rows"] / dt, dt


def _warm() -> None:
    import autotune.synth.pipeline  # noqa: F401  (the imports are most of a worker's start-up)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, default=3000)
    p.add_argument("--hw", default="mlu100")
    a = p.parse_args()
    hw = load_hardware(a.hw)
    print(f"{a.groups} groups x {len(hw.core_counts)} core counts on {hw.name}, shards of 500")
    print(f"{'runner':<34} {'seconds':>8} {'rows/s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        r, dt = _rate(hw, Path(tmp) / "j1", a.groups, jobs=1)
        print(f"{'in process, 1 job':<34} {dt:8.2f} {r:10,.0f}")
        t0 = time.perf_counter()
        Parallel(n_jobs=2)(delayed(_warm)() for _ in range(2))  # loky reuses these workers below
        start = time.perf_counter() - t0
        r, dt = _rate(hw, Path(tmp) / "j2", a.groups, jobs=2)
        print(f"{'joblib (loky), 2 jobs':<34} {dt:8.2f} {r:10,.0f}   (pool start {start:.1f} s, not counted)")
        from distributed import LocalCluster

        t0 = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            start = time.perf_counter() - t0
            r, dt = _rate(hw, Path(tmp) / "dask", a.groups, scheduler=cluster.scheduler_address)
        print(f"{'dask LocalCluster, 2 workers':<34} {dt:8.2f} {r:10,.0f}   (cluster start {start:.1f} s, not counted)")


if __name__ == "__main__":
    main()
