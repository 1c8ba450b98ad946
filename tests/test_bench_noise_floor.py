"""bench/bench_noise_floor.py end to end on one device and network: every plan scored against the
oracle on the black box's noise-free table, the labels counted as every pair timed k times."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "bench_noise_floor.py"
BLACKBOX = ROOT.parent / "shared" / "blackbox" / "blackbox.py"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BLACKBOX.is_file(), reason=f"no shared black boxes at {BLACKBOX.parent}")]


def test_plans_on_every_pair_timed_are_scored_against_the_oracle(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))
    bench = importlib.import_module("bench_noise_floor")
    out = tmp_path / "out"
    argv = ["--devices", "gpu-sm", "--networks", "alexnet", "--timings", "1,2", "--jobs", "1",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    assert bench.main(argv) == 0
    res = json.loads((out / "noise_floor-s0.json").read_text())
    rows = {r["kind"]: r for r in res["summary"]}
    assert list(rows) == ["k=1", "k=2", "k=1, pick on fresh"]
    pairs = res["devices"][0]["networks"]["alexnet"]["pairs"]
    assert pairs > 0 and rows["k=2"]["labels"] == 2 * rows["k=1"]["labels"] == 2 * pairs
    assert rows["k=1, pick on fresh"]["labels"] > pairs
    for r in res["devices"][0]["networks"]["alexnet"]["rows"].values():
        assert all(r[s] >= -1e-9 for s in ("dp", "none", "cores-only", "fuse-max", "greedy"))
    assert (out / "noise_floor-s0.png").stat().st_size > 0
    assert "| gpu-sm | k=2 |" in capsys.readouterr().out
