"""bench/bench_blackbox.py end to end on a tiny budget: devices benched in parallel processes come
back in the order asked, with every network scored against the oracle on measurements."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "bench_blackbox.py"
BLACKBOX = ROOT.parent / "shared" / "blackbox" / "blackbox.py"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BLACKBOX.is_file(), reason=f"no shared black boxes at {BLACKBOX.parent}")]


def _bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))  # spawned workers import the module by name
    return importlib.import_module("bench_blackbox")


@pytest.mark.parametrize("jobs", [1, 2])
def test_two_devices_come_back_in_order_with_every_network_scored(tmp_path, jobs, capsys, monkeypatch):
    nets, budget = ["alexnet", "squeezenet1_1"], 60
    out = tmp_path / "out"
    argv = ["--devices", "gpu-sm,cluster32", "--networks", ",".join(nets), "--budgets", str(budget),
            "--jobs", str(jobs), "--work", str(tmp_path / "work"), "--out", str(out)]
    assert _bench(monkeypatch).main(argv) == 0
    rows = json.loads((out / "blackbox.json").read_text())
    assert [r["device"] for r in rows] == ["gpu-sm", "cluster32"]
    for r in rows:
        assert 0 < r["labels_used"] <= budget
        assert [n["model"] for n in r["networks"]] == nets
        for n in r["networks"]:
            assert n["oracle"] == 0.0 and n["learned"] >= -1e-9 and n["greedy"] >= -1e-9
    assert (out / "blackbox.png").stat().st_size > 0
    assert "| gpu-sm | 60 |" in capsys.readouterr().out


def test_the_confirm_replay_reproduces_the_run_and_spends_a_larger_budget(tmp_path, monkeypatch):
    """bench_confirm_replay.py rebuilds the pre-confirm dataset, draws the run's noise again and so
    scores every strategy exactly as the run did, with the networks the run recorded (listed neither
    sorted nor in the zoo's order); a larger budget gives the stage more labels."""
    nets, budget = ["squeezenet1_1", "alexnet"], 80
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["--devices", "gpu-sm", "--networks", ",".join(nets), "--budgets", str(budget), "--jobs", "1",
            "--work", str(work), "--out", str(out), "--seed", "3"]
    assert _bench(monkeypatch).main(argv) == 0
    run = json.loads((out / "blackbox.json").read_text())[0]
    replay = importlib.import_module("bench_confirm_replay")
    folder = work / "gpu-sm" / f"plans-{budget}-s3"
    assert replay.planned_networks(folder) == nets
    assert replay.main([str(folder), "--out", str(tmp_path / "r1")]) == 0
    again = json.loads((tmp_path / "r1" / "replay.json").read_text())
    assert again["labels_used"] == run["labels_used"]
    assert again["networks"] == run["networks"]
    assert replay.main([str(folder), "--budget", str(budget + 20), "--out", str(tmp_path / "r2")]) == 0
    more = json.loads((tmp_path / "r2" / "replay.json").read_text())
    assert run["labels_used"] < more["labels_used"] <= budget + 20
    with pytest.raises(SystemExit, match="below the"):
        replay.main([str(folder), "--budget", "10", "--out", str(tmp_path / "r3")])
