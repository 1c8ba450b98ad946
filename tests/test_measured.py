"""Plans scored on a measured part: a table of a network's measured candidates stands in for the
device (the oracle is the DP on it), and a part known only by its datasheet plans, tunes and
evaluates without ever touching the simulator or this machine's CPU."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autotune.cli import main
from autotune.costmodel.model import REPEATS
from autotune.costmodel.training import CV_FOLDS, cross_validate, group_folds
from autotune.device.simulator import simulate
from autotune.errors import AutotuneError
from autotune.frontends import zoo
from autotune.hardware.config import load_hardware
from autotune.ir.graph import graph_from_dict
from autotune.planning.costs import MeasuredTable
from autotune.planning.evaluation import evaluate
from autotune.synth.measure import measure
from autotune.synth.profiles import export_groups, import_profile, measured_table, read_export, write_profile

HW = load_hardware("mlu100")
NET = "squeezenet1_1"
SEARCHING = ["none", "cores-only", "fuse-max", "greedy", "oracle"]


def _measure_exactly(folder, hw) -> None:
    """The simulator's noise-free latency of every manifest row, written as a profile (full precision)."""
    _, groups, man = read_export(folder)
    js = dict(zip(groups["group_id"], groups["group_json"]))
    gs = [graph_from_dict(json.loads(js[g])) for g in man["group_id"]]
    ms = simulate([g.group(0, len(g)) for g in gs], man["cores"].to_numpy(), hw)
    pd.DataFrame({"group_id": man["group_id"], "cores": man["cores"], "latency_ms": ms}).to_csv(
        folder / "measured.csv", index=False, float_format="%.17g")


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cand") / NET
    export_groups(HW, folder, model=NET)
    _measure_exactly(folder, HW)
    return folder


@pytest.fixture(scope="module")
def datasheet_only(tmp_path_factory):
    """mlu100's datasheet as a part without device:, a model trained on simulator labels of it,
    and its network's measured candidates: what a user with a real chip has."""
    root = tmp_path_factory.mktemp("part")
    d = json.loads(json.dumps(HW.model_dump(mode="json")))
    d.pop("device")
    import yaml

    (root / "part.yaml").write_text(yaml.safe_dump(d))
    part = load_hardware(str(root / "part.yaml"))
    assert not part.has_device
    export_groups(part, root / "groups", n_groups=30, seed=3)
    frame, _ = measure(root / "groups", "simulator", HW, seed=1)
    write_profile(root / "groups" / "measured.csv", frame)
    import_profile(root / "groups" / "measured.csv", part, root / "data", root / "groups")
    assert main(["train", "--hw", str(root / "part.yaml"), "--data", str(root / "data"),
                 "--out", str(root / "models" / "part"), "--threads", "1"]) == 0
    meta = json.loads((root / "models" / "part" / "meta.json").read_text())
    # a part's own measurements: trees on the layer-sum prior blended with trees on the datasheet
    # estimate, fitted REPEATS times with other seeds on so few rows (training.MEASURED_PARAMS)
    assert meta["prior"] == "layersum" and meta["featurizer"]["name"] == "layersum" and meta["layer_sum"]
    assert [m["kind"] for m in meta["members"]] == ["blend"] + ["repeat"] * 2 * (REPEATS - 1)
    assert meta["combine"] == "mean"
    # few measurements: every row scored once by a model fitted without its group (training.CV_FOLDS)
    cv = meta["metrics"]["cross_validation"]
    assert cv["n"] == meta["dataset_rows"] and cv["folds"] == CV_FOLDS and 0 <= cv["within10"] <= 1
    export_groups(part, root / "cand", model=NET)
    _measure_exactly(root / "cand", HW)
    return root


def test_a_measured_table_scores_every_strategy_as_the_device_does(candidates):
    """With the simulator's own numbers in the table, every strategy plans and scores exactly as on
    the simulator, and the oracle counts every candidate as a measurement."""
    graph = zoo.build(NET)
    spec, table = measured_table(candidates, HW)
    assert spec == NET and table.network == NET
    on_table = evaluate(graph, HW, None, SEARCHING, table=table)
    on_sim = evaluate(graph, HW, None, SEARCHING)
    for s in SEARCHING:
        assert on_table[s]["ms"] == pytest.approx(on_sim[s]["ms"], rel=1e-9), s
        assert on_table[s]["kernels"] == on_sim[s]["kernels"], s
    assert on_table["oracle"]["device_calls"] == len(table.ms_by_span) * len(HW.core_counts)
    assert on_table["oracle"]["ms"] <= min(on_table[s]["ms"] for s in SEARCHING) + 1e-12


def test_the_oracle_on_a_table_is_the_table_optimum(candidates):
    """Make one candidate far cheaper in the table than on the simulator: the oracle must take it."""
    graph = zoo.build(NET)
    _, table = measured_table(candidates, HW)
    (i, j), row = max(table.ms_by_span.items(), key=lambda kv: kv[0][1] - kv[0][0])
    cheap = MeasuredTable(NET, {**table.ms_by_span, (i, j): row * 1e-6})
    res = evaluate(graph, HW, None, ["oracle"], table=cheap)
    from autotune.planning import strategies as strat

    p = strat.run("oracle", graph, HW, table=cheap)
    assert any(g.i == i and g.j == j for g in p.groups)
    assert res["oracle"]["ms"] < evaluate(graph, HW, None, ["oracle"], table=table)["oracle"]["ms"]


def test_a_table_missing_a_candidate_is_one_clear_error(candidates):
    _, table = measured_table(candidates, HW)
    gone = dict(table.ms_by_span)
    gone.pop(next(iter(gone)))
    with pytest.raises(AutotuneError, match="no measurement of squeezenet1_1's layers"):
        evaluate(zoo.build(NET), HW, None, ["oracle"], table=MeasuredTable(NET, gone))


def test_measured_table_refuses_synthetic_exports_and_other_parts(tmp_path, candidates):
    export_groups(HW, tmp_path / "syn", n_groups=2, seed=0)
    with pytest.raises(AutotuneError, match="synthetic groups, not a network"):
        measured_table(tmp_path / "syn", HW)
    with pytest.raises(AutotuneError, match="not 'edge4'|exported for hardware"):
        measured_table(candidates, load_hardware("edge4"))


def test_a_datasheet_only_part_tunes_and_evaluates_on_its_measurements(datasheet_only, tmp_path, capsys):
    root = datasheet_only
    hw, models = str(root / "part.yaml"), str(root / "models")
    for strategy in ("learned", "greedy", "fuse-max", "cores-only", "none", "dlfusion", "analytic"):
        out = tmp_path / f"{strategy}.json"
        assert main(["tune", "--hw", hw, "--model", NET, "--strategy", strategy, "--models-dir", models,
                     "--out", str(out)]) == 0, strategy
        assert json.loads(out.read_text())["strategy"] == strategy
    out = tmp_path / "verified.json"
    assert main(["tune", "--hw", hw, "--model", NET, "--models-dir", models, "--verify", "--measured",
                 str(root / "cand"), "--out", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert plan["device_ms"] == pytest.approx(sum(g["device_ms"] for g in plan["groups"]))
    assert "measured table" in plan["measured_on"]
    assert plan["kernels_outside_training"] >= 0 and plan["novelty"] > 0
    ev = tmp_path / "eval.json"
    assert main(["eval", "--hw", hw, "--models-dir", models, "--measured", str(root / "cand"), "--json", str(ev),
                 "--plot", str(tmp_path / "e.png")]) == 0
    res = json.loads(ev.read_text())
    m = res["models"][0]
    assert m["model"] == NET and res["scored_on"].startswith("measured")
    assert m["regret"] >= -1e-9 and set(m["strategies"]) >= {"learned", "greedy", "analytic", "oracle"}
    assert all(s["ms"] >= m["strategies"]["oracle"]["ms"] - 1e-12 for s in m["strategies"].values())
    assert np.isfinite(res["summary"]["geomean_regret"])
    assert m["strategies"]["learned"]["novelty"] > 0 and m["strategies"]["learned"]["kernels_outside_training"] >= 0


def test_a_datasheet_only_part_refuses_what_needs_a_device(datasheet_only, tmp_path, capsys):
    root = datasheet_only
    hw, models = str(root / "part.yaml"), str(root / "models")
    cases = [
        (["tune", "--hw", hw, "--model", NET, "--models-dir", models, "--verify"], "add --measured DIR"),
        (["tune", "--hw", hw, "--model", NET, "--models-dir", models, "--strategy", "oracle"], "no device: section"),
        (["eval", "--hw", hw, "--models-dir", models, "--models", NET], "--measured DIR"),
        (["tune", "--hw", hw, "--model", "resnet18", "--models-dir", models, "--verify", "--measured",
          str(root / "cand")], "not of 'resnet18'"),
        (["tune", "--hw", hw, "--model", NET, "--strategy", "greedy", "--models-dir", str(tmp_path)], "train"),
    ]
    for argv, words in cases:
        out = tmp_path / "plan.json"
        assert main(argv + ["--out" if argv[0] == "tune" else "--json", str(out)]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (argv, err)
        assert not out.exists()


def test_train_threads_is_range_checked(capsys):
    assert main(["train", "--threads", "0"]) == 2
    assert "outside 1..1024" in capsys.readouterr().err


def test_train_says_when_the_groups_cannot_fill_the_folds(datasheet_only, tmp_path, capsys):
    root = datasheet_only
    assert main(["train", "--hw", str(root / "part.yaml"), "--data", str(root / "data"), "--out",
                 str(tmp_path / "m"), "--threads", "1", "--cv", "100"]) == 0
    assert "not cross-validated: 30 groups cannot fill 100 folds" in capsys.readouterr().out
    assert "cross_validation" not in json.loads((tmp_path / "m" / "meta.json").read_text())["metrics"]


def test_train_refuses_one_fold_and_folds_for_the_universal_model(capsys):
    assert main(["train", "--cv", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "1 fold holds nothing out" in err[-1]
    assert main(["train", "--universal", "--cv", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cv cross-validates a part's own model" in err[0]


def test_group_folds_keep_a_group_together_and_use_every_fold():
    groups = np.repeat([f"g{i}" for i in range(23)], 3)
    fold = group_folds(groups, 5, seed=4)
    assert set(fold) == set(range(5))
    assert all(len(set(fold[groups == g])) == 1 for g in set(groups))
    sizes = np.bincount(fold) // 3
    assert sizes.max() - sizes.min() <= 1  # the groups dealt evenly


def test_out_of_fold_predictions_never_see_their_group():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 2, (60, 3)).astype(np.float32)
    groups = np.repeat(np.arange(20), 3)
    y = np.exp(X[:, 0])
    y[groups == 7] *= 50  # a group unlike the rest: predicted from the others, it is far off
    pred = cross_validate(X, y, groups, 4, prior="none", n_estimators=30, memory=False)
    assert pred.shape == y.shape and np.all(pred > 0)
    assert np.all(pred[groups == 7] < y[groups == 7] / 5)


def test_tune_finds_a_parts_model_by_its_name_or_model_dir(datasheet_only, tmp_path, capsys):
    """models/<the part's name>/ is found as well as models/<YAML stem>/, --model-dir names the folder
    itself, and a missing model's error says how to make one for a part without device:."""
    import shutil

    root = datasheet_only
    hw = str(root / "part.yaml")
    name = load_hardware(hw).name
    shutil.copytree(root / "models" / "part", tmp_path / "by-name" / name)
    for extra in (["--models-dir", str(tmp_path / "by-name")], ["--model-dir", str(root / "models" / "part")]):
        out = tmp_path / "plan.json"
        assert main(["tune", "--hw", hw, "--model", NET, *extra, "--out", str(out)]) == 0, extra
        assert json.loads(out.read_text())["strategy"] == "learned"
    capsys.readouterr()
    assert main(["tune", "--hw", hw, "--model", NET, "--models-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model-dir" in err and "export-groups" in err and "make" not in err


def test_timing_agreement_compares_the_first_two_timings_of_each_kernel_timed_twice():
    """Kernels are feature rows: of three timed twice or more, two pairs agree within 10% (the third
    timing of one is not compared); a kernel timed once is no evidence, and none timed twice is None."""
    from autotune.costmodel.training import timing_agreement

    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [3.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    y = np.array([1.0, 1.05, 9.0, 2.0, 2.5, 3.0, 2.9, 7.0])
    assert timing_agreement(X, y) == {"within10": pytest.approx(2 / 3), "n": 3}
    assert timing_agreement(X[[0, 3, 5, 7]], y[[0, 3, 5, 7]]) is None
