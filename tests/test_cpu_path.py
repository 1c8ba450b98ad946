"""The CPU path is memory-safe and loses no measurement: the generator keeps each `cpu` group under a
byte cap from this host's free memory, `measure` skips a row too large to run with one note and goes
on, and a run killed while measuring keeps every finished row for the rerun to build on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autotune.errors import AutotuneError
from autotune.frontends.synthetic import byte_cap, generate_within, group_bytes
from autotune.hardware.config import load_hardware
from autotune.hardware.host import MEM_ENV, group_byte_cap
from autotune.synth.cpu_labels import CPU_PASSES
from autotune.synth.measure import ORT_COLUMNS, ProfileLog
from autotune.synth.profiles import aggregate, export_groups, read_export

CPU = load_hardware("cpu")
NO_ORT = "onnxruntime is not installed: the CPU is measured with it"


@pytest.mark.parametrize("available", [None, 256 << 20])
def test_the_generator_never_makes_a_cpu_group_over_its_byte_cap(available, monkeypatch):
    """Over 300 groups each of two seeds, at this host's memory and at a small one: every group kept
    holds at most the cap, every group left out more, and together they are the whole sequence."""
    if available is not None:
        monkeypatch.setenv(MEM_ENV, str(available))
    cap = byte_cap(CPU)
    assert cap == group_byte_cap() and cap & (cap - 1) == 0
    for seed in (0, 1):
        kept, skipped = generate_within(300, CPU, seed, cap)
        assert all(group_bytes(g, CPU.dtype_bytes) <= cap for _, g in kept)
        assert all(size > cap for _, size in skipped)
        assert sorted([k for k, _ in kept] + [k for k, _ in skipped]) == list(range(300))
    if available is not None:
        assert skipped, "a 16 MiB cap leaves some groups out"


def test_other_parts_have_no_byte_cap_and_export_reports_what_it_skips(tmp_path, monkeypatch, capsys):
    from autotune.cli import main

    assert byte_cap(load_hardware("mlu100")) is None  # its datasheet gives no memory size
    monkeypatch.setenv(MEM_ENV, str(64 << 20))
    assert main(["export-groups", "--hw", "cpu", "--groups", "40", "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    info, groups, _ = read_export(tmp_path / "g")
    over = info["over_byte_cap"]
    assert over and info["max_group_bytes"] == 4 << 20 and len(groups) + len(over) == 40
    assert f"note: skipped {len(over)} of 40 groups holding more than 4 MiB" in out


def test_a_profile_log_drops_a_partial_last_line_and_refuses_another_exports_rows(tmp_path):
    csv = tmp_path / "measured.csv"
    head = ",".join(ORT_COLUMNS) + "\n"
    csv.write_text(head + "a,1,0.5,7,0.1,onnxruntime,0\na,2,0.")
    with ProfileLog(csv, {("a", 1), ("a", 2)}) as log:
        assert log.kept == 1 and log.done == {("a", 1, 0)}
        log.add(("a", 2, 0.25, 7, 0.0, "onnxruntime", 0))
        log.add(("a", 2, 0.5, 7, 0.0, "onnxruntime", 1))
    assert csv.read_text() == head + "a,1,0.5,7,0.1,onnxruntime,0\na,2,0.25,7,0.0,onnxruntime,0\n" \
        "a,2,0.5,7,0.0,onnxruntime,1\n"
    for text, words in [(head + "b,1,0.5,7,0.1,onnxruntime,0\n", "line 2: a row measured for another export"),
                        (head + "a,1,0.5,7,0.1,onnxruntime,0\na,1,0.6,7,0.1,onnxruntime,0\n", "line 3: a repeated row"),
                        ("group_id,cores,latency_ms\n", "not a profile `measure --backend onnxruntime` writes")]:
        csv.write_text(text)
        with pytest.raises(AutotuneError, match=words):
            ProfileLog(csv, {("a", 1)}).__enter__()


def test_a_profile_from_before_passes_is_read_as_pass_0_and_moved_to_the_new_layout(tmp_path):
    csv = tmp_path / "measured.csv"
    csv.write_text(",".join(ORT_COLUMNS[:-1]) + "\na,1,0.5,7,0.1,onnxruntime\n")
    with ProfileLog(csv, {("a", 1)}) as log:
        assert log.done == {("a", 1, 0)}
        log.add(("a", 1, 0.4, 7, 0.0, "onnxruntime", 1))
    assert csv.read_text() == ",".join(ORT_COLUMNS) + "\na,1,0.5,7,0.1,onnxruntime,0\na,1,0.4,7,0.0,onnxruntime,1\n"
    assert aggregate(pd.read_csv(csv), "fastest")[0]["latency_ms"].tolist() == [0.4]


def test_a_group_too_large_for_memory_is_one_note_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime", reason=NO_ORT)
    import onnx

    from autotune.cli import main
    from autotune.device.ort import memory_estimate
    from autotune.synth.measure import ROW_SHARE

    monkeypatch.setenv(MEM_ENV, str(256 << 20))  # small groups: quick to measure
    export_groups(CPU, tmp_path / "g", n_groups=8, seed=2)
    _, groups, man = read_export(tmp_path / "g")
    need = {gid: memory_estimate(onnx.load(str(tmp_path / "g" / f))) for gid, f in zip(groups["group_id"],
                                                                                     groups["onnx_file"])}
    allowed = sorted(need.values())[len(need) // 2]  # about half the groups fit
    monkeypatch.setenv(MEM_ENV, str(int(allowed / ROW_SHARE) + 1))
    capsys.readouterr()
    assert main(["measure", str(tmp_path / "g"), "--backend", "onnxruntime", "--repeats", "1", "--timeout", "1"]) == 0
    out = capsys.readouterr().out
    big = sorted(g for g, b in need.items() if b > allowed)
    notes = [ln for ln in out.splitlines() if "too large to run here" in ln]
    assert big and len(notes) == 1 and notes[0].startswith(f"note: skipped {2 * len(big)} row(s) of {len(big)} group")
    frame = pd.read_csv(tmp_path / "g" / "measured.csv", dtype={"group_id": str})
    fits = man[~man["group_id"].isin(big)]
    assert set(zip(frame["group_id"], frame["cores"])) == set(zip(fits["group_id"], fits["cores"]))


def _rows(path: Path) -> int:
    """Finished rows in a profile CSV (whole lines after the header)."""
    return max(0, path.read_bytes().count(b"\n") - 1) if path.is_file() else 0


def _stop_after(cmd: list[str], env: dict, csv: Path, rows: int, sig: int) -> bytes:
    """Run `cmd`, send it `sig` once `csv` holds `rows` finished rows, and return the finished lines."""
    # Ctrl-C reaches the child even when this runs in a background job, which starts with SIGINT
    # ignored (the child would inherit that, and Python installs no KeyboardInterrupt handler then)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t_end = time.monotonic() + 60
        while _rows(csv) < rows and proc.poll() is None and time.monotonic() < t_end:
            time.sleep(0.02)
        assert proc.poll() is None, "finished before it could be stopped"
        proc.send_signal(sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    data = csv.read_bytes()
    return data[:data.rfind(b"\n") + 1]


@pytest.mark.slow
def test_kill_9_and_ctrl_c_while_measuring_keep_every_finished_row(tmp_path):
    """synth --backend onnxruntime killed with SIGKILL, then interrupted (Ctrl-C), then run to the
    end: each run keeps the rows before it byte for byte, and the dataset has every row."""
    pytest.importorskip("onnxruntime", reason=NO_ORT)
    env = {**os.environ, MEM_ENV: str(256 << 20)}  # small groups: quick to measure
    data = tmp_path / "data" / "cpu"
    cmd = [sys.executable, "-m", "autotune", "synth", "--hw", "cpu", "--backend", "onnxruntime", "--budget", "40",
           "--out", str(data), "--force", "--zoo-share", "0"]  # synthetic groups only: one export to resume
    csv = tmp_path / "data" / "cpu.groups" / "measured.csv"
    first = _stop_after(cmd, env, csv, 3, signal.SIGKILL)
    export = (csv.parent / "export.json").stat().st_mtime_ns
    second = _stop_after(cmd, env, csv, _rows(csv) + 3, signal.SIGINT)
    assert second.startswith(first) and second.count(b"\n") > first.count(b"\n")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = second.count(b"\n") - 1
    assert csv.read_bytes().startswith(second) and f"kept {kept} measurement(s)" in done.stdout
    assert (csv.parent / "export.json").stat().st_mtime_ns == export  # the export was reused, not remade
    _, _, man = read_export(csv.parent)
    frame = pd.read_csv(csv, dtype={"group_id": str})
    assert len(frame) == len(man) * CPU_PASSES and not frame.duplicated(["group_id", "cores", "pass"]).any()
    assert json.loads((data / "manifest.json").read_text())["labels"] == len(man)
    from autotune.data.dataset import read_dataset

    rows = read_dataset(data, CPU).rows.astype({"group_id": str}).set_index(["group_id", "cores"])
    least = frame.groupby(["group_id", "cores"])["latency_ms"].min()
    assert np.allclose(rows.loc[least.index, "latency_ms"], least)  # each label is its fastest pass
    assert json.loads((data / "manifest.json").read_text())["aggregate"] == "fastest"
    assert sorted(p.name for p in csv.parent.glob("*.csv")) == ["manifest.csv", "measured.csv"]  # no second profile


@pytest.mark.slow
def test_synth_on_the_cpu_spends_a_share_on_the_plans_kernels_and_a_rerun_keeps_it(tmp_path):
    """`synth --backend onnxruntime --plans NET`: synthetic rows and random candidate kernels of the
    network first, then rounds on the kernels its plans use; the finished dataset records its
    settings, so the same command keeps it."""
    pytest.importorskip("onnxruntime", reason=NO_ORT)
    from autotune.data.dataset import read_dataset
    from autotune.synth.cpu_labels import CPU_PLAN_SHARE, synth_by_measuring
    from autotune.synth.plan_labels import NETWORK_SHARE
    from autotune.synth.profiles import read_export

    out = tmp_path / "data"
    m = synth_by_measuring(CPU, out, 40, seed=0, timeout_s=0.5, repeats=2, plans=["squeezenet1_1"])
    rows = read_dataset(out, CPU).rows
    net = rows["group_id"].astype(str).str.startswith("squeezenet1_1:")
    assert net.any() and (~net).any() and len(rows) <= 40
    _, _, drawn = read_export(tmp_path / "data.networks")  # the first share's random network kernels
    mine = drawn["group_id"].astype(str).str.startswith("squeezenet1_1:")
    assert mine.sum() == round((40 - round(40 * CPU_PLAN_SHARE)) * NETWORK_SHARE)
    assert (~mine).sum() >= 1  # and other networks' kernels
    assert m["settings"]["plans"] == ["squeezenet1_1"] and "complete" not in m["settings"]
    assert synth_by_measuring(CPU, out, 40, seed=0, timeout_s=0.5, repeats=2, plans=["squeezenet1_1"])["kept"]


@pytest.mark.slow
def test_a_budget_short_of_one_group_at_every_core_count_still_measures(tmp_path):
    """With no network kernels to draw (`zoo_share` 0, no plans), a one-label budget measures one
    pair of one synthetic group rather than failing on a dataset it never made."""
    pytest.importorskip("onnxruntime", reason=NO_ORT)
    from autotune.synth.cpu_labels import synth_by_measuring

    m = synth_by_measuring(CPU, tmp_path / "d", 1, timeout_s=0.5, repeats=2, zoo_share=0.0)
    assert m["labels"] == 1


def test_zoo_share_is_refused_where_nothing_is_measured_on_this_cpu(tmp_path, capsys):
    from autotune.cli import main

    assert main(["synth", "--hw", "mlu100", "--zoo-share", "0.5", "--budget", "12", "--out", str(tmp_path / "d")]) == 2
    assert "--zoo-share measures this CPU" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cpu_is_a_device_that_times_groups_through_onnx_runtime():
    """OrtDevice measures (group, cores) pairs as ONNX sessions; a feature batch, which holds no ONNX,
    is refused in one line rather than timed wrongly."""
    pytest.importorskip("onnxruntime")

    from autotune.device.ort import OrtDevice
    from autotune.frontends.zoo import build
    from autotune.ir.tables import GroupBatch

    g = build("squeezenet1_1")
    groups = [g.group(0, 1), g.group(0, 3), g.group(0, 3)]
    ms = OrtDevice(CPU, repeats=3).measure(groups, [1, 1, CPU.core_counts[-1]])
    assert ms.shape == (3,) and np.all(np.isfinite(ms)) and np.all(ms > 0)
    assert ms[1] > ms[0] * 0.8  # three layers cost about as much as their first one, or more
    with pytest.raises(AutotuneError, match="OrtDevice.measure"):
        OrtDevice(CPU).measure_batch(GroupBatch.build(groups), np.arange(3), np.ones(3, dtype=np.int64))


def test_the_cpu_device_times_every_model_once_a_pass_and_keeps_the_fastest(monkeypatch):
    """OrtDevice.time goes over all the models in each pass (so one model's timings lie a pass apart)
    and answers each with its fastest pass."""

    from autotune.device import ort

    calls: list[bytes] = []
    times = {b"a": iter([3.0, 1.0, 2.0]), b"b": iter([5.0, 6.0, 4.0])}

    def fake(model, threads, **kw):
        calls.append(model)
        return ort.Timing(next(times[model]), 1, 0.0)

    monkeypatch.setattr(ort, "time_model", fake)
    ms = ort.OrtDevice(CPU, passes=3).time([b"a", b"b"], [1, 1])
    assert calls == [b"a", b"b"] * 3 and np.array_equal(ms, [1.0, 4.0])


def test_timing_a_plan_that_would_not_fit_in_memory_is_refused_before_any_model_is_made(monkeypatch):
    """verify and OrtDevice hold every model of a plan for their passes: when their weights and the
    largest session exceed the free memory, one clear error, before a byte of weights is made."""
    from autotune.device import ort
    from autotune.frontends.loader import load_graph
    from autotune.planning.planner import plan

    g = load_graph("resnet18")
    p = plan(g, CPU, cost="analytic")
    made: list[int] = []

    class Made:
        def SerializeToString(self):
            return b"model"

    def runnable(m, seed=0):
        made.append(seed)
        return Made()

    monkeypatch.setattr(ort, "runnable", runnable)
    monkeypatch.setenv(MEM_ENV, str(40 << 20))  # ResNet-18's weights alone are 47 MB
    with pytest.raises(AutotuneError, match=r"needs about 0\.\d GiB .* more than the 0\.0 GiB free"):
        ort.plan_models(p, g, CPU)
    assert made == []
    monkeypatch.setenv(MEM_ENV, str(8 << 30))
    models, threads = ort.plan_models(p, g, CPU)
    assert len(models) == len(threads) == len(made) == len(p.groups) + 1 and threads[-1] == CPU.cores
