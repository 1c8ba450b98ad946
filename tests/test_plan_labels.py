"""Plan-focused labels: the measured memory, exports of chosen pairs, appended profiles, and the
loop that spends a budget on the kernels the plans use (the simulator plays a part known only by
its datasheet)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autotune.cli import main
from autotune.costmodel.memory import MeasuredMemory, row_keys
from autotune.costmodel.model import LatencyModel
from autotune.errors import AutotuneError, DatasetError
from autotune.frontends import zoo
from autotune.hardware.config import load_hardware
from autotune.planning.costs import make_cost
from autotune.planning.planner import cost_table, dp_from_table, spans
from autotune.synth.measure import measure
from autotune.synth.plan_labels import learn_part, network_picks, plan_picks, quotas
from autotune.synth.plan_tables import as_pairs
from autotune.synth.profiles import export_groups, import_profile, read_export, write_profile
from autotune.synth.settle import measured_logs

HW = load_hardware("mlu100")
NET = "squeezenet1_1"


def _part(root):
    """mlu100's datasheet without device: (a part measured for real)."""
    import yaml

    d = json.loads(json.dumps(HW.model_dump(mode="json")))
    d.pop("device")
    (root / "part.yaml").write_text(yaml.safe_dump(d))
    return load_hardware(str(root / "part.yaml"))


def _simulator_measures(folder, seed=1):
    """The device's tool: measure an export (mlu100's simulator, noise on) and write its profile."""
    frame, _ = measure(folder, "simulator", HW, seed=seed)
    write_profile(folder / "measured.csv", frame)
    return folder / "measured.csv"


def _fresh_timer():
    """A device tool whose timing noise is fresh at every call, as a real timer's is."""
    calls = iter(range(1, 10**6))
    return lambda folder: _simulator_measures(folder, seed=next(calls))


# -- the measured memory ------------------------------------------------------------------------
def test_row_keys_tell_rows_apart_and_repeat():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 12)).astype(np.float32)
    k = row_keys(X)
    assert len(np.unique(k)) == 500
    assert np.array_equal(k, row_keys(X.copy()))
    Y = X.copy()
    Y[7, 3] = np.nextafter(Y[7, 3], np.float32(np.inf))  # one bit
    assert (row_keys(Y) != k).sum() == 1


def test_memory_answers_measured_rows_with_their_median_and_nothing_else():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, size=(200, 6)).astype(np.float32)
    y = np.exp(2 * X[:, 0] + X[:, 1]) * rng.lognormal(0, 0.05, 200)
    X[1] = X[0]  # a repeated measurement of one kernel
    m = LatencyModel(prior="none", n_estimators=40, memory=True, random_state=0).fit(X, y)
    plain = LatencyModel(prior="none", n_estimators=40, random_state=0).fit(X, y)
    p = m.predict(X)
    assert np.allclose(p[2:], y[2:])
    assert np.isclose(p[0], np.exp(np.median(np.log(y[:2])))) and np.isclose(p[1], p[0])
    new = rng.uniform(0, 1, size=(50, 6)).astype(np.float32)
    assert np.allclose(m.predict(new), plain.predict(new))
    assert not np.allclose(m.predict_own(X), y)  # validation reads the trees, not the memory


def test_memory_answers_a_kernel_timed_often_with_a_huber_mean_once_the_timer_spread_is_pooled():
    from autotune.costmodel.memory import HUBER_K, MIN_POOL, huber_location

    rng = np.random.default_rng(4)
    n, times, sd = 3000, 7, 0.02
    truth = rng.normal(0.0, 1.0, n)
    logs = truth[:, None] + rng.normal(0.0, sd, (n, times))
    X = np.repeat(np.arange(n, dtype=np.float32)[:, None], times, axis=0)  # one feature row per kernel
    mem = MeasuredMemory.from_rows(X, logs.ravel())
    hit, got = mem.lookup(np.arange(n, dtype=np.float32)[:, None])
    assert hit.all()
    rms = lambda e: float(np.sqrt(np.mean(e ** 2)))  # noqa: E731
    # about as efficient as the mean on normal noise; the median is only 64% as efficient
    assert rms(got - truth) < 0.9 * rms(np.median(logs, axis=1) - truth)
    assert rms(got - truth) < 1.05 * rms(logs.mean(axis=1) - truth)
    # a slow outlier moves a kernel's value by at most HUBER_K spreads, where it would move a mean by far more
    scale = 1.4826 * np.median(np.abs(logs[:, 1] - logs[:, 0])) / np.sqrt(2)
    slow = logs[0].copy()
    slow[3] += 1.0
    assert abs(huber_location(slow, scale) - huber_location(logs[0], scale)) <= HUBER_K * scale
    assert abs(slow.mean() - logs[0].mean()) > 2 * HUBER_K * scale
    # before MIN_POOL kernels are timed twice, and for a kernel timed twice, the median answers
    few = MeasuredMemory.from_rows(X[:times * (MIN_POOL - 1)], logs[:MIN_POOL - 1].ravel())
    assert np.allclose(np.sort(few.log_ms), np.sort(np.median(logs[:MIN_POOL - 1], axis=1)))
    assert huber_location(logs[0, :2], scale) == np.median(logs[0, :2])


def test_memory_survives_save_and_load_and_a_malformed_one_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, size=(80, 5)).astype(np.float32)
    y = np.exp(X[:, 0]) + 0.1
    m = LatencyModel(prior="none", n_estimators=20, memory=True).fit(X, y)
    m.save(tmp_path / "m", {"hardware": "x", "hardware_hash": "h"})
    back = LatencyModel.load(tmp_path / "m")
    assert np.allclose(back.predict(X), y)
    assert MeasuredMemory.from_json({"keys": ["zz"], "log_ms": [1.0]}) is None
    assert MeasuredMemory.from_json({"keys": ["0000000000000002", "0000000000000001"], "log_ms": [1.0, 2.0]}) is None
    assert MeasuredMemory.from_json({"keys": ["0000000000000001"], "log_ms": [float("nan")]}) is None


def test_remember_replaces_the_memory_and_keeps_the_trees():
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, size=(120, 5)).astype(np.float32)
    y = np.exp(X[:, 0]) + 0.1
    m = LatencyModel(prior="none", n_estimators=20, memory=True, random_state=0).fit(X[:80], y[:80])
    own = m.predict_own(X)
    m.remember(X, y * 1.5)
    assert np.allclose(m.predict(X), y * 1.5) and np.array_equal(m.predict_own(X), own)
    with pytest.raises(ValueError, match="positive, finite"):
        m.remember(X, -y)
    with pytest.raises(ValueError, match="one positive"):
        m.remember(X, y[:5])


def test_the_unmeasured_margin_is_the_validation_errors_tail_and_survives_save_and_load(tmp_path):
    from autotune.planning.planner import unmeasured_doubt

    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, size=(400, 5)).astype(np.float32)
    y = np.exp(X[:, 0]) * rng.lognormal(0, 0.2, 400)
    m = LatencyModel(prior="none", n_estimators=30, memory=True, random_state=0).fit(X, y)
    _, va = m.split(len(X), None)
    err = np.abs(np.log(m.predict_own(X[va])) - np.log(y[va]))
    assert np.isclose(m.val_q90_log_, np.quantile(err, 0.9)) and m.val_q90_log_ > m.val_mae_log_
    assert np.isclose(unmeasured_doubt(m), np.expm1(m.val_q90_log_))
    m.save(tmp_path / "m", {"hardware": "x", "hardware_hash": "h"})
    assert np.isclose(LatencyModel.load(tmp_path / "m").val_q90_log_, m.val_q90_log_)
    m.val_q90_log_ = float("nan")  # a model saved before the tail was recorded: its mean error
    assert np.isclose(unmeasured_doubt(m), np.expm1(m.val_mae_log_))


# -- exports of chosen pairs and appended profiles -------------------------------------------------
def test_an_export_of_chosen_pairs_lists_only_their_core_counts(tmp_path):
    g = zoo.build(NET)
    info = export_groups(HW, tmp_path / "ex", pairs=[(g, 0, 2, [4, 1]), (g, 3, 4, [32])])
    _, groups, man = read_export(tmp_path / "ex")
    assert info["plan_pairs"] and list(groups["group_id"]) == [f"{g.name}:0-2", f"{g.name}:3-4"]
    assert list(zip(man["group_id"], man["cores"])) == [(f"{g.name}:0-2", 1), (f"{g.name}:0-2", 4),
                                                         (f"{g.name}:3-4", 32)]
    with pytest.raises(AutotuneError, match="no pairs to export"):
        export_groups(HW, tmp_path / "none", pairs=[])


def test_append_adds_a_shard_and_refuses_pairs_already_measured(tmp_path):
    export_groups(HW, tmp_path / "a", n_groups=4, seed=1)
    export_groups(HW, tmp_path / "b", n_groups=3, seed=2)
    import_profile(_simulator_measures(tmp_path / "a"), HW, tmp_path / "data", tmp_path / "a")
    before = json.loads((tmp_path / "data" / "manifest.json").read_text())
    made = import_profile(_simulator_measures(tmp_path / "b"), HW, tmp_path / "data", tmp_path / "b", append=True)
    assert made["shards"] == ["shard-00000.parquet", "shard-00001.parquet"]
    assert made["rows"] == before["rows"] + 3 * len(HW.core_counts) and len(made["exports"]) == 2
    from autotune.data.dataset import read_dataset

    assert len(read_dataset(tmp_path / "data", HW).rows) == made["rows"]
    snapshot = (tmp_path / "data" / "manifest.json").read_bytes()
    with pytest.raises(DatasetError, match="already holds .* of these pairs"):
        import_profile(tmp_path / "b" / "measured.csv", HW, tmp_path / "data", tmp_path / "b", append=True)
    with pytest.raises(DatasetError, match="no dataset to append to"):
        import_profile(tmp_path / "b" / "measured.csv", HW, tmp_path / "other", tmp_path / "b", append=True)
    with pytest.raises(AutotuneError, match="give one"):
        import_profile(tmp_path / "b" / "measured.csv", HW, tmp_path / "data", tmp_path / "b", append=True,
                       force=True)
    assert (tmp_path / "data" / "manifest.json").read_bytes() == snapshot


def test_import_profile_append_on_the_command_line(tmp_path, capsys):
    export_groups(HW, tmp_path / "a", n_groups=2, seed=1)
    export_groups(HW, tmp_path / "b", n_groups=2, seed=2)
    _simulator_measures(tmp_path / "a")
    _simulator_measures(tmp_path / "b")
    base = ["import-profile", "--hw", "mlu100", "--out", str(tmp_path / "d")]
    assert main([base[0], str(tmp_path / "a" / "measured.csv"), *base[1:]]) == 0
    assert main([base[0], str(tmp_path / "b" / "measured.csv"), *base[1:]]) == 2  # no --append: refused
    assert "--append" in capsys.readouterr().err
    assert main([base[0], str(tmp_path / "b" / "measured.csv"), *base[1:], "--append"]) == 0
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["rows"] == 4 * len(HW.core_counts)


# -- the loop ---------------------------------------------------------------------------------------
def _learn(tmp_path_factory, budget: int, rounds: int, params: dict, zoo_share: float = 0.0):
    """`learn_part` on NET with a part known by its datasheet and a timer with fresh noise (by
    default without other networks' kernels: the loop's rounds on NET's plans are what is tested)."""
    root = tmp_path_factory.mktemp("learn")
    part = _part(root)
    graphs = [zoo.build(NET)]
    res = learn_part(part, _fresh_timer(), root / "work", budget, graphs, seed=0, rounds=rounds, threads=1,
                     params=params, zoo_share=zoo_share)
    return part, graphs, res


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    return _learn(tmp_path_factory, 150, 3, {"n_estimators": 60, "bags": 2})


def test_learn_part_spends_at_most_its_budget_and_labels_plan_kernels(learned):
    part, graphs, res = learned
    assert res.labels <= 150 and [r["kind"] for r in res.rounds[:2]] == ["synthetic", "networks"]
    assert len(res.rounds) >= 3
    from autotune.data.dataset import read_dataset

    rows = read_dataset(res.data, part).rows
    assert len(rows) == res.labels  # every label counted, none twice
    net_rows = rows[rows["group_id"].str.startswith(graphs[0].name + ":")]
    assert len(net_rows) == sum(r["labels"] for r in res.rounds[1:]) > 0
    settle = sum(r["labels"] for r in res.rounds if r["kind"] == "settle")
    logs = measured_logs(part, res.data, res.model.featurizer)  # by kernel: a repeated block's spans are one
    assert sum(len(v) - 1 for v in logs.values()) <= settle  # only the settle passes re-measure
    # the rounds plan on one fit; the model they leave, which the confirm stage and tune use, is the
    # mean of REPEATS fits on so few labels (model.REPEAT_BELOW)
    from autotune.costmodel.model import REPEAT_BELOW, REPEATS, LatencyModel, fit_repeats

    assert [m.kind for m in res.model.members_].count("repeat") == 2 * (REPEATS - 1)
    assert [m.kind for m in LatencyModel.load(res.model_dir, part).members_].count("repeat") == 2 * (REPEATS - 1)
    # after rounds that stop early, the final model is fitted again only where it is more than one fit
    from autotune.costmodel.training import fit_params

    def differs(kw: dict, rows: int) -> bool:  # what plan_rounds asks of the model train_kw makes
        return fit_repeats(fit_params(True, kw).get("repeats", 1), rows) > 1

    assert differs({"seed": 0, "n_jobs": 1}, res.labels)  # learn_part's train_kw
    assert not differs({"repeats": 1}, res.labels)
    assert not differs({}, REPEAT_BELOW)
    assert LatencyModel(repeats=0).repeats_for(REPEAT_BELOW - 1) == fit_repeats(0, REPEAT_BELOW - 1) == REPEATS


def test_rounds_that_stop_early_leave_the_final_model_train_asks_for(tmp_path):
    """A network of a few kernels runs out of unmeasured plan pairs before its rounds end: the loop
    says so, stops, and still leaves the mean of REPEATS fits that few labels get."""
    from autotune.costmodel.model import REPEATS
    from autotune.ir.graph import GraphBuilder

    b = GraphBuilder("tiny")
    x = b.conv(b.input("x", (1, 8, 16, 16)), 16, 3, name="c1")
    b.fc(b.gpool(b.conv(x, 16, 1, name="c2"), name="gap"), 10, name="fc")
    said: list[str] = []
    res = learn_part(_part(tmp_path), _fresh_timer(), tmp_path / "work", 2_000, [b.build()], seed=0, rounds=4,
                     threads=1, params={"n_estimators": 20}, zoo_share=0.0, log=said.append)
    assert any("every pair the plans use is measured" in line for line in said) and res.labels < 2_000
    assert [m.kind for m in res.model.members_].count("repeat") == 2 * (REPEATS - 1)


def test_learn_part_spends_its_first_share_on_other_networks_kernels_too(tmp_path_factory):
    """With the zoo share, round 0 measures random kernels of built-in networks besides NET, keeps
    two synthetic groups, and the whole loop stays within its budget."""
    part, graphs, res = _learn(tmp_path_factory, 120, 1, {"n_estimators": 30, "bags": 0}, zoo_share=1.0)
    from autotune.data.dataset import read_dataset

    rows = read_dataset(res.data, part).rows
    ids = rows["group_id"].astype(str)
    assert len(rows) == res.labels <= 120
    nets = set(ids[ids.str.contains(":")].str.split(":").str[0])
    assert NET in nets and len(nets) >= 5
    assert res.rounds[0]["kind"] == "synthetic" and res.rounds[0]["labels"] == 2 * len(part.core_counts)


def test_after_learning_the_plan_costs_what_was_measured(learned):
    """Every kernel the final model's plan uses that was measured is predicted at its measurement,
    and what it has not measured would be the next round's picks."""
    part, graphs, res = learned
    g = graphs[0]
    si, sj = spans(g, part)
    table = cost_table(g, part, make_cost("learned", part, res.model), si, sj)
    plan = dp_from_table(g, part, si, sj, table, "learned")
    from autotune.data.dataset import read_dataset

    rows = read_dataset(res.data, part).rows
    measured: dict[tuple[str, int], list[float]] = {}
    for gid, c, ms in zip(rows["group_id"], rows["cores"], rows["latency_ms"]):
        measured.setdefault((gid, int(c)), []).append(ms)  # the again passes measure some twice
    at = {(int(a), int(b)): s for s, (a, b) in enumerate(zip(si, sj))}
    hits = 0
    for grp in plan.groups:
        ms = measured.get((f"{g.name}:{grp.i}-{grp.j}", grp.cores))
        if ms is not None:
            hits += 1
            # the memory answers a kernel measured more than once with its median (in log ms)
            assert np.isclose(table[at[(grp.i, grp.j)], list(part.core_counts).index(grp.cores)],
                              np.exp(np.median(np.log(ms))))
    picks = plan_picks(part, res.model, graphs, 10_000)
    assert hits + len(picks) >= len({(grp.i, grp.j, grp.cores) for grp in plan.groups}) - hits or hits > 0
    assert all(p.predicted_ms > 0 for p in picks) and len({p.key for p in picks}) == len(picks)
    few = plan_picks(part, res.model, graphs, 3)
    assert [p.key for p in few] == [p.key for p in picks[:3]]
    mine = plan_picks(part, res.model, graphs, 10_000, rivals=())
    assert {p.key for p in mine} <= {p.key for p in picks}  # the learned plan's own come first
    assert [p.key for p in picks[:len(mine)]] == [p.key for p in mine]


def test_thompson_draws_pick_unmeasured_kernels_the_mean_plan_does_not(learned):
    """A draw plans on the model's predictions times its error, drawn per kernel: the same draw picks
    the same kernels, every pick is unmeasured, and draws reach kernels the plan on the mean never
    uses (those the model overrates)."""
    part, graphs, res = learned
    mean = {p.key for p in plan_picks(part, res.model, graphs, 10_000, rivals=())}
    drawn = [plan_picks(part, res.model, graphs, 10_000, rivals=(), draw=d) for d in range(4)]
    assert [p.key for p in drawn[0]] == [p.key for p in plan_picks(part, res.model, graphs, 10_000, rivals=(),
                                                                    draw=0)]
    keys = set().union(*({p.key for p in d} for d in drawn))
    assert keys - mean, "no draw left the plan on the mean"
    assert not keys & {int(k) for k in res.model.memory_.keys}, "a draw picked a measured kernel"


def test_label_choices_do_not_depend_on_the_order_the_networks_are_listed(learned):
    """`--plans a,b` and `--plans b,a` spend labels alike: the random first draw, the rounds' picks,
    the Thompson draws and the settle passes pick the same pairs, from the same network, in the same
    order; and a network's draw is its own: listed beside another, it still picks what it picks alone."""
    from autotune.synth.settle import settle_picks

    part, graphs, res = learned
    nets = [zoo.build("resnet18"), graphs[0], zoo.build("resnet34")]
    turned = [nets[2], nets[0], nets[1]]

    def seen(picks):
        return [(p.graph.name, p.i, p.j, p.cores, p.tier, p.share) for p in picks]

    assert seen(network_picks(part, nets, 90, seed=3)) == seen(network_picks(part, turned, 90, seed=3))
    for kw in ({}, {"explore": 0.2}, {"sure": True}, {"rivals": (), "draw": 5}):
        assert seen(plan_picks(part, res.model, nets, 10_000, **kw)) == \
            seen(plan_picks(part, res.model, turned, 10_000, **kw)), kw
    logs = measured_logs(part, res.data, res.model.featurizer)
    assert seen(settle_picks(part, res.model, nets, logs, 10_000, moves=True)) == \
        seen(settle_picks(part, res.model, turned, logs, 10_000, moves=True))
    alone = {p.key for p in plan_picks(part, res.model, nets[:1], 10_000, rivals=(), draw=5)}
    assert alone <= {p.key for p in plan_picks(part, res.model, [nets[2], nets[0]], 10_000, rivals=(), draw=5)}


def test_confirm_passes_remember_every_label_and_measure_the_final_plans(learned):
    """After the last retrain the plans `tune` makes are measured into the memory: the saved model
    answers every label with its measurement, and what is left to settle is what the budget or the
    passes could not reach."""
    from autotune.costmodel.feature_cache import dataset_features
    from autotune.data.dataset import read_dataset
    from autotune.synth.plan_labels import SETTLE_PASSES
    from autotune.synth.settle import settle_picks

    part, graphs, res = learned
    settles = [r for r in res.rounds if r["kind"] == "settle"]
    assert settles and all(r["labels"] > 0 for r in settles)
    ds = read_dataset(res.data, part)
    back = LatencyModel.load(res.model_dir, part)
    assert back.meta_["memory_rows"] == len(ds.rows) == res.labels
    X, _ = dataset_features(ds, part, back.featurizer)
    logs = pd.Series(np.log(ds.rows["latency_ms"].to_numpy()))
    median = np.exp(logs.groupby(row_keys(X)).transform("median"))
    assert np.allclose(back.predict(X), median)  # a kernel measured again: the median of its rows (log ms)
    left = settle_picks(part, back, graphs, measured_logs(part, res.data, back.featurizer), 10_000)
    assert not left or res.labels == 150 or len(settles) >= SETTLE_PASSES


WIDE = 500  # labels for `learned_wide`: the settle passes time some kernels twice on this draw


@pytest.fixture(scope="module")
def learned_wide(tmp_path_factory):
    """A budget the plans' kernels do not exhaust: labels are left for measuring again."""
    return _learn(tmp_path_factory, WIDE, 2, {"n_estimators": 40, "bags": 0})


def test_settle_passes_measure_deciding_kernels_again_and_at_most_measure_at_most_times(learned_wide):
    """With labels left after the rounds, the settle passes re-measure kernels already measured, in
    the final plan or a rival's, never one more than MEASURE_AT_MOST times; and what they leave
    is settled, or beyond the budget or the passes."""
    from autotune.data.dataset import read_dataset
    from autotune.synth.plan_labels import SETTLE_PASSES
    from autotune.synth.settle import MEASURE_AT_MOST, settle_picks

    part, graphs, res = learned_wide
    settles = [r for r in res.rounds if r["kind"] == "settle"]
    assert settles and all(r["labels"] > 0 for r in settles)
    counts = read_dataset(res.data, part).rows.groupby(["group_id", "cores"]).size()
    assert counts.max() <= MEASURE_AT_MOST and (counts >= 2).sum() > 0
    back = LatencyModel.load(res.model_dir, part)
    logs = measured_logs(part, res.data)
    assert sum(len(v) for v in logs.values()) == res.labels
    left = settle_picks(part, back, graphs, logs, 10_000)
    assert all(len(logs.get(p.key, ())) < MEASURE_AT_MOST for p in left)
    assert not left or res.labels == WIDE or len(settles) >= SETTLE_PASSES


def test_each_measured_folder_records_its_picks_errors_against_what_it_measured(learned_wide):
    """Every folder the loop measured holds its picks' predictions when picked against what it
    measured: the rounds' picks untimed, the settle passes' re-timings marked; `plan_error` is the
    root mean square log error of the untimed ones, None without any."""
    import pandas as pd

    from autotune.data.dataset import read_dataset
    from autotune.synth.plan_errors import PLAN_ERRORS, plan_error

    part, graphs, res = learned_wide
    work = res.data.parent
    rounds = sorted(work.glob("labels-[0-9][0-9]"))
    settles = sorted(work.glob("settle-*"))
    assert rounds and settles
    rows = read_dataset(res.data, part).rows
    got = {(g, int(c)) for g, c in zip(rows["group_id"], rows["cores"])}
    for f in rounds[1:] + settles:
        t = pd.read_csv(f / PLAN_ERRORS)
        assert len(t) and (t["predicted_ms"] > 0).all() and (t["measured_ms"] > 0).all()
        assert set(zip(t["group_id"], t["cores"])) <= got
        if f in rounds:
            assert (t["timed"] == 0).all()
    timed = pd.concat([pd.read_csv(f / PLAN_ERRORS) for f in settles])["timed"]
    assert (timed >= 1).any()  # the settle passes time kernels again
    t = pd.concat([pd.read_csv(f / PLAN_ERRORS) for f in rounds[1:]])
    e = np.log(t["predicted_ms"] / t["measured_ms"])
    assert plan_error(rounds[1:]) == pytest.approx(float(np.sqrt(np.mean(e * e)))) and (e != 0).any()
    assert plan_error([]) is None and plan_error([work]) is None


def test_settle_times_the_plans_largest_kernels_again_when_calls_look_settled_on_no_measured_spread(
        learned, monkeypatch):
    """With no kernel timed twice the timer's spread is only assumed: when every call looks settled
    on it, the final plan's kernels timed once are picked after its unmeasured ones, largest share
    first, as many as pooling needs; not once the spread can be pooled."""
    from autotune.costmodel.memory import MIN_POOL
    from autotune.synth import settle
    from autotune.synth.settle import settle_picks

    part, graphs, res = learned
    logs = {k: v[:1] for k, v in measured_logs(part, res.data, res.model.featurizer).items()}
    back = LatencyModel.load(res.model_dir, part)
    monkeypatch.setattr(settle, "SETTLE_LOSS", np.inf)  # every call settled
    picks = settle_picks(part, back, graphs, logs, 10_000)
    assert all(p.tier == 0 for p in picks)
    cal = [p for p in picks if p.key in logs]
    assert 0 < len(cal) <= MIN_POOL and [p.share for p in cal] == sorted((p.share for p in cal), reverse=True)
    assert [p.key for p in picks[len(picks) - len(cal):]] == [p.key for p in cal]  # after the unmeasured
    pooled = {k: np.array([0.0, 0.02]) for k in range(MIN_POOL)}
    assert not [p for p in settle_picks(part, back, graphs, {**logs, **pooled}, 10_000) if p.key in logs]


def test_a_calls_expected_loss_and_what_a_timing_takes_from_it():
    """The normal loss function: a call far clear loses nothing, a tie loses sd / sqrt(2 pi), a
    rival better on the estimates loses at least the gap; a kernel's variance falls with its timings,
    is the model's error until it is timed, and a kernel whose timings disagree counts as noisier."""
    from autotune.costmodel.memory import MIN_POOL
    from autotune.synth.settle import expected_loss, kernel_variance, timer_spread

    rng = np.random.default_rng(3)
    logs = {k: rng.normal(0, 0.02, size=2) for k in range(60)}
    spread = timer_spread(logs)
    assert 0.01 < spread < 0.04  # the pooled spread of one measurement, 0.02
    assert timer_spread({k: logs[k] for k in range(MIN_POOL - 1)}) is None
    assert expected_loss(0.0, 1.0) == pytest.approx(1 / np.sqrt(2 * np.pi))
    assert expected_loss(10.0, 1.0) < 1e-20 and expected_loss(1.0, 0.0) == 0.0
    assert expected_loss(-1.0, 0.5) > 1.0 and expected_loss(-1.0, 0.0) == 1.0
    assert expected_loss(0.5, 1.0) > expected_loss(0.5, 0.5) > expected_loss(1.0, 0.5)
    assert kernel_variance(None, 0.02, 0.2) == pytest.approx(0.04)
    assert kernel_variance(None, 0.02, 0.2, more=1) == pytest.approx(0.02**2)
    assert kernel_variance(np.zeros(1), 0.02, 0.2) == pytest.approx(0.02**2)
    assert kernel_variance(np.zeros(3), 0.02, 0.2, more=1) == pytest.approx(0.02**2 / 4)
    assert kernel_variance(np.array([0.0, 0.3]), 0.02, 0.2) == pytest.approx(np.var([0.0, 0.3], ddof=1) / 2)


def test_the_timer_report_gives_the_spread_and_the_slow_repeats_once_enough_kernels_are_timed_twice():
    """Too few kernels timed twice: the spread is not measured and the line says what is assumed;
    enough: the pooled spread, and the repeats far slower than their kernel's fastest counted."""
    from autotune.costmodel.memory import MIN_POOL
    from autotune.synth.settle import timer_report

    rng = np.random.default_rng(7)
    few = {k: rng.normal(0, 0.02, size=2 if k < MIN_POOL - 1 else 1) for k in range(40)}
    line = timer_report(few)
    assert line.startswith(f"timer: {MIN_POOL - 1} kernel(s) timed twice") and "not measured" in line
    many = {k: rng.normal(0, 0.02, size=3) for k in range(100)}
    for k in range(4):
        many[k][1] += 0.3
    line = timer_report(many)
    assert "from 100 kernels" in line and "4 of 200 repeats" in line
    spread = float(line.split("spread ")[1].split("%")[0])
    assert 1.0 < spread < 3.5


def test_a_profile_imported_again_keeps_both_rows_and_needs_append(tmp_path, capsys):
    export_groups(HW, tmp_path / "a", n_groups=3, seed=1)
    import_profile(_simulator_measures(tmp_path / "a", seed=1), HW, tmp_path / "d", tmp_path / "a")
    first = pd.read_csv(tmp_path / "a" / "measured.csv")
    _simulator_measures(tmp_path / "a", seed=2)
    made = import_profile(tmp_path / "a" / "measured.csv", HW, tmp_path / "d", tmp_path / "a", append=True,
                          again=True)
    assert made["rows"] == 2 * len(first)
    with pytest.raises(AutotuneError, match="needs --append"):
        import_profile(tmp_path / "a" / "measured.csv", HW, tmp_path / "e", tmp_path / "a", again=True)
    base = ["import-profile", str(tmp_path / "a" / "measured.csv"), "--hw", "mlu100", "--out", str(tmp_path / "d")]
    assert main([*base, "--append"]) == 2 and "--again" in capsys.readouterr().err
    assert main([*base, "--append", "--again"]) == 0
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["rows"] == 3 * len(first)


def test_plan_picks_merge_into_one_export_row_per_group():
    g = zoo.build(NET)
    from autotune.synth.plan_tables import Pick

    picks = [Pick(g, 0, 2, 1, 3.0, 1), Pick(g, 0, 2, 4, 2.0, 2), Pick(g, 3, 5, 8, 1.0, 3)]
    assert [(i, j, ks) for _, i, j, ks in as_pairs(picks)] == [(0, 2, [1, 4]), (3, 5, [8])]


def test_learn_part_refuses_a_budget_below_two_groups_and_a_folder_of_other_files(tmp_path):
    with pytest.raises(AutotuneError, match="--budget must be at least"):
        learn_part(HW, _simulator_measures, tmp_path / "w", 5, [zoo.build(NET)])
    with pytest.raises(AutotuneError, match="the network share must be in"):
        learn_part(HW, _simulator_measures, tmp_path / "w", 60, [zoo.build(NET)], network_share=1.5)
    assert not (tmp_path / "w").exists()
    (tmp_path / "mine" / "data").mkdir(parents=True)
    (tmp_path / "mine" / "data" / "keep.txt").write_text("a user's file")
    with pytest.raises(AutotuneError, match="not a learn work folder"):
        learn_part(HW, _simulator_measures, tmp_path / "mine", 60, [zoo.build(NET)])
    assert (tmp_path / "mine" / "data" / "keep.txt").read_text() == "a user's file"


def test_profile_rows_of_a_pairs_export_import_as_measured(tmp_path):
    g = zoo.build(NET)
    export_groups(HW, tmp_path / "ex", pairs=[(g, 0, 3, [2, 8])])
    made = import_profile(_simulator_measures(tmp_path / "ex"), HW, tmp_path / "d", tmp_path / "ex")
    assert made["labels"] == 2
    frame = pd.read_csv(tmp_path / "ex" / "measured.csv")
    assert sorted(frame["cores"]) == [2, 8]


@pytest.mark.slow
def test_learn_and_export_plans_on_the_command_line(tmp_path, capsys):
    """`autotune learn` drives a measuring command (here autotune's own simulator backend, playing
    mlu100 for a datasheet-only part) and publishes a model; `export-groups --plans` then exports
    what its plans still lack."""
    import sys

    _part(tmp_path)
    cmd = (f"{sys.executable} -m autotune measure {{export}} --backend simulator --hw mlu100 --out {{profile}}")
    argv = ["learn", "--hw", str(tmp_path / "part.yaml"), "--measure-cmd", cmd, "--networks", NET, "--budget", "60",
            "--rounds", "1", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "m")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "random candidate kernels" in out and (tmp_path / "m" / "meta.json").is_file()
    assert out.strip().splitlines()[-1].startswith("timer: ")
    assert LatencyModel.load(tmp_path / "m").memory_ is not None
    assert main(["export-groups", "--hw", str(tmp_path / "part.yaml"), "--plans", NET, "--model-dir",
                 str(tmp_path / "m"), "--explore", "0.5", "--out", str(tmp_path / "next")]) == 0
    said = capsys.readouterr().out
    assert "measured already" in said or (tmp_path / "next" / "manifest.csv").is_file()
    bad = [*argv[:4], "true {export}", *argv[5:]]
    assert main(bad) == 2
    assert "{profile}" in capsys.readouterr().err
    fails = [*argv[:4], f"{sys.executable} -c raise(SystemExit(3)) {{export}} {{profile}}", *argv[5:]]
    fails[fails.index(str(tmp_path / "w"))] = str(tmp_path / "w2")
    fails[fails.index(str(tmp_path / "m"))] = str(tmp_path / "m2")
    assert main(fails) == 2
    err = capsys.readouterr().err
    assert "--measure-cmd failed" in err and err.count("\n") == 1


def test_a_measure_command_that_never_ends_gives_up_at_its_timeout(tmp_path, capsys):
    import sys

    _part(tmp_path)
    hang = f"{sys.executable} -c \"__import__('time').sleep(600)\" {{export}} {{profile}}"
    argv = ["learn", "--hw", str(tmp_path / "part.yaml"), "--measure-cmd", hang, "--networks", NET, "--budget", "60",
            "--rounds", "1", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "m"), "--measure-timeout", "1"]
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert "did not finish" in cap.err and cap.err.count("\n") == 1 and "measuring " in cap.out


def test_the_learned_plan_prefers_measured_kernels_within_the_models_error(learned):
    """planner.sure_plan: optimal on the table with unmeasured pairs counted the validation error's
    tail dearer, its predicted latency unpenalised; with no error it is the plain DP plan."""
    import copy

    from autotune.planning.planner import dp_plan, measured_mask, sure_plan, unmeasured_doubt

    part, graphs, res = learned
    g = graphs[0]
    cost = make_cost("learned", part, res.model)
    si, sj = spans(g, part)
    table = cost_table(g, part, cost, si, sj)
    sure = measured_mask(g, part, res.model, si, sj)
    assert sure is not None and sure.any() and not sure.all()
    doubt = unmeasured_doubt(res.model)
    assert np.isclose(doubt, np.expm1(res.model.val_q90_log_))
    p = sure_plan(g, part, cost, res.model, "learned")
    at = {(int(a), int(b)): s for s, (a, b) in enumerate(zip(si, sj))}
    col = {int(k): c for c, k in enumerate(part.core_counts)}
    picked = [(at[(q.i, q.j)], col[q.cores]) for q in p.groups]
    assert np.isclose(p.predicted_ms, sum(table[s, c] for s, c in picked))
    assert p.to_dict()["kernels_measured"] == sum(bool(sure[s, c]) for s, c in picked)
    penalised = np.where(sure, table, table * (1 + doubt))
    best = dp_from_table(g, part, si, sj, penalised, "x")
    assert np.isclose(sum(penalised[s, c] for s, c in picked), best.predicted_ms)
    sharp = copy.copy(res.model)
    sharp.val_mae_log_ = sharp.val_q90_log_ = 0.0
    plain = dp_plan(g, part, cost, "learned")
    assert [(q.i, q.j, q.cores) for q in sure_plan(g, part, cost, sharp, "learned").groups] == \
        [(q.i, q.j, q.cores) for q in plain.groups]


def test_network_picks_draw_distinct_kernels_of_the_networks_at_every_core_count():
    """The first round's candidate kernels: drawn from the networks' candidates, a repeated block's
    kernel (or one two networks share) at most once per core count, the same draw for a seed."""
    from autotune.costmodel.features import featurize_batch
    from autotune.ir.tables import GroupBatch

    graphs = [zoo.build("resnet18"), zoo.build("resnet34")]
    every = network_picks(HW, graphs, 10**6, seed=0)
    contents = set()
    for g in graphs:
        si, sj = spans(g, HW)
        b = GroupBatch.from_ranges(g, si, sj)
        contents |= set(row_keys(featurize_batch(b, np.arange(len(si)), np.full(len(si), HW.core_counts[0]), HW)))
    assert len(every) == len(contents) * len(HW.core_counts)  # each distinct kernel at each core count once
    assert sum(len(spans(g, HW)[0]) for g in graphs) * len(HW.core_counts) > len(every)  # repeats counted once
    assert all((p.i, p.j) in set(zip(*map(lambda a: a.tolist(), spans(p.graph, HW)))) for p in every[:50])
    some = network_picks(HW, graphs, 40, seed=0)
    assert len(some) == 40 and len({(p.key, p.cores) for p in some}) == 40
    assert [(p.graph.name, p.i, p.j, p.cores) for p in some] == \
        [(p.graph.name, p.i, p.j, p.cores) for p in network_picks(HW, graphs, 40, seed=0)]
    assert [(p.i, p.j, p.cores) for p in some] != [(p.i, p.j, p.cores) for p in network_picks(HW, graphs, 40, seed=1)]
    assert network_picks(HW, graphs, 0) == [] and network_picks(HW, [], 10) == []


def test_network_picks_give_each_network_an_even_share():
    """A network of few distinct kernels gets as many random labels as one of many (alexnet's 8
    layers against densenet121's hundreds), and a network too small for its share gives the rest
    to the others."""
    graphs = [zoo.build("alexnet"), zoo.build("densenet121")]
    per_net = Counter(p.graph.name for p in network_picks(HW, graphs, 60, seed=0))
    assert per_net == {"alexnet": 30, "densenet121": 30}
    small = len(network_picks(HW, graphs[:1], 10**6))
    per_net = Counter(p.graph.name for p in network_picks(HW, graphs, small + 500, seed=0))
    assert per_net == {"alexnet": small, "densenet121": 500}


def test_network_picks_take_a_floor_from_each_kernel_ending():
    """Within a network the draw first takes `floor` pairs from each group of kernels ending in the
    same op: BERT's attention cut after its softmax (12 of ~300 kernels) gets labels in every draw,
    where a plain draw (floor 0) of as many misses it in some; the draw stays distinct and sized."""
    g = zoo.build("bert_base")
    endings = Counter(g.order[int(j) - 1].op for j in spans(g, HW)[1])

    def ends(floor: int, seed: int, limit: int = 30) -> Counter:
        picks = network_picks(HW, [g], limit, seed, floor=floor)
        assert len(picks) == limit and len({(p.key, p.cores) for p in picks}) == limit
        return Counter(p.graph.order[p.j - 1].op for p in picks)

    for seed in range(6):
        got = ends(2, seed)
        assert all(got[op] >= 2 for op in endings), (seed, got)
    assert min(ends(0, s)["softmax"] for s in range(6)) < 2
    assert sum(ends(0, s)["softmax"] for s in range(6)) < sum(ends(2, s)["softmax"] for s in range(6))
    small = ends(2, 0, limit=4)  # fewer than a floor from every ending: still `limit` distinct pairs
    assert sum(small.values()) == 4 and max(small.values()) <= 2


def test_network_picks_past_the_even_floor_follow_the_kernels_uses():
    """Past `even_at_most` labels the draw weighs a kernel by its uses: a transformer's repeated
    layer (one kernel, used once per layer) takes more of it than an even share gives, the even part
    is the even draw itself, and no cell is drawn twice."""
    graphs = [zoo.build("alexnet"), zoo.build("bert_base")]
    even = network_picks(HW, graphs, 300, seed=0)
    assert network_picks(HW, graphs, 300, seed=0, even_at_most=300) == even
    mixed = network_picks(HW, graphs, 300, seed=0, even_at_most=60)
    assert len(mixed) == 300 and len({p.key for p in mixed}) == 300
    assert mixed[:60] == network_picks(HW, graphs, 60, seed=0)
    per_net = Counter(p.graph.name for p in mixed)
    alex = len(spans(graphs[0], HW)[0])
    bert = len(spans(graphs[1], HW)[0])
    assert per_net["alexnet"] < Counter(p.graph.name for p in even)["alexnet"]
    assert 30 < per_net["alexnet"] < 30 + 240 * alex / (alex + bert) * 3  # its even 30, little of the rest
    assert network_picks(HW, graphs[:1], 10**6, even_at_most=0) == network_picks(HW, graphs[:1], 10**6)


def test_the_first_share_draws_the_plans_kernels_then_other_networks_kernels():
    """Before any plan: `network_share` on the plans' own kernels, `zoo_share` of the rest on
    kernels of other built-in networks (spread over them, none the plans' draw holds)."""
    from autotune.frontends import zoo
    from autotune.synth.plan_labels import first_share

    plans = [zoo.build("squeezenet1_1")]
    kernels, others = first_share(HW, plans, 200, 0.5, 0.5, seed=0)
    assert len(kernels) == 100 and {p.graph.name for p in kernels} == {"squeezenet1_1"}
    names = {p.graph.name for p in others}
    assert "squeezenet1_1" not in names and len(names) >= len(zoo.names()) // 2
    assert not {p.key for p in kernels} & {p.key for p in others} and 40 <= len(others) <= 50
    assert first_share(HW, plans, 200, 0.5, 0.0, seed=0)[1] == []
    _, every = first_share(HW, [], 60, 0.5, 0.5, seed=0)  # no plans: the whole zoo is "other"
    assert len(every) == 30
    assert 95 <= len(first_share(HW, plans, 200, 0.5, 1.0, seed=0)[1]) <= 100
    mine, none = first_share(HW, plans, 200, 1.0, 1.0, seed=0)  # a network share of 1: all on the plans
    assert len(mine) == 200 and none == []


def test_synthetic_groups_past_their_cap_go_to_the_networks_kernels():
    """With nothing else to draw from, the synthetic rest of the first share is capped (the networks'
    own kernels take the excess), never below the synthetic groups `keep` asks for."""
    from autotune.frontends import zoo
    from autotune.synth.plan_labels import first_share

    plans = [zoo.build("squeezenet1_1")]
    assert len(first_share(HW, plans, 200, 0.5, 0.0, seed=0)[0]) == 100
    kernels, others = first_share(HW, plans, 200, 0.5, 0.0, seed=0, synth_at_most=20)
    assert len(kernels) == 180 and others == [] and {p.graph.name for p in kernels} == {"squeezenet1_1"}
    assert len(first_share(HW, plans, 200, 0.5, 0.0, seed=0, keep=12, synth_at_most=0)[0]) == 188
    assert len(first_share(HW, plans, 200, 0.5, 0.0, seed=0, synth_at_most=150)[0]) == 100  # under the cap


def test_quotas_split_a_budget_evenly_and_never_past_a_bin():
    assert quotas([10, 1000, 5, 0, 300], 100) == [10, 43, 5, 0, 42]
    assert quotas([3, 3], 100) == [3, 3]
    assert sum(quotas([50, 50, 50], 7)) == 7 and max(quotas([50, 50, 50], 7)) - min(quotas([50, 50, 50], 7)) <= 1
    assert quotas([], 5) == [] and quotas([4, 4], 0) == [0, 0]


def _toy_spans(n: int, longest: int, content: list[int]):
    """Every span of at most `longest` of `n` layers, as planner.spans orders them (by j, then i),
    its distinct content the tuple of the layers' `content` ids."""
    from autotune.planning.planner import span_index

    ij = [(i, j) for j in range(1, n + 1) for i in range(max(0, j - longest), j)]
    si, sj = np.array([p[0] for p in ij]), np.array([p[1] for p in ij])
    kinds = {}
    inverse = np.array([kinds.setdefault(tuple(content[i:j]), len(kinds)) for i, j in ij])
    return si, sj, inverse, span_index(si, sj), len(kinds)


def _plan_cost(cells, pred):
    return sum(float(pred[d, c]) for d, c, _, _ in cells)


def test_local_moves_are_whole_plans_one_move_away_at_every_place_the_kernel_repeats():
    """Each move covers every layer once, in order, and differs from the plan; a kernel gets a move
    to its best other core count, one per cut inside it (each side the cheapest plan of its layers,
    by brute force), and neighbours a merge where the span is legal; a move on a repeated kernel
    is made at each of its places."""
    from itertools import combinations

    from autotune.synth.settle import local_moves

    content = [0, 1, 2, 3, 0, 1, 2, 3]  # two copies of one block
    si, sj, inverse, at, kinds = _toy_spans(len(content), 4, content)
    pred = np.random.default_rng(5).uniform(0.5, 2.0, size=(kinds, 3))

    def cells(ijs, cores=None):
        out = []
        for n, (i, j) in enumerate(ijs):
            d = int(inverse[at[(i, j)]])
            out.append((d, int(pred[d].argmin()) if cores is None else cores[n], i, j))
        return out

    mine = cells([(0, 3), (3, 4), (4, 7), (7, 8)], cores=[0, 1, 0, 1])
    moves = local_moves(mine, si, sj, inverse, pred, at)
    keyed = [[(i, j, c) for _, c, i, j in m] for m in moves]
    assert all([x[3] for x in m[:-1]] == [x[2] for x in m[1:]] and m[0][2] == 0 and m[-1][3] == 8 for m in moves)
    assert all(k != [(i, j, c) for _, c, i, j in mine] for k in keyed)

    def best_plan(i, j):  # brute force over every partition of [i, j) into spans of at most 4
        plans = [[i, *cuts, j] for r in range(j - i) for cuts in combinations(range(i + 1, j), r)]
        return min(_plan_cost(cells(list(zip(p[:-1], p[1:]))), pred) for p in plans)

    for m in (1, 2):  # the block's first kernel [0, 3) cut at m, the same at both of its places
        def cut(mv, lo):
            inside = [(x[2] - lo, x[3] - lo, x[1]) for x in mv if lo <= x[2] and x[3] <= lo + 3]
            return inside if inside and inside[0][0] == 0 and inside[-1][1] == 3 else None

        hits = [mv for mv in moves if cut(mv, 0) is not None and cut(mv, 0) == cut(mv, 4)
                and any(b == m for _, b, _ in cut(mv, 0)) and [x for x in mv if x[2] == 3] == [mine[1]]]
        want = best_plan(0, m) + best_plan(m, 3)
        assert any(abs(_plan_cost([x for x in mv if x[3] <= 3], pred) - want) < 1e-9 for mv in hits), \
            f"no move cuts [0, 3) at {m} into the cheapest plans of its sides, at both places"
    d03 = int(inverse[at[(0, 3)]])
    other = min((k for k in range(3) if k != 0), key=lambda k: pred[d03, k])
    assert [(0, 3, other), (3, 4, 1), (4, 7, other), (7, 8, 1)] in keyed  # best other cores, at both places
    d04 = int(inverse[at[(0, 4)]])
    assert [(0, 4, int(pred[d04].argmin())), (4, 8, int(pred[d04].argmin()))] in keyed  # merged at both places


def test_avoiding_plans_are_the_cheapest_plans_without_each_kernel_of_the_plan():
    """For each distinct kernel of the plan, one call: the cheapest plan (brute force over every
    partition, each span at its best core count) that uses no span of that content anywhere, however
    many moves from the plan; a kernel that every cover needs raises none."""
    from itertools import combinations

    from autotune.planning.planner import span_index
    from autotune.synth.settle import avoiding

    content = [0, 1, 2, 3, 0, 1, 2, 3, 4]  # two copies of one block, then a tail layer fused with nothing
    si, sj, inverse, at, kinds = _toy_spans(len(content), 4, content)
    keep = (sj < 9) | (si == 8)
    si, sj, inverse = si[keep], sj[keep], inverse[keep]
    at = span_index(si, sj)
    pred = np.random.default_rng(7).uniform(0.5, 2.0, size=(kinds, 3))
    n = len(content)

    def cells(ijs):
        return [(int(inverse[at[(i, j)]]), int(pred[int(inverse[at[(i, j)]])].argmin()), i, j) for i, j in ijs]

    partitions = [list(zip(p[:-1], p[1:])) for r in range(n) for cuts in combinations(range(1, n), r)
                  for p in [[0, *cuts, n]] if all((a, b) in at for a, b in zip(p[:-1], p[1:]))]
    mine = cells([(0, 4), (4, 8), (8, 9)])
    calls = avoiding(mine, si, sj, inverse, pred, at)
    kernels = list(dict.fromkeys(x[0] for x in mine))
    tail = int(inverse[at[(8, 9)]])
    assert len(calls) == len(kernels) - 1  # layer 8 alone is the only cover of the tail
    for d, call in zip([k for k in kernels if k != tail], calls):
        assert all(x[0] != d for x in call)
        assert [x[3] for x in call[:-1]] == [x[2] for x in call[1:]] and call[0][2] == 0 and call[-1][3] == n
        want = min(_plan_cost(cells(p), pred) for p in partitions if all(inverse[at[s]] != d for s in p))
        assert _plan_cost(call, pred) == pytest.approx(want)


def test_a_calls_variance_adds_shared_model_error_on_one_side_and_cancels_it_across():
    """Unmeasured kernels share ERROR_CORRELATION of the model's error: n equal ones on one side err
    as g^2 t^2 ((1 - rho) n + rho n^2), one on each side cancel that share; what one more timing
    takes off the call's variance is the difference of the variance before and after it."""
    from autotune.synth.settle import ERROR_CORRELATION as rho
    from autotune.synth.settle import call_variance, variance_drops

    g, n = 0.2, 6
    t, new, var = np.full(n, 0.5), np.ones(n, bool), np.full(n, 0.04)
    assert call_variance(t, var, np.ones(n), new, g) == pytest.approx(g * g * 0.25 * ((1 - rho) * n + rho * n * n))
    both = np.array([1.0, -1.0])
    assert call_variance(t[:2], var[:2], both, new[:2], g) == pytest.approx(2 * 0.25 * g * g * (1 - rho))
    rng = np.random.default_rng(2)
    t, sign = rng.uniform(0.1, 2.0, 9), rng.choice([-1.0, 1.0], 9)
    new = rng.random(9) < 0.6
    var = np.where(new, g * g, 0.0004 / rng.integers(1, 4, 9))
    after = np.where(new, 0.0004, var / 2)
    drops = variance_drops(t, var, after, sign, new, g)
    for k in range(9):
        v2, n2 = var.copy(), new.copy()
        v2[k], n2[k] = after[k], False
        assert drops[k] == pytest.approx(call_variance(t, var, sign, new, g) - call_variance(t, v2, sign, n2, g))


def test_settle_moves_measure_kernels_no_plan_of_the_model_holds(learned_wide):
    """With the baselines left out, the settle calls still pick: the moves' kernels, none of them
    in the final plan's (they differ from it by one move), and picks the baselines alone never make."""
    from autotune.planning import strategies
    from autotune.planning.costs import make_cost
    from autotune.planning.planner import sure_plan
    from autotune.synth.plan_tables import RIVALS
    from autotune.synth.settle import settle_picks

    part, graphs, res = learned_wide
    back = LatencyModel.load(res.model_dir, part)
    logs = measured_logs(part, res.data, back.featurizer)
    moved = settle_picks(part, back, graphs, logs, 10_000, rivals=(), moves=True)
    assert moved, "no local move was worth a timing"
    g = graphs[0]
    final = {(x.i, x.j, x.cores) for x in sure_plan(g, part, make_cost("learned", part, back), back, "learned").groups}
    unmeasured_moves = [p for p in moved if p.tier == 1 and p.key not in logs]  # not the final plan's own
    assert unmeasured_moves and not {(p.i, p.j, p.cores) for p in unmeasured_moves} & final
    held = final | {(x.i, x.j, x.cores) for n in RIVALS for x in strategies.run(n, g, part, model=back).groups}
    assert {(p.i, p.j, p.cores) for p in unmeasured_moves} - held, "every move's kernel is in a baseline's plan"


def test_a_rerun_whose_measure_fails_loses_nothing_measured(tmp_path):
    """learn_part on its own work folder again: until the new run's first import, the last run's
    dataset and round-0 profile stay, so a measure command that fails loses no label."""
    from autotune.data.dataset import read_dataset
    from autotune.ir.graph import GraphBuilder

    b = GraphBuilder("tiny")
    x = b.conv(b.input("x", (1, 8, 16, 16)), 16, 3, name="c1")
    b.fc(b.gpool(b.conv(x, 16, 1, name="c2"), name="gap"), 10, name="fc")
    part, work = _part(tmp_path), tmp_path / "work"
    res = learn_part(part, _fresh_timer(), work, 60, [b.build()], seed=0, rounds=1, threads=1,
                     params={"n_estimators": 10}, zoo_share=0.0, measured_by="sim")
    rows = len(read_dataset(res.data, part).rows)
    profile = (work / "labels-00" / "measured.csv").read_bytes()

    def broken(folder: Path) -> Path:
        raise AutotuneError(f"the measure command failed on {folder}")

    with pytest.raises(AutotuneError, match="measure command failed"):
        learn_part(part, broken, work, 60, [b.build()], seed=0, rounds=1, threads=1, params={"n_estimators": 10},
                   zoo_share=0.0, measured_by="sim")
    assert len(read_dataset(res.data, part).rows) == rows
    assert (work / "labels-00" / "measured.csv").read_bytes() == profile
    # another device's command would reuse these profiles: refused before it runs
    with pytest.raises(AutotuneError, match="another measuring command made"):
        learn_part(part, broken, work, 60, [b.build()], seed=0, rounds=1, measured_by="other device")
