"""Command-line surfaces not covered elsewhere: zoo, inspect --json, study outputs, python -m."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from autotune.cli import main
from autotune.frontends import zoo


def test_zoo_lists_every_network(tmp_path, capsys):
    assert main(["zoo", "--json", str(tmp_path / "z.json")]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in zoo.names())
    d = json.loads((tmp_path / "z.json").read_text())
    r50 = next(m for m in d["models"] if m["model"] == "resnet50")
    assert r50["macs"] == zoo.build("resnet50").total_macs


def test_inspect_json_has_the_documented_shape(tmp_path):
    out = tmp_path / "r.json"
    assert main(["inspect", "resnet18", "--batch", "2", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    g = zoo.build("resnet18", batch=2)
    assert d["model"] == "resnet18" and d["batch"] == 2
    assert d["total_macs"] == g.total_macs and d["params"] == g.params
    assert len(d["layers"]) == len(g)
    assert set(d["layers"][0]) == {"name", "op", "inputs", "outputs", "output_shape", "macs", "in_channels",
                                   "out_channels"}
    assert d["layers"][0]["output_shape"] == [2, 64, 112, 112]


def test_inspect_bad_batch_and_unknown_model(capsys):
    assert main(["inspect", "resnet18", "--batch", "0"]) == 2
    assert main(["inspect", "nosuchnet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err


def test_dim_sets_sizes_of_zoo_networks_and_onnx_files(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["inspect", "bert_base", "--dim", "seq=64", "--batch", "2", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["total_macs"] == zoo.build("bert_base", batch=2, seq=64).total_macs
    capsys.readouterr()
    for bad in (["inspect", "resnet18", "--dim", "seq=3"], ["inspect", "bert_base", "--dim", "seq"],
                ["inspect", "bert_base", "--dim", "seq=0"]):
        assert main(bad) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--dim seq" in err and "Traceback" not in err, err


@pytest.mark.slow
def test_study_writes_plots_and_the_numbers_behind_them(tmp_path):
    assert main(["study", "--hw", "mlu100", "--out", str(tmp_path)]) == 0
    for name in ("study_latency_vs_cores", "study_best_cores", "study_fusion_speedup"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert len(pd.read_csv(tmp_path / f"{name}.csv")) > 0
    best = pd.read_csv(tmp_path / "study_best_cores.csv")
    c64 = best[best["channels"] == 64].sort_values("macs")
    assert c64["best_cores"].iloc[0] <= 2 and c64["best_cores"].iloc[-1] >= 16
    fus = pd.read_csv(tmp_path / "study_fusion_speedup.csv")
    small = fus[fus["case"].str.startswith("small")]
    large = fus[fus["case"].str.startswith("large")]
    assert small["speedup"].max() > 3 and large["speedup"].max() < 1.2
    # every device effect shows: a panel each, and its effect on the oracle's zoo plans
    assert (tmp_path / "study_device_effects.png").stat().st_size > 1000
    eff = pd.read_csv(tmp_path / "study_device_effects.csv")
    panels = {p.split(":")[0] for p in eff["panel"]}
    assert panels == {"tiling", "contention", "power", "descriptors", "banks", "noise"}
    tiling = eff[eff["panel"].str.startswith("tiling")]["y"]
    assert tiling.max() > 1.05 and tiling.min() >= 1.0  # steps, never a speed-up
    plans = pd.read_csv(tmp_path / "study_effects_on_plans.csv")
    assert set(plans["effect"]) == {"tiling", "contention", "power", "descriptors", "banks"}
    assert (plans["regret_if_ignored"] >= -1e-9).all() and plans["regret_if_ignored"].max() > 0.01


def test_study_refuses_a_part_without_a_device_section(tmp_path, capsys):
    import yaml

    from autotune.hardware.config import dump_hardware, load_hardware

    d = yaml.safe_load(dump_hardware(load_hardware("mlu100")))
    d["device"] = None
    (tmp_path / "measured.yaml").write_text(yaml.safe_dump(d))
    assert main(["study", "--hw", str(tmp_path / "measured.yaml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no device: section" in err and err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "autotune", "zoo"], capture_output=True, text=True)
    assert out.returncode == 0 and "resnet50" in out.stdout


@pytest.mark.parametrize("argv, flag", [
    (["tune", "--hw", "mlu100", "--model", "resnet18", "--hw", "cluster32"], "--hw"),
    (["tune", "--model=resnet18", "--hw", "mlu100", "--model", "alexnet"], "--model"),
    (["inspect", "resnet18", "--batch", "2", "--bat", "4"], "--batch"),
])
def test_a_one_value_option_given_twice_is_refused(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{flag} is given twice" in err and err.count("\n") == 1


def test_the_writer_lock_is_exclusive_and_leaves_no_file(tmp_path):
    from autotune.errors import AutotuneError
    from autotune.fileio import FolderLock

    target = tmp_path / "m"
    with FolderLock(target):
        assert (tmp_path / ".m.lock").exists()
        with pytest.raises(AutotuneError, match="another autotune process"):
            FolderLock(target).__enter__()
    assert not (tmp_path / ".m.lock").exists()
    with FolderLock(target):  # taken again after release
        pass
    assert list(tmp_path.iterdir()) == []
