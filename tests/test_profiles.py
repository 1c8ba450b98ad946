"""Real measurements: export groups, measure them (simulator or ONNX Runtime), import the profile."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autotune.data.dataset import read_dataset
from autotune.device.simulator import simulate
from autotune.errors import AutotuneError, DatasetError
from autotune.frontends.onnx_export import Exporter
from autotune.frontends.onnx_import import load_onnx
from autotune.hardware.config import load_hardware
from autotune.ir.graph import graph_from_dict
from autotune.synth.measure import measure
from autotune.synth.profiles import export_groups, import_profile, read_export, write_profile

HW = load_hardware("mlu100")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "groups"
    export_groups(HW, out, n_groups=24, seed=4)
    return out


def test_export_writes_self_contained_files_and_a_manifest(exported):
    info, groups, man = read_export(exported)
    assert info["groups"] == 24 and info["hardware_hash"] == HW.hash and not info["weights"]
    assert list(man.columns) == ["group_id", "cores", "onnx_file"] and len(man) == 24 * len(HW.core_counts)
    assert (exported / "manifest.csv").read_text().splitlines()[0] == "group_id,cores,onnx_file"
    assert "latency_ms" in (exported / "README.md").read_text()
    for gid, js, f in groups[["group_id", "group_json", "onnx_file"]].itertuples(index=False):
        back, g = load_onnx(str(exported / f)), graph_from_dict(json.loads(js))
        assert back.total_macs == g.total_macs, gid
        one_node = Exporter(g)  # a layer with no one-node ONNX form is several standard nodes: more layers back
        one_node.model()
        assert len(back) == len(g) or any(n.domain for n in one_node.nodes), gid


def test_network_groups_export(tmp_path):
    from autotune.frontends import zoo
    from autotune.planning.planner import candidates

    info = export_groups(HW, tmp_path / "sq", model="squeezenet1_1")
    assert info["groups"] == len(candidates(zoo.build("squeezenet1_1"), HW))
    _, groups, _ = read_export(tmp_path / "sq")
    assert groups["group_id"].iloc[0].startswith("squeezenet1_1:")


def test_weights_flag_writes_runnable_files(tmp_path):
    import onnx

    export_groups(HW, tmp_path / "w", n_groups=3, seed=1, weights=True)
    _, groups, _ = read_export(tmp_path / "w")
    m = onnx.load(str(tmp_path / "w" / groups["onnx_file"].iloc[0]))
    assert m.graph.initializer and all(len(t.raw_data) or len(t.float_data) for t in m.graph.initializer)
    assert {i.name for i in m.graph.input} == set(graph_from_dict(json.loads(groups["group_json"].iloc[0])).inputs)


def test_round_trip_through_a_profile_is_exact(exported, tmp_path):
    """export -> measure (the simulator playing an altered device) -> import gives the labels the
    simulator gives, for that device's hash."""
    dev = HW.updated({"device.launch_us": HW.device.launch_us * 1.7, "device.layer_overhead_us": 3.0})
    frame, notes = measure(exported, "simulator", dev, seed=9)
    assert not notes and len(frame) == 24 * len(HW.core_counts)
    write_profile(tmp_path / "m.csv", frame)
    m = import_profile(tmp_path / "m.csv", dev, tmp_path / "data", groups=exported)
    assert m["rows"] == len(frame) and not m["outliers"]
    ds = read_dataset(tmp_path / "data", dev)
    assert set(ds.rows["source"]) == {"measured"}
    _, groups, man = read_export(exported)
    js = dict(zip(groups["group_id"], groups["group_json"]))
    pairs = [graph_from_dict(json.loads(js[g])) for g in man["group_id"]]
    want = simulate([g.group(0, len(g)) for g in pairs], man["cores"].to_numpy(), dev, noise=True, seed=9)
    got = ds.rows.set_index(["group_id", "cores"]).loc[list(zip(man["group_id"], man["cores"])), "latency_ms"]
    assert np.array_equal(got.to_numpy(), want)
    with pytest.raises(DatasetError, match="was labelled for hardware"):
        read_dataset(tmp_path / "data", HW)  # the profile belongs to the altered device
    with pytest.raises(AutotuneError, match="already holds a dataset"):
        import_profile(tmp_path / "m.csv", dev, tmp_path / "data", groups=exported)


def test_bad_rows_are_each_named_and_nothing_is_written(exported, tmp_path):
    _, groups, _ = read_export(exported)
    g0, g1 = groups["group_id"].iloc[:2]
    bad = tmp_path / "bad.csv"
    bad.write_text("group_id,cores,latency_ms\n"
                   f"{g0},1,1.5\nnope,1,2\n{g1},3,1\n{g1},2,nan\n{g1},4,0\n{g0},1,1.5\n{g0},,1\n{g1},8,-2\n")
    with pytest.raises(DatasetError) as err:
        import_profile(bad, HW, tmp_path / "data", groups=exported)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("6 bad row(s), nothing imported:") and len(lines) == 7
    assert "line 3: unknown group_id 'nope'" in lines[1] and "cores 3 is not one of" in lines[2]
    assert "'nan' is not a decimal number" in lines[3] and "'0' is not a decimal number" in lines[4]
    assert "cores '' is not a whole number" in lines[5] and "line 9: latency_ms '-2'" in lines[6]
    assert not (tmp_path / "data").exists()
    rep = tmp_path / "rep.csv"
    rep.write_text(f"group_id,cores,latency_ms,repeat\n{g0},1,1.5,0\n{g0},1,1.6,0\n")
    with pytest.raises(DatasetError, match="line 3: duplicate of line 2"):
        import_profile(rep, HW, tmp_path / "data", groups=exported)
    many = tmp_path / "many.csv"
    many.write_text("group_id,cores,latency_ms\n" + "".join(f"x{k},1,1\n" for k in range(30)))
    with pytest.raises(DatasetError, match=r"30 bad row\(s\)[\s\S]*\.\.\. and 10 more"):
        import_profile(many, HW, tmp_path / "data", groups=exported)
    (tmp_path / "head.csv").write_text("group,cores,latency_ms\n")
    with pytest.raises(DatasetError, match="lacks column 'group_id'"):
        import_profile(tmp_path / "head.csv", HW, tmp_path / "data", groups=exported)


def test_repeats_are_aggregated_by_median_and_outliers_reported(exported, tmp_path):
    _, groups, _ = read_export(exported)
    g0 = groups["group_id"].iloc[0]
    rows = [(g0, 1, v, k) for k, v in enumerate([1.00, 1.02, 0.98, 1.01, 9.0])] + [(g0, 2, 0.6, 0)]
    pd.DataFrame(rows, columns=["group_id", "cores", "latency_ms", "repeat"]).to_csv(tmp_path / "r.csv", index=False)
    m = import_profile(tmp_path / "r.csv", HW, tmp_path / "data", groups=exported)
    assert m["rows"] == 2 and m["measurements"] == 6 and len(m["outliers"]) == 1 and "9 ms" in m["outliers"][0]
    ds = read_dataset(tmp_path / "data", HW).rows.set_index("cores")
    assert ds.loc[1, "latency_ms"] == pytest.approx(1.01) and ds.loc[1, "repeats"] == 5

    m = import_profile(tmp_path / "r.csv", HW, tmp_path / "fast", groups=exported, how="fastest")
    ds = read_dataset(tmp_path / "fast", HW).rows.set_index("cores")
    assert m["aggregate"] == "fastest" and ds.loc[1, "latency_ms"] == pytest.approx(0.98)
    with pytest.raises(AutotuneError, match="--aggregate must be one of median, fastest, not 'mean'"):
        import_profile(tmp_path / "r.csv", HW, tmp_path / "mean", groups=exported, how="mean")


def test_measure_in_passes_writes_a_line_per_row_and_pass_and_a_rerun_adds_passes(exported, tmp_path):
    """`measure --passes N` goes over the rows N times; asked for more passes later, it keeps the
    lines it has and makes only the new passes."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.csv"
    frame, _ = measure(exported, "onnxruntime", limit=4, repeats=1, warmup=0, timeout_s=30, out=out, passes=2)
    first = out.read_bytes()
    assert sorted(frame["pass"].value_counts().to_dict().items()) == [(0, len(frame) // 2), (1, len(frame) // 2)]
    frame3, notes = measure(exported, "onnxruntime", limit=4, repeats=1, warmup=0, timeout_s=30, out=out, passes=3)
    assert out.read_bytes().startswith(first) and len(frame3) == len(frame) * 3 // 2
    assert any(f"kept {len(frame)} measurement(s)" in n for n in notes)
    with pytest.raises(AutotuneError, match="--passes must be at least 1"):
        measure(exported, "onnxruntime", limit=4, out=out, passes=0)


@pytest.mark.slow
def test_onnxruntime_measures_this_cpu(exported, tmp_path):
    pytest.importorskip("onnxruntime")
    from autotune.hardware.host import host_cores

    frame, notes = measure(exported, "onnxruntime", limit=12, repeats=2, warmup=1, timeout_s=5)
    cap = host_cores()
    _, _, man = read_export(exported)
    asked = man.iloc[:12]
    assert len(frame) + sum("not measured" in n for n in notes) >= int((asked["cores"] <= cap).sum()) - 0
    assert (frame["cores"] <= cap).all() and (frame["latency_ms"] > 0).all()
    if (asked["cores"] > cap).any():
        assert any("more than this host's" in n for n in notes)


def test_measure_refuses_what_it_cannot_do(exported, tmp_path):
    with pytest.raises(AutotuneError, match="needs --hw"):
        measure(exported, "simulator")
    with pytest.raises(AutotuneError, match="not an export folder"):
        measure(tmp_path, "simulator", HW)
    with pytest.raises(AutotuneError, match="--backend must be one of"):
        measure(exported, "tpu", HW)


def test_the_cpu_preset_is_this_host_and_has_no_simulator():
    from autotune.hardware.host import host_cores

    hw = load_hardware("cpu")
    assert hw.name == "cpu" and hw.device is None and hw.cores == host_cores()
    assert hw.core_counts[-1] == hw.cores and hw.core_counts[0] == 1 and hw.dtype_bytes == 4
    assert "measured" in hw.description and "assumed" in hw.description
    assert load_hardware("cpu").hash == hw.hash  # stable: datasets and models made for it stay valid
    from autotune.frontends.synthetic import ops_range

    assert ops_range(hw)[1] <= hw.datasheet.peak_macs_per_s * 0.1 and ops_range(HW)[1] == 1e11


def test_synth_refuses_a_part_without_a_device_unless_measured(tmp_path, capsys):
    from autotune.cli import main

    assert main(["synth", "--hw", "cpu", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend onnxruntime" in err and not (tmp_path / "d").exists()


@pytest.mark.slow
def test_cpu_pipeline_measures_trains_and_verifies(tmp_path, capsys):
    """synth --backend onnxruntime (a tiny budget) -> train -> tune --verify on this CPU, against ORT's
    whole-model session."""
    pytest.importorskip("onnxruntime")
    from autotune.cli import main

    data, models = tmp_path / "data" / "cpu", tmp_path / "models"
    assert main(["synth", "--hw", "cpu", "--backend", "onnxruntime", "--budget", "40", "--out", str(data)]) == 0
    assert read_dataset(data, load_hardware("cpu")).rows["source"].eq("measured").all()
    assert "\ntimer: " in capsys.readouterr().out  # how far a label moves from run to run, or why unknown
    assert main(["train", "--hw", "cpu", "--data", str(data), "--out", str(models / "cpu")]) == 0
    metrics = json.loads((models / "cpu" / "meta.json").read_text())["metrics"]
    by = metrics.get("validation_by_kind", {})  # synthetic groups come in kinds (layer, slice, block)
    if len(set(read_dataset(data, load_hardware("cpu")).rows["kind"])) > 1:
        assert sum(a["n"] for a in by.values()) == metrics["validation"]["n"]
        assert "by kind, within 10% [rows]: " in capsys.readouterr().out
    plan = tmp_path / "plan.json"
    assert main(["tune", "--hw", "cpu", "--model", "squeezenet1_1", "--models-dir", str(models), "--verify",
                 "--out", str(plan)]) == 0
    out = capsys.readouterr().out
    d = json.loads(plan.read_text())
    assert d["device_ms"] > 0 and d["whole_model_one_session_ms"] > 0 and "one ONNX Runtime session" in out
    assert main(["synth", "--hw", "cpu", "--backend", "onnxruntime", "--budget", "40", "--out", str(data)]) == 0
    assert "kept" in capsys.readouterr().out  # measured once, not again


def test_damaged_exports_and_missing_choices_are_one_line(exported, tmp_path, capsys):
    import shutil

    from autotune.cli import main

    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    _, groups, _ = read_export(bad)
    (bad / groups["onnx_file"].iloc[0]).write_bytes(b"garbage")
    capsys.readouterr()
    for argv in (["measure", str(bad), "--backend", "onnxruntime", "--limit", "1"],
                 ["export-groups", "--hw", "mlu100", "--out", str(tmp_path / "x")],
                 ["measure", str(exported), "--backend", "simulator", "--hw", "cpu"],
                 ["import-profile", str(exported), "--groups", str(exported), "--out", str(tmp_path / "d")]):
        if argv[1] == str(bad):
            pytest.importorskip("onnxruntime")
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if "autotune:" in ln]  # a progress bar may precede it
        assert len(lines) == 1 and lines[0].startswith("autotune: error:") and "Traceback" not in err, err
