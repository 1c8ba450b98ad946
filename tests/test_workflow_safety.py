"""The measurement workflow never loses a file and refuses nonsense: every command's output is checked
against its inputs and against the other commands' artefacts (autotune/artefacts.py), and every
numeric argument and profile field is range-checked. Each refusal is one line, exit 2, and leaves
every file that was there unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autotune.cli import main
from autotune.hardware.config import load_hardware
from autotune.synth.measure import measure
from autotune.synth.profiles import aggregate, export_groups, import_profile, write_profile

HW = load_hardware("mlu100")


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """An export with its measurements, the dataset imported from it, and a model folder and a
    universal model (only their marker files: the checks run before anything is loaded)."""
    root = tmp_path_factory.mktemp("work")
    export_groups(HW, root / "groups", n_groups=4, seed=1)
    write_profile(root / "groups" / "measured.csv", measure(root / "groups", "simulator", HW, seed=0)[0])
    import_profile(root / "groups" / "measured.csv", HW, root / "data", groups=root / "groups")
    export_groups(HW, root / "other", n_groups=2, seed=5)  # another export, its groups not in `groups`
    assert main(["export-onnx", "resnet18", str(root / "net.onnx")]) == 0
    (root / "part.yaml").write_text((Path(__file__).parents[1] / "autotune" / "hardware" / "presets"
                                     / "mlu100.yaml").read_text())
    for name, meta in [("part", {"hardware": HW.name}), ("universal", {"family": {"name": "family"}})]:
        (root / "models" / name).mkdir(parents=True)
        (root / "models" / name / "meta.json").write_text(json.dumps(meta))
        (root / "models" / name / "model.ubj").write_bytes(b"trees")
    return root


def _refused(argv: list[str], root: Path, words: str, capsys) -> None:
    before = _snapshot(root)
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, (argv, err)
    assert _snapshot(root) == before, argv


@pytest.mark.parametrize("argv, words", [
    # adapt over the universal model it adapts
    (["adapt", "--hw", "mlu100", "--budget", "100", "--models-dir", "{r}/models", "--out", "{r}/models/universal"],
     "this command's input"),
    # adapt into a dataset
    (["adapt", "--hw", "mlu100", "--budget", "100", "--models-dir", "{r}/models", "--out", "{r}/data"],
     "holds a dataset, not a model folder"),
    # export-groups --force over a dataset, a model, a universal model
    (["export-groups", "--groups", "3", "--out", "{r}/data", "--force"], "--force replaces only an export folder"),
    (["export-groups", "--groups", "3", "--out", "{r}/models/part", "--force"], "holds a model folder"),
    (["export-groups", "--groups", "3", "--out", "{r}/models/universal", "--force"], "holds a universal model"),
    # export-groups over an export that holds measurements, without --force
    (["export-groups", "--groups", "3", "--out", "{r}/groups"], "files of yours in it (measured.csv)"),
    # import-profile into the export folder it reads, or over another kind
    (["import-profile", "{r}/groups/measured.csv", "--out", "{r}/groups", "--force"], "this command's input"),
    (["import-profile", "{r}/groups/measured.csv", "--out", "{r}/models/part", "--force"], "holds a model folder"),
    (["import-profile", "{r}/groups/measured.csv", "--out", "{r}/data"], "add --force"),
    # measure over the export's own files, or into a dataset
    (["measure", "{r}/groups", "--backend", "simulator", "--hw", "mlu100", "--out", "{r}/groups/manifest.csv"],
     "its own manifest.csv"),
    (["measure", "{r}/groups", "--backend", "simulator", "--hw", "mlu100", "--out", "{r}/groups/groups.parquet"],
     "its own groups.parquet"),
    (["measure", "{r}/groups", "--backend", "simulator", "--hw", "mlu100", "--out", "{r}/data/m.csv"],
     "the dataset"),
    # train and synth onto their inputs or other kinds
    (["train", "--data", "{r}/data", "--out", "{r}/data"], "this command's input"),
    (["train", "--data", "{r}/data", "--out", "{r}/groups"], "holds an export folder"),
    (["train", "--data", "{r}/data", "--out", "{r}/models/universal"], "holds a universal model"),
    (["synth", "--budget", "60", "--out", "{r}/models/part", "--force"], "holds a model folder"),
    (["synth", "--budget", "60", "--out", "{r}/groups", "--force"], "holds an export folder"),
    (["synth", "--budget", "60", "--out", "{r}/data"], "holds measurements of a part"),
    # plain outputs into an artefact
    (["tune", "--model", "resnet18", "--strategy", "analytic", "--out", "{r}/models/part/plan.json"],
     "model folder"),
    (["study", "--out", "{r}/data"], "holds a dataset"),
    # a file output that is the command's own input file, a folder, empty, or inside a model folder
    (["tune", "--model", "{r}/net.onnx", "--strategy", "analytic", "--out", "{r}/net.onnx"], "this command's input"),
    (["tune", "--hw", "{r}/part.yaml", "--model", "resnet18", "--strategy", "analytic", "--out", "{r}/part.yaml"],
     "this command's input"),
    (["inspect", "{r}/net.onnx", "--json", "{r}/net.onnx"], "this command's input"),
    (["eval", "--models", "resnet18,{r}/net.onnx", "--json", "{r}/net.onnx"], "this command's input"),
    (["train", "--hw", "{r}/part.yaml", "--data", "{r}/data", "--json", "{r}/part.yaml"], "this command's input"),
    (["export-onnx", "{r}/net.onnx", "{r}/net.onnx"], "this command's input"),
    (["export-onnx", "resnet18", "{r}/models/part/meta.json"], "model folder"),
    (["export-onnx", "resnet18", "{r}/groups"], "is a folder"),
    (["zoo", "--json", "{r}/models/part/meta.json"], "model folder"),
    (["inspect", "resnet18", "--json", ""], "is empty"),
    (["eval", "--models", "resnet18", "--json", "{r}/same.png", "--plot", "{r}/same.png"], "name the same file"),
    # train over a model of another part, measure over another export's profile
    (["train", "--hw", "edge4", "--data", "{r}/data", "--out", "{r}/models/part"], "holds a model for 'mlu100'"),
    (["adapt", "--hw", "edge4", "--budget", "100", "--models-dir", "{r}/models", "--out", "{r}/models/part"],
     "holds a model for 'mlu100'"),
    (["learn", "--hw", "edge4", "--measure-cmd", "x {export} {profile}", "--networks", "resnet18", "--budget", "60",
      "--work", "{r}/w", "--out", "{r}/models/part"], "holds a model for 'mlu100'"),
    (["measure", "{r}/other", "--backend", "simulator", "--hw", "mlu100", "--out", "{r}/groups/measured.csv"],
     "another export's profile"),
    # an export made for one part imported or measured as another's
    (["import-profile", "{r}/groups/measured.csv", "--hw", "edge4", "--out", "{r}/d2"],
     "exported for hardware 'mlu100'"),
    (["measure", "{r}/groups", "--backend", "simulator", "--hw", "edge4", "--out", "{r}/m2.csv"],
     "exported for hardware 'mlu100'"),
    # a --model-dir that is no model folder says so, not "give --model-dir"
    (["tune", "--model", "resnet18", "--model-dir", "{r}/groups/measured.csv"], "is a file, not a model folder"),
    (["tune", "--model", "resnet18", "--model-dir", "{r}/nothing"], "does not exist"),
    (["tune", "--model", "resnet18", "--model-dir", "{r}/groups"], "holds no meta.json"),
])
def test_no_command_writes_over_its_inputs_or_another_artefact(work, argv, words, capsys):
    _refused([a.replace("{r}", str(work)) for a in argv], work, words, capsys)


def test_force_replaces_an_export_with_an_export(work, tmp_path, capsys):
    export_groups(HW, tmp_path / "g", n_groups=2, seed=0)
    (tmp_path / "g" / "measured.csv").write_text("group_id,cores,latency_ms\n")
    assert main(["export-groups", "--groups", "3", "--out", str(tmp_path / "g")]) == 2
    assert "add --force" in capsys.readouterr().err
    assert main(["export-groups", "--groups", "3", "--out", str(tmp_path / "g"), "--force"]) == 0
    assert json.loads((tmp_path / "g" / "export.json").read_text())["groups"] == 3


@pytest.mark.parametrize("argv, words", [
    (["measure", "{r}/groups", "--backend", "onnxruntime", "--timeout", t], "seconds")
    for t in ["-1", "0", "nan", "inf", "1e9"]
] + [
    (["adapt", "--hw", "mlu100", "--budget", "1"], "too few labels"),
    (["adapt", "--hw", "mlu100", "--budget", "100000000"], "outside"),
    (["export-groups", "--groups", "100000000", "--out", "{r}/x"], "outside"),
    (["export-groups", "--groups", "1e8", "--out", "{r}/x"], "not a whole number"),
    (["synth", "--budget", "1_000", "--out", "{r}/x"], "not a whole number"),
    (["export-groups", "--groups", "3", "--model", "resnet18", "--out", "{r}/x"], "give one of"),
    (["inspect", "bert_base", "--dim", "seq=128", "--dim", "seq=256"], "given twice"),
    (["inspect", "bert_base", "--dim", "seq=1_000"], "whole number"),
    (["measure", "{r}/groups", "--backend", "simulator", "--hw", "mlu100", "--repeats", "0"], "outside"),
    (["export-groups", "--model", "resnet18", "--limit", "2", "--out", "{r}/x"], "--limit works with --plans only"),
    (["train", "--universal", "--force", "--data", "{r}/data"], "train --universal writes the universal model"),
    (["export-groups", "--groups", "3", "--explore", "0.5", "--out", "{r}/x"], "--explore works with --plans only"),
    (["eval", "--models", "bert_base", "--dim", "sq=5"], "none of the networks has a dimension of that name"),
])
def test_numeric_arguments_are_range_checked(work, argv, words, capsys):
    _refused([a.replace("{r}", str(work)) for a in argv], work, words, capsys)


def test_a_repeated_dim_that_agrees_with_itself_is_fine(capsys):
    assert main(["inspect", "bert_base", "--dim", "seq=64", "--dim", "seq=64"]) == 0


def test_an_export_whose_manifest_is_only_its_header_is_an_error(work, tmp_path, capsys):
    export_groups(HW, tmp_path / "g", n_groups=2, seed=0)
    (tmp_path / "g" / "manifest.csv").write_text("group_id,cores,onnx_file\n")
    _refused(["measure", str(tmp_path / "g"), "--backend", "simulator", "--hw", "mlu100"], tmp_path,
             "lists no rows to measure", capsys)


@pytest.mark.parametrize("latency", ["1e308", "1e-300", "1_000", "inf", "nan", "0x10", "-1", "0", "5000000"])
def test_a_latency_outside_1ns_to_1h_or_not_plain_decimal_is_refused(work, tmp_path, latency, capsys):
    gid = pd.read_csv(work / "groups" / "manifest.csv")["group_id"].iloc[0]
    (tmp_path / "p.csv").write_text(f"group_id,cores,latency_ms\n{gid},1,{latency}\n{gid},2,0.5\n")
    _refused(["import-profile", str(tmp_path / "p.csv"), "--groups", str(work / "groups"),
              "--out", str(tmp_path / "d")], tmp_path, "bad row(s)", capsys)
    assert not (tmp_path / "d").exists()


def test_a_profile_field_past_the_csv_limit_is_one_line(work, tmp_path, capsys):
    gid = pd.read_csv(work / "groups" / "manifest.csv")["group_id"].iloc[0]
    (tmp_path / "p.csv").write_text(f"group_id,cores,latency_ms,note\n{gid},1,0.5,\"{'x' * 200_000}\"\n")
    _refused(["import-profile", str(tmp_path / "p.csv"), "--groups", str(work / "groups"),
              "--out", str(tmp_path / "d")], tmp_path, "not a CSV profile", capsys)


def test_a_spreadsheets_byte_order_mark_is_no_part_of_the_header(work, tmp_path):
    gid = pd.read_csv(work / "groups" / "manifest.csv")["group_id"].iloc[0]
    (tmp_path / "p.csv").write_bytes(f"\ufeffgroup_id,cores,latency_ms\n{gid},1,0.5\n".encode())
    assert main(["import-profile", str(tmp_path / "p.csv"), "--groups", str(work / "groups"),
                 "--out", str(tmp_path / "d")]) == 0


@pytest.mark.parametrize("column, value, words", [
    ("cores", "a", "not one of mlu100's core counts"),
    ("cores", 7, "not one of mlu100's core counts"),
    ("cores", 1.5, "not one of mlu100's core counts"),
    ("latency_ms", "x", "not positive numbers"),
    ("group_json", None, "no group_json text"),
])
def test_a_dataset_row_of_the_wrong_type_or_range_is_refused(work, tmp_path, column, value, words, capsys):
    """A dataset edited by hand, its digests made to match: one line naming the rows, not a crash in training."""
    import shutil

    from autotune.data.dataset import file_digest

    shutil.copytree(work / "data", tmp_path / "d")
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    shard = tmp_path / "d" / man["shards"][0]
    rows = pd.read_parquet(shard)
    rows[column] = pd.Series([value] * len(rows), dtype=object)
    rows.to_parquet(shard)
    man["shard_digests"][0] = file_digest(shard)
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(man))
    _refused(["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m")], tmp_path, words, capsys)


def test_training_on_one_group_is_refused_not_validated_on_its_own_rows(work, tmp_path, capsys):
    gid = pd.read_csv(work / "groups" / "manifest.csv")["group_id"].iloc[0]
    (tmp_path / "p.csv").write_text(f"group_id,cores,latency_ms\n{gid},1,0.5\n{gid},2,0.3\n")
    assert main(["import-profile", str(tmp_path / "p.csv"), "--groups", str(work / "groups"),
                 "--out", str(tmp_path / "d")]) == 0
    _refused(["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m")], tmp_path,
             "holds one group; training needs two or more", capsys)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_a_plot_is_written_in_the_format_its_name_asks_for(tmp_path, suffix, magic):
    out = tmp_path / f"plan{suffix}"
    assert main(["tune", "--model", "resnet18", "--strategy", "analytic", "--plot", str(out)]) == 0
    assert out.read_bytes().startswith(magic)


def test_plain_decimal_latencies_in_range_import(work, tmp_path):
    gid = pd.read_csv(work / "groups" / "manifest.csv")["group_id"].iloc[0]
    (tmp_path / "p.csv").write_text(f"group_id,cores,latency_ms\n{gid},1,1.5e-3\n{gid},2,3600000\n{gid},4,+.25\n")
    assert import_profile(tmp_path / "p.csv", HW, tmp_path / "d", groups=work / "groups")["rows"] == 3


def test_extra_profile_columns_are_ignored_and_listed(work, tmp_path, capsys):
    frame = pd.read_csv(work / "groups" / "measured.csv")
    frame.insert(0, "run", 1)
    frame["temp_c"] = 41.5
    frame["note"] = "ok, warm"
    frame.to_csv(tmp_path / "p.csv", index=False)
    assert main(["import-profile", str(tmp_path / "p.csv"), "--groups", str(work / "groups"),
                 "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert f"{len(frame)} labels" in out and "columns not used" in out and "run, backend, temp_c, note" in out


def test_outliers_are_judged_against_a_spread_pooled_over_all_pairs():
    """3 repeats of 2,004 pairs with 3% noise and 60 slow repeats injected: the 60 are reported and
    few others (a MAD of each pair's 3 values flagged 484)."""
    rng = np.random.default_rng(0)
    base = np.exp(rng.uniform(-3, 3, 2004))
    ms = np.repeat(base, 3) * np.exp(rng.normal(0, 0.03, 3 * len(base)))
    hit = rng.choice(len(ms), 60, replace=False)
    ms[hit] *= rng.uniform(1.5, 4, 60)
    frame = pd.DataFrame({"group_id": np.repeat([f"g{k}" for k in range(len(base))], 3), "cores": 1,
                          "latency_ms": ms})
    agg, report = aggregate(frame)
    assert len(agg) == 2004 and 55 <= len(report) <= 70


def test_plan_json_groups_carry_their_span_and_candidate_id(tmp_path):
    plan = tmp_path / "p.json"
    assert main(["tune", "--model", "squeezenet1_1", "--strategy", "analytic", "--out", str(plan)]) == 0
    d = json.loads(plan.read_text())
    spans = [g["span"] for g in d["groups"]]
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(j - i == len(g["layers"]) for (i, j), g in zip(spans, d["groups"]))
    export_groups(HW, tmp_path / "cand", model="squeezenet1_1")
    ids = set(pd.read_csv(tmp_path / "cand" / "manifest.csv")["group_id"])
    assert all(g["candidate_id"] == f"{d['model']}:{i}-{j}" and g["candidate_id"] in ids
               for (i, j), g in zip(spans, d["groups"]))
    assert "`NET:i-j`" in (tmp_path / "cand" / "README.md").read_text()  # the format is documented


def test_warnings_print_their_message_only(tmp_path):
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    node = helper.make_node("Det", ["x"], ["y"])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    run = subprocess.run([sys.executable, "-m", "autotune", "inspect", str(tmp_path / "m.onnx")], capture_output=True,
                         text=True, check=True)
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autotune: warning:") and ".py:" not in err[0]


def test_measure_never_replaces_a_devices_measurements(work, tmp_path, capsys):
    export_groups(HW, tmp_path / "g", n_groups=2, seed=0)
    (tmp_path / "g" / "measured.csv").write_text("group_id,cores,latency_ms\n0-0,1,2.0\n")
    _refused(["measure", str(tmp_path / "g"), "--backend", "simulator", "--hw", "mlu100"], tmp_path,
             "not made by the simulator backend", capsys)
    (tmp_path / "g" / "measured.csv").unlink()
    for _ in range(2):  # the simulator's own profile is remade freely
        assert main(["measure", str(tmp_path / "g"), "--backend", "simulator", "--hw", "mlu100"]) == 0
