"""The whole pipeline through the command line on a small dataset: synth -> train -> tune -> eval,
and the refusals a user meets on the way (no model, model for other hardware, corrupted files)."""

import json

import pytest

from autotune.cli import main
from autotune.costmodel.model import LatencyModel
from autotune.hardware.config import load_hardware


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data, models = root / "data" / "mlu100", root / "models" / "mlu100"
    assert main(["synth", "--hw", "mlu100", "--budget", "3600", "--seed", "3", "--jobs", "1", "--out", str(data)]) == 0
    assert main(["train", "--hw", "mlu100", "--data", str(data), "--out", str(models), "--json",
                 str(root / "train.json")]) == 0
    return root


def test_train_stores_metrics_in_meta(workspace):
    from autotune.costmodel.model_io import PROVENANCE

    meta = json.loads((workspace / "models" / "mlu100" / "meta.json").read_text())
    assert set(PROVENANCE) <= set(meta) and meta["dataset_rows"] == 3600 and meta["hardware"] == "mlu100"
    z = meta["metrics"]["zoo"]
    for key in ("mape", "within5", "within10", "rank_corr"):
        assert 0 <= z[key] <= 1 or key == "mape"
    assert z["within10"] > 0.8  # even a 600-group dataset generalises to real networks' groups
    assert meta["hardware_hash"] == load_hardware("mlu100").hash
    assert json.loads((workspace / "train.json").read_text())["metrics"] == meta["metrics"]


@pytest.mark.slow
def test_same_seed_same_model(workspace, tmp_path):
    out = tmp_path / "again"
    assert main(["train", "--hw", "mlu100", "--data", str(workspace / "data" / "mlu100"), "--out", str(out)]) == 0
    a = (workspace / "models" / "mlu100" / "model.ubj").read_bytes()
    assert (out / "model.ubj").read_bytes() == a


def test_tune_writes_the_design_plan(workspace, tmp_path, capsys):
    plan, png = tmp_path / "plan.json", tmp_path / "plan.png"
    rc = main(["tune", "--hw", "mlu100", "--model", "resnet18", "--models-dir", str(workspace / "models"),
               "--verify", "--out", str(plan), "--plot", str(png)])
    assert rc == 0
    d = json.loads(plan.read_text())
    assert d["model"] == "resnet18" and d["strategy"] == "learned" and d["batch"] == 1
    assert d["device_ms"] == pytest.approx(sum(g["device_ms"] for g in d["groups"]))
    assert d["predicted_ms"] == pytest.approx(sum(g["predicted_ms"] for g in d["groups"]))
    assert png.stat().st_size > 1000
    assert "total:" in capsys.readouterr().out


def test_eval_table_and_json(workspace, tmp_path):
    out = tmp_path / "eval.json"
    rc = main(["eval", "--hw", "mlu100", "--models", "resnet18,mobilenet_v1", "--models-dir",
               str(workspace / "models"), "--json", str(out), "--plot", str(tmp_path / "eval.png")])
    assert rc == 0
    d = json.loads(out.read_text())
    assert [m["model"] for m in d["models"]] == ["resnet18", "mobilenet_v1"]
    for m in d["models"]:
        s = m["strategies"]
        assert set(s) == {"none", "cores-only", "fuse-max", "dlfusion", "greedy", "analytic", "learned", "oracle"}
        assert all(s[k]["device_calls"] == 0 for k in s if k != "oracle")  # with a model, only the oracle simulates
        assert s["oracle"]["ms"] <= min(v["ms"] for v in s.values()) * (1 + 1e-9)
        assert s["learned"]["device_calls"] == 0 and s["oracle"]["device_calls"] > 0
        assert m["speedup"] == pytest.approx(s["none"]["ms"] / s["learned"]["ms"])
        assert m["regret"] >= -1e-9
    assert set(d["summary"]) >= {"geomean_speedup", "min_speedup", "max_speedup", "geomean_regret", "max_regret"}


def test_onnx_model_plans_like_its_zoo_twin(workspace, tmp_path):
    onnx_path = tmp_path / "r18.onnx"
    assert main(["export-onnx", "resnet18", str(onnx_path)]) == 0
    plans = []
    for model in ("resnet18", str(onnx_path)):
        out = tmp_path / "p.json"
        assert main(["tune", "--hw", "mlu100", "--model", model, "--models-dir", str(workspace / "models"),
                     "--out", str(out)]) == 0
        plans.append(json.loads(out.read_text()))
    assert [g["layers"] for g in plans[0]["groups"]] == [g["layers"] for g in plans[1]["groups"]]


def test_refusals_are_one_line(workspace, tmp_path, capsys):
    models = str(workspace / "models")
    # no model for this hardware
    assert main(["tune", "--hw", "edge4", "--model", "resnet18", "--models-dir", models]) == 2
    err = capsys.readouterr().err
    assert "no trained model" in err and "make synth train HW=edge4" in err and err.count("\n") == 1
    # a model folder trained for other hardware
    (tmp_path / "edge4").symlink_to(workspace / "models" / "mlu100")
    assert main(["tune", "--hw", "edge4", "--model", "resnet18", "--models-dir", str(tmp_path)]) == 2
    assert "trained for hardware 'mlu100'" in capsys.readouterr().err
    # unknown model name, bad batch
    assert main(["tune", "--hw", "mlu100", "--model", "resnet5", "--models-dir", models]) == 2
    assert "unknown model 'resnet5'" in capsys.readouterr().err
    # a dataset for other hardware
    assert main(["train", "--hw", "edge4", "--data", str(workspace / "data" / "mlu100"),
                 "--out", str(tmp_path / "m")]) == 2
    assert "labelled for hardware 'mlu100'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    # an empty dataset folder
    assert main(["train", "--hw", "mlu100", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "no dataset" in capsys.readouterr().err


def test_corrupted_model_file_is_refused(workspace, tmp_path, capsys):
    import shutil

    bad = tmp_path / "mlu100"
    shutil.copytree(workspace / "models" / "mlu100", bad)
    (bad / "model.ubj").write_bytes(b"not a model")
    assert main(["tune", "--hw", "mlu100", "--model", "resnet18", "--models-dir", str(tmp_path)]) == 2
    assert "corrupted" in capsys.readouterr().err
    with pytest.raises(Exception, match="corrupted"):
        LatencyModel.load(bad, load_hardware("mlu100"))


@pytest.mark.slow
def test_training_on_a_dask_cluster(workspace, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        rc = main(["train", "--hw", "mlu100", "--data", str(workspace / "data" / "mlu100"), "--out",
                   str(tmp_path / "m"), "--scheduler", cluster.scheduler_address])
    assert rc == 0
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    local = json.loads((workspace / "models" / "mlu100" / "meta.json").read_text())
    assert meta["metrics"]["zoo"]["within10"] == pytest.approx(local["metrics"]["zoo"]["within10"], abs=0.05)


def test_measure_budget_in_tune_and_eval(workspace, tmp_path, capsys):
    models = str(workspace / "models")
    out = tmp_path / "e.json"
    assert main(["eval", "--hw", "mlu100", "--models", "resnet18", "--models-dir", models, "--measure-budget", "12",
                 "--json", str(out), "--plot", str(tmp_path / "e.png")]) == 0
    d = json.loads(out.read_text())
    s = d["models"][0]["strategies"]
    assert "learned+measure" in s and 0 < s["learned+measure"]["device_calls"] <= 12
    assert s["learned"]["device_calls"] == 0 and d["summary"]["measure_budget"] == 12
    assert s["learned+measure"]["ms"] >= s["oracle"]["ms"] * (1 - 1e-9)
    # without the flag, no learned+measure column
    assert main(["eval", "--hw", "mlu100", "--models", "resnet18", "--models-dir", models, "--json", str(out),
                 "--plot", str(tmp_path / "e.png")]) == 0
    assert "learned+measure" not in json.loads(out.read_text())["models"][0]["strategies"]
    capsys.readouterr()
    assert main(["tune", "--hw", "mlu100", "--model", "resnet18", "--models-dir", models, "--measure-budget", "9"]) == 0
    assert "device measurements" in capsys.readouterr().out
    assert main(["tune", "--hw", "mlu100", "--model", "resnet18", "--models-dir", models, "--measure-budget", "9",
                 "--strategy", "oracle"]) == 2
    assert "--measure-budget refines the learned plan" in capsys.readouterr().err
    assert main(["eval", "--hw", "mlu100", "--models", "resnet18", "--models-dir", models,
                 "--measure-budget", "-1"]) == 2
    assert "--measure-budget: -1 is outside" in capsys.readouterr().err
