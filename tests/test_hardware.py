"""Hardware configs: presets load, strict validation names the field, stable hash."""

import subprocess
import sys
from importlib import resources

import pytest
import yaml

from autotune.cli import main
from autotune.errors import ConfigError
from autotune.hardware import load_hardware, preset_names


def _write(tmp_path, **changes):
    data = yaml.safe_load(resources.files("autotune").joinpath("presets", "mlu100.yaml").read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
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
    ({"bogus": 1}, "bogus"),
    ({"cores": "many"}, "cores"),
    ({"dram_gbps": -1.0}, "dram_gbps"),
    ({"onchip_kib": 0}, "onchip_kib"),
    ({"mac_array": {"ci": 32, "co": 0}}, "mac_array.co"),
    ({"mac_array": {"ci": 32, "co": 32, "extra": 1}}, "mac_array.extra"),
    ({"launch_us": None}, "launch_us"),
    ({"core_counts": [1, 2, 64]}, "core_counts"),
    ({"core_counts": [4, 2]}, "core_counts"),
    ({"dma_overlap": 1.5}, "dma_overlap"),
])
def test_bad_fields_are_named(tmp_path, changes, field):
    with pytest.raises(ConfigError, match=field.split(".")[0]) as e:
        load_hardware(_write(tmp_path, **changes))
    assert "\n" not in str(e.value)


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
    assert load_hardware(_write(tmp_path, description="renamed")).hash == a
    assert load_hardware(_write(tmp_path, launch_us=30.0)).hash != a
    # the same hash in a fresh interpreter: no dependence on dict or set ordering
    out = subprocess.run([sys.executable, "-c", "from autotune.hardware import load_hardware as l;"
                          "print(l('mlu100').hash)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == a


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    rc = main(["study", "--hw", _write(tmp_path, cores=0), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cores" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
