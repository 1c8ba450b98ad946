"""Kernels a measured part cannot run: a measuring command leaves them out of its profile (they
failed to compile or to run), `learn` counts them as spent and records them in the dataset, and a
model trained on it never plans them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from autotune.costmodel.feature_cache import compute_features
from autotune.costmodel.memory import MeasuredMemory, row_keys
from autotune.costmodel.training import train
from autotune.data.dataset import UNRUNNABLE_FILE, read_dataset
from autotune.errors import AutotuneError, DatasetError
from autotune.frontends import zoo
from autotune.hardware.config import load_hardware
from autotune.ir.graph import GraphBuilder
from autotune.planning import strategies as strat
from autotune.synth.measure import measure
from autotune.synth.plan_labels import learn_part
from autotune.synth.profiles import export_groups, import_profile, labels_spent, write_profile

HW = load_hardware("mlu100")


def _part(root: Path):
    """mlu100's datasheet without device: (a part measured for real)."""
    d = json.loads(json.dumps(HW.model_dump(mode="json")))
    d.pop("device")
    (root / "part.yaml").write_text(yaml.safe_dump(d))
    return load_hardware(str(root / "part.yaml"))


def _fails(group_id: str, cores: int) -> bool:
    """The part's rule for what it cannot run: a fused kernel of 4 or more layers on all its cores."""
    span = group_id.rsplit(":", 1)[-1] if ":" in group_id else ""
    if "-" not in span or cores != HW.cores:
        return False
    i, j = map(int, span.split("-"))
    return j - i >= 4


def _runner(drop=_fails):
    """A measuring command (the simulator, fresh noise each call) that leaves out the pairs `drop` names."""
    calls = iter(range(1, 10**6))

    def run(folder: Path) -> Path:
        frame, _ = measure(folder, "simulator", HW, seed=next(calls))
        keep = [not drop(str(g), int(c)) for g, c in zip(frame["group_id"], frame["cores"])]
        write_profile(folder / "measured.csv", frame[keep])
        return folder / "measured.csv"

    return run


def _export(tmp_path: Path, part, name: str = "g"):
    folder = tmp_path / name
    export_groups(part, folder, model="resnet18", force=True)
    return folder


def test_pairs_a_profile_leaves_out_are_recorded_as_unrunnable_and_counted(tmp_path):
    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    man = pd.read_csv(folder / "manifest.csv")
    run = _runner(lambda g, c: _fails(g, c) or c == 1)
    made = import_profile(run(folder), part, tmp_path / "data", folder, force=True, unrunnable=True)
    want = {(g, c) for g, c in zip(man["group_id"], man["cores"]) if _fails(g, c) or c == 1}
    ds = read_dataset(tmp_path / "data", part)
    assert ds.unrunnable is not None
    assert set(zip(ds.unrunnable["group_id"], ds.unrunnable["cores"])) == want
    assert made["new_unrunnable"] == len(want)
    assert len(ds.rows) + len(want) == len(man) == labels_spent(made)
    # the same pairs left out again are listed once; a profile that ran none adds only to the list
    write_profile(folder / "measured.csv", pd.DataFrame(columns=["group_id", "cores", "latency_ms"]))
    again = import_profile(folder / "measured.csv", part, tmp_path / "data", folder, append=True, again=True,
                           unrunnable=True)
    ds2 = read_dataset(tmp_path / "data", part)
    assert len(ds2.rows) == len(ds.rows) and len(ds2.unrunnable) == len(man)
    assert labels_spent(again) == len(ds.rows) + len(want) + len(man)  # every failed ask counts


def test_a_runner_may_write_a_failure_word_instead_of_leaving_the_row_out(tmp_path):
    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    frame = pd.read_csv(_runner(lambda g, c: False)(folder))
    words = ["nan", "Inf", "FAILED", "error", ""]
    frame["latency_ms"] = frame["latency_ms"].astype(object)
    frame.loc[: len(words) - 1, "latency_ms"] = words
    frame.to_csv(folder / "measured.csv", index=False)
    made = import_profile(folder / "measured.csv", part, tmp_path / "data", folder, force=True, unrunnable=True)
    assert made["new_unrunnable"] == len(words) and made["rows"] == len(frame) - len(words)
    # without the flag such a row is a bad row, named
    with pytest.raises(DatasetError, match="line 2: latency_ms 'nan'"):
        import_profile(folder / "measured.csv", part, tmp_path / "other", folder, force=True)


def test_without_the_flag_a_partial_profile_records_nothing(tmp_path):
    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    import_profile(_runner()(folder), part, tmp_path / "data", folder, force=True)
    assert read_dataset(tmp_path / "data", part).unrunnable is None


def test_a_first_profile_that_ran_nothing_is_one_clear_error(tmp_path):
    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    write_profile(folder / "measured.csv", pd.DataFrame(columns=["group_id", "cores", "latency_ms"]))
    with pytest.raises(DatasetError, match="ran none of the"):
        import_profile(folder / "measured.csv", part, tmp_path / "data", folder, force=True, unrunnable=True)
    assert not (tmp_path / "data").exists()


def test_a_damaged_unrunnable_list_is_refused(tmp_path):
    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    import_profile(_runner()(folder), part, tmp_path / "data", folder, force=True, unrunnable=True)
    path = tmp_path / "data" / UNRUNNABLE_FILE
    path.write_bytes(path.read_bytes()[:-9] + b"x" * 9)
    with pytest.raises(DatasetError, match="unrunnable"):
        read_dataset(tmp_path / "data", part)


def test_a_trained_model_answers_unrunnable_kernels_inf_and_keeps_them_when_saved(tmp_path):
    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    import_profile(_runner()(folder), part, tmp_path / "data", folder, force=True, unrunnable=True)
    res = train(part, tmp_path / "data", tmp_path / "model", seed=0, n_jobs=1, n_estimators=20, cv=0)
    ds = read_dataset(tmp_path / "data", part)
    Xu = compute_features(ds.unrunnable, part, featurizer=res.model.featurizer)
    X = compute_features(ds.rows, part, featurizer=res.model.featurizer)
    assert np.isinf(res.model.predict(Xu)).all()
    assert np.isfinite(res.model.predict(X)).all()
    from autotune.costmodel.model import LatencyModel

    loaded = LatencyModel.load(tmp_path / "model", part)
    assert loaded.memory_.n_unrunnable == len(np.unique(row_keys(Xu)))
    assert np.isinf(loaded.predict(Xu)).all()
    # the strategies that search fused kernels on the model plan around them
    g = zoo.build("resnet18")
    for name in ("learned", "greedy"):
        p = strat.run(name, g, part, model=loaded)
        assert all(np.isfinite(grp.predicted_ms) for grp in p.groups), name
        assert not any(_fails(f"resnet18:{grp.i}-{grp.j}", grp.cores) for grp in p.groups), name


def test_memory_blocks_only_kernels_it_holds_no_timing_of():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 5)).astype(np.float32)
    mem = MeasuredMemory.from_rows(X[:3], np.log(np.arange(1.0, 4.0)))
    blocked = mem.block(X[2:5])  # row 2 ran once: it keeps its timing
    hit, vals = blocked.lookup(X)
    assert hit.tolist() == [True] * 5 + [False]
    assert np.isfinite(vals[:3]).all() and np.isinf(vals[3:]).all()
    again = MeasuredMemory.from_json(json.loads(json.dumps(blocked.to_json())))
    assert again is not None and np.array_equal(again.keys, blocked.keys)
    assert np.array_equal(again.log_ms, blocked.log_ms)
    bad = blocked.to_json()
    bad["unrunnable"].append(bad["keys"][0])  # a kernel both timed and unrunnable
    assert MeasuredMemory.from_json(bad) is None


def test_learn_spends_the_budget_on_a_part_that_cannot_run_some_kernels(tmp_path):
    """The loop counts each pair it asked for, never asks for an unrunnable one twice, and its final
    plans hold none of them."""
    b = GraphBuilder("tiny")
    x = b.input("x", (1, 16, 28, 28))
    for k in range(6):
        x = b.conv(x, 16 + 8 * k, 3, name=f"c{k}")
    b.fc(b.gpool(x, name="gap"), 10, name="fc")
    g = b.build()
    part = _part(tmp_path)

    def drop(gid: str, cores: int) -> bool:  # group ids of a network's kernels are "tiny:i-j", j exclusive
        if not gid.startswith("tiny:") or cores != HW.cores:
            return _fails(gid, cores)
        i, j = map(int, gid.rsplit(":", 1)[-1].split("-"))
        return j - i >= 2  # no fused kernel of tiny runs on all cores

    res = learn_part(part, _runner(drop), tmp_path / "work", 120, [g], seed=0, rounds=2, threads=1,
                     params={"n_estimators": 20}, zoo_share=0.0)
    ds = read_dataset(res.data, part)
    assert ds.unrunnable is not None and len(ds.unrunnable)
    asked = [pd.read_csv(m) for m in sorted((tmp_path / "work").glob("*/manifest.csv")) if m.parent.name != "data"]
    pairs = pd.concat(asked)
    assert res.labels == len(pairs) == labels_spent(ds.manifest) <= 120  # every pair asked for counts once
    failed = pairs[[drop(str(a), int(c)) for a, c in zip(pairs["group_id"], pairs["cores"])]]
    assert not failed.duplicated(["group_id", "cores"]).any()  # asked once, never again
    p = strat.run("learned", g, part, model=res.model)
    assert np.isfinite(p.predicted_ms)
    blocked = set(zip(ds.unrunnable["group_id"], ds.unrunnable["cores"]))
    assert not any((f"tiny:{grp.i}-{grp.j}", grp.cores) in blocked for grp in p.groups)


def test_tune_refuses_a_baseline_plan_that_holds_an_unrunnable_kernel(tmp_path, capsys):
    from autotune.cli import main

    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    import_profile(_runner()(folder), part, tmp_path / "data", folder, force=True, unrunnable=True)
    train(part, tmp_path / "data", tmp_path / "model", seed=0, n_jobs=1, n_estimators=20, cv=0)
    hw = str(tmp_path / "part.yaml")
    assert main(["tune", "--hw", hw, "--model-dir", str(tmp_path / "model"), "--model", "resnet18"]) == 0
    rc = main(["tune", "--hw", hw, "--model-dir", str(tmp_path / "model"), "--model", "resnet18",
               "--strategy", "fuse-max"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "could not run when measured" in err and "use --strategy learned" in err
    assert len(err.strip().splitlines()) == 1


def test_a_measured_table_scores_a_failed_pair_as_infinite_and_the_oracle_avoids_it(tmp_path):
    """`eval --measured`: a pair whose row says it failed costs +inf, so the oracle plans around it;
    a pair with no row at all is still an unmeasured candidate, named."""
    from autotune.planning.evaluation import run_eval
    from autotune.synth.profiles import measured_table

    part = _part(tmp_path)
    folder = _export(tmp_path, part)
    frame = pd.read_csv(_runner(lambda g, c: False)(folder))
    failing = [_fails(str(g), int(c)) for g, c in zip(frame["group_id"], frame["cores"])]
    frame["latency_ms"] = frame["latency_ms"].astype(object)
    frame.loc[failing, "latency_ms"] = "fail"
    frame.to_csv(folder / "measured.csv", index=False)
    _, table = measured_table(folder, part)
    assert sum(int(np.isinf(r).sum()) for r in table.ms_by_span.values()) == sum(failing)
    import_profile(folder / "measured.csv", part, tmp_path / "data", folder, force=True, unrunnable=True)
    model = train(part, tmp_path / "data", tmp_path / "model", seed=0, n_jobs=1, n_estimators=20, cv=0).model
    ev = run_eval(["resnet18"], part, model, tables=[table], strategies=["learned", "oracle", "none", "fuse-max"])
    s = ev["models"][0]["strategies"]
    assert np.isfinite(s["oracle"]["ms"]) and np.isfinite(s["learned"]["ms"])
    assert s["learned"]["ms"] >= s["oracle"]["ms"] - 1e-9
    assert np.isinf(s["fuse-max"]["ms"])  # all cores, longest groups: the part cannot run them
    frame[~np.array(failing)].iloc[1:].to_csv(folder / "measured.csv", index=False)  # one pair never measured
    _, table = measured_table(folder, part)
    with pytest.raises(AutotuneError, match="no measurement of resnet18"):
        run_eval(["resnet18"], part, model, tables=[table], strategies=["learned", "oracle", "none"])


def test_eval_summaries_and_plots_bear_a_plan_scored_inf(tmp_path):
    """On a measured table a plan that holds a failed kernel scores inf: the summary's geomeans say
    so instead of failing, and the plot leaves its bar out."""
    from autotune.cli.plots import plot_eval
    from autotune.planning.evaluation import _geomean

    assert _geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert _geomean([2.0, float("inf")]) == float("inf") and _geomean([0.0, 3.0]) == 0.0
    assert np.isnan(_geomean([0.0, float("inf")])) and np.isnan(_geomean([]))
    result = {"hardware": "part", "models": [
        {"model": "a", "strategies": {"none": {"ms": 4.0}, "learned": {"ms": 1.0}, "fuse-max": {"ms": float("inf")}}},
        {"model": "b", "strategies": {"none": {"ms": float("inf")}, "learned": {"ms": 2.0}, "fuse-max": {"ms": 3.0}}}]}
    assert plot_eval(result, ["none", "learned", "fuse-max"], tmp_path / "eval.png").stat().st_size > 0


def test_tune_refuses_a_datasheet_plan_that_holds_a_kernel_known_to_fail(tmp_path, capsys):
    """`analytic` plans on the datasheet and never asks the model, so its plan is checked against
    the model's memory of what the part could not run."""
    from autotune.cli import main

    part = _part(tmp_path)
    g = zoo.build("resnet18")
    theirs = {(f"resnet18:{grp.i}-{grp.j}", grp.cores) for grp in strat.run("analytic", g, part).groups}
    folder = _export(tmp_path, part)
    import_profile(_runner(lambda gid, c: (gid, c) in theirs)(folder), part, tmp_path / "data", folder,
                   force=True, unrunnable=True)
    train(part, tmp_path / "data", tmp_path / "model", seed=0, n_jobs=1, n_estimators=20, cv=0)
    rc = main(["tune", "--hw", str(tmp_path / "part.yaml"), "--model-dir", str(tmp_path / "model"),
               "--model", "resnet18", "--strategy", "analytic"])
    err = capsys.readouterr().err
    assert rc != 0 and "analytic's plan of resnet18 holds" in err and "use --strategy learned" in err


def test_eval_json_writes_a_plan_scored_inf_as_null():
    from autotune.cli.commands import _finite_json

    doc = {"models": [{"strategies": {"fuse-max": {"ms": float("inf")}, "learned": {"ms": np.float64(1.5)}}}],
           "summary": {"geomean_speedup": float("nan"), "n": 3}}
    text = json.dumps(_finite_json(doc), allow_nan=False)  # strict JSON: no Infinity, no NaN
    back = json.loads(text)
    assert back["models"][0]["strategies"] == {"fuse-max": {"ms": None}, "learned": {"ms": 1.5}}
    assert back["summary"] == {"geomean_speedup": None, "n": 3}
