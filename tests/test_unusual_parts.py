"""Unusual but valid parts (core counts that are not powers of two, one core count, 4,096 cores,
the largest and smallest arrays and memories the schema allows, a datasheet-only part): every
study, synth, train, tune and eval works on them or refuses in one line (exit 2), never exit 3.

The zoo is cut to two networks so the evaluation frames, the study's plans and training stay quick."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autotune.cli import main
from autotune.frontends import zoo
from autotune.hardware.config import dump_hardware, load_hardware

#: Datasheet changes to mlu100 that make an unusual part, by name.
PARTS: dict[str, dict[str, object]] = {
    "cores_1_64_4096": {"datasheet.cores": 4096, "datasheet.core_counts": [1, 64, 4096]},
    "cores_1_3_6_12": {"datasheet.cores": 12, "datasheet.core_counts": [1, 3, 6, 12]},
    "cores_3_5_7": {"datasheet.cores": 7, "datasheet.core_counts": [3, 5, 7]},
    "one_core": {"datasheet.cores": 1, "datasheet.core_counts": [1]},
    "huge_arrays": {"datasheet.mac_array": {"ci": 4096, "co": 4096}, "datasheet.vector_lanes": 65536,
                    "datasheet.onchip_kib": 2**22, "datasheet.dram_gbps": 1e5},
    "tiny_arrays": {"datasheet.mac_array": {"ci": 1, "co": 1}, "datasheet.vector_lanes": 1,
                    "datasheet.onchip_kib": 1, "datasheet.dram_gbps": 0.1, "datasheet.max_fusion": 1},
}
#: The parts taken through the whole pipeline (synth, train, tune, eval); every part gets a study.
PIPELINE_PARTS = ("cores_1_64_4096", "cores_3_5_7", "tiny_arrays")
NETS = "resnet18,mobilenet_v2"


@pytest.fixture(autouse=True)
def _small_zoo_and_tracebacks(monkeypatch):
    """Two zoo networks, and a bug raised with its traceback instead of exit 3."""
    monkeypatch.setattr(zoo, "names", lambda: NETS.split(","))
    monkeypatch.setenv("AUTOTUNE_DEBUG", "1")


def _part(tmp_path: Path, name: str, device: bool = True) -> str:
    """Write the named part as a YAML file (without its device: section if `device` is false)."""
    hw = load_hardware("mlu100").updated({"name": name, **PARTS[name]})
    if not device:
        hw = hw.updated({"device": None})
    path = tmp_path / f"{name}.yaml"
    path.write_text(dump_hardware(hw))
    return str(path)


def _ok(argv: list[str]) -> None:
    """The command works."""
    assert main(argv) == 0, argv


def _refused(argv: list[str], capsys, *words: str) -> None:
    """The command refuses in one line that names what is wrong."""
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("autotune: error: "), err
    assert all(w in err for w in words), err


@pytest.mark.parametrize("name", sorted(PARTS))
def test_study_works_on_unusual_parts(tmp_path, name):
    _ok(["study", "--hw", _part(tmp_path, name), "--out", str(tmp_path / "r")])
    assert (tmp_path / "r" / "study_device_effects.png").is_file()


@pytest.mark.parametrize("name", PIPELINE_PARTS)
def test_synth_train_tune_eval_work_on_unusual_parts(tmp_path, name):
    hw = _part(tmp_path, name)
    data, models = str(tmp_path / "data"), tmp_path / "models"
    _ok(["synth", "--hw", hw, "--budget", "120", "--out", data])
    _ok(["train", "--hw", hw, "--data", data, "--out", str(models / name), "--threads", "1"])
    _ok(["tune", "--hw", hw, "--model", "resnet18", "--models-dir", str(models), "--verify"])
    _ok(["eval", "--hw", hw, "--models", NETS, "--models-dir", str(models)])


def test_a_datasheet_only_part_tunes_analytically_and_refuses_the_rest_in_one_line(tmp_path, capsys):
    hw = _part(tmp_path, "cores_1_3_6_12", device=False)
    _ok(["tune", "--hw", hw, "--model", "resnet18", "--strategy", "analytic"])
    _refused(["tune", "--hw", hw, "--model", "resnet18", "--models-dir", str(tmp_path)], capsys, "no trained model")
    _refused(["synth", "--hw", hw, "--budget", "60", "--out", str(tmp_path / "d")], capsys, "no device")
    _refused(["study", "--hw", hw, "--out", str(tmp_path / "r")], capsys, "no device")
    _refused(["eval", "--hw", hw, "--models", NETS], capsys, "no device")


@pytest.mark.parametrize("key,value,words", [("mac_array", {"ci": 32000, "co": 32}, ("datasheet.mac_array.ci",)),
                                             ("core_counts", [1, 3, 64], ("core_counts", "exceeds")),
                                             ("core_counts", [4, 2, 1], ("core_counts", "increasing")),
                                             ("cores", 0, ("datasheet.cores",))])
def test_nonsense_datasheet_values_are_refused_at_load_naming_the_field(tmp_path, capsys, key, value, words):
    data = yaml.safe_load(Path(_part(tmp_path, "cores_1_3_6_12")).read_text())
    data["datasheet"][key] = value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    _refused(["study", "--hw", str(bad), "--out", str(tmp_path / "r")], capsys, "bad.yaml", *words)
