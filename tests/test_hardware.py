"""Hardware configs: presets load, strict validation names the field, stable hash."""

import subprocess
import sys
from importlib import resources

import pytest
import yaml

from autotune.cli import main
from autotune.errors import ConfigError
from autotune.hardware.config import dump_hardware, load_hardware, preset_names


def _write(tmp_path, changes: dict):
    """mlu100.yaml with values changed by dotted path (None removes the key), written to a file."""
    data = yaml.safe_load(resources.files("autotune.hardware").joinpath("presets", "mlu100.yaml").read_text())
    for path, v in changes.items():
        *parents, leaf = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        if v is None:
            node.pop(leaf)
        else:
            node[leaf] = v
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_presets_load_with_published_mlu100_figures():
    assert {"mlu100", "edge4", "npu16"} <= set(preset_names())
    hw = load_hardware("mlu100")
    assert hw.cores == 32 and hw.core_counts == [1, 2, 4, 8, 16, 32]
    assert hw.clock_ghz == 1.0 and hw.dram_gbps == 102.4
    assert hw.peak_tflops == pytest.approx(64, rel=0.05)
    assert load_hardware("edge4").cores == 4 and load_hardware("npu16").cores == 16


@pytest.mark.parametrize("changes, field", [
    ({"bogus": 1}, "'bogus'"),
    ({"datasheet.bogus": 1}, "'datasheet.bogus'"),
    ({"datasheet.cores": "many"}, "'datasheet.cores'"),
    ({"datasheet.dram_gbps": -1.0}, "'datasheet.dram_gbps'"),
    ({"datasheet.dram_gbps": float("inf")}, "'datasheet.dram_gbps'"),
    ({"datasheet.onchip_kib": 0}, "'datasheet.onchip_kib'"),
    ({"datasheet.cores": 10**23}, "'datasheet.cores'"),
    ({"datasheet.mac_array": {"ci": 32, "co": 0}}, "'datasheet.mac_array.co'"),
    ({"datasheet.mac_array": {"ci": 32, "co": 32, "extra": 1}}, "'datasheet.mac_array.extra'"),
    ({"datasheet.core_counts": [1, 2, 64]}, "core_counts"),
    ({"datasheet.core_counts": [4, 2]}, "core_counts"),
    ({"datasheet.max_fusion": None}, "'datasheet.max_fusion'"),
    ({"device.launch_us": None}, "'device.launch_us'"),
    ({"device.launch_us": float("nan")}, "'device.launch_us'"),
    ({"device.dma_exposed": 1.5}, "'device.dma_exposed'"),
    ({"device.tiling": {"buffer_fraction": 0.5, "max_tile": 64, "min_fill": 0.5}}, "'device.tiling.tile_us'"),
    ({"device.contention": {"onset_cores": 8, "loss_per_doubling": 1.0}}, "'device.contention.loss_per_doubling'"),
    ({"device.noise": {"sigma": -0.1}}, "'device.noise.sigma'"),
    ({"device.cores": 32}, "'device.cores'"),  # a datasheet value in the wrong section
    ({"datasheet.launch_us": 25.0}, "'datasheet.launch_us'"),
])
def test_bad_fields_are_named_with_their_section(tmp_path, changes, field):
    with pytest.raises(ConfigError, match=field) as e:
        load_hardware(_write(tmp_path, changes))
    assert "\n" not in str(e.value)


def test_two_sections_and_the_datasheet_read_through():
    hw = load_hardware("mlu100")
    assert set(hw.model_dump()) == {"name", "description", "datasheet", "device"}
    assert set(type(hw.datasheet).model_fields) == {"cores", "core_counts", "clock_ghz", "mac_array", "vector_lanes",
                                                    "dtype_bytes", "onchip_kib", "dram_gbps", "max_fusion"}
    for name in type(hw.datasheet).model_fields:
        assert getattr(hw, name) == getattr(hw.datasheet, name)
    assert hw.device.launch_us > 0 and hw.device.noise.sigma > 0


def test_dump_loads_back_equal(tmp_path):
    for name in preset_names():
        hw = load_hardware(name)
        p = tmp_path / f"{name}.yaml"
        p.write_text(dump_hardware(hw))
        assert load_hardware(str(p)) == hw and load_hardware(str(p)).hash == hw.hash


def test_device_section_is_optional_for_a_measured_part(tmp_path):
    hw = load_hardware(_write(tmp_path, {"device": None}))
    assert hw.device is None and hw.cores == 32
    with pytest.raises(ConfigError, match="no device: section"):
        hw.require_device()
    # the device's effects are optional each: a part without them is simpler, not invalid
    plain = load_hardware(_write(tmp_path, {"device.tiling": None, "device.banks": None}))
    assert plain.device.tiling is None and plain.device.banks is None


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_hardware(str(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("cores: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_hardware(str(bad))
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_hardware(str(bad))
    with pytest.raises(ConfigError, match="no such preset"):
        load_hardware("mlu9000")


def test_hash_is_stable_and_tracks_latency_values_only(tmp_path):
    a = load_hardware("mlu100").hash
    assert a == load_hardware("mlu100").hash
    assert load_hardware(_write(tmp_path, {"description": "renamed"})).hash == a
    assert load_hardware(_write(tmp_path, {"device.launch_us": 30.0})).hash != a  # the hash covers both parts
    assert load_hardware(_write(tmp_path, {"datasheet.dram_gbps": 51.2})).hash != a
    # the datasheet hash ignores the device
    hw = load_hardware("mlu100")
    assert load_hardware(_write(tmp_path, {"device.launch_us": 30.0})).datasheet_hash == hw.datasheet_hash
    # the same hash in a fresh interpreter: no dependence on dict or set ordering
    out = subprocess.run([sys.executable, "-c", "from autotune.hardware.config import load_hardware as l;"
                          "print(l('mlu100').hash)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == a


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    rc = main(["study", "--hw", _write(tmp_path, {"datasheet.cores": 0}), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cores" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
