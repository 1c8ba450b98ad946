"""The `cpu` hardware preset: this machine's CPU as a multi-core device, filled from the host.

A plan on it means: run each group as one ONNX Runtime session with its thread count (the core
count). What can be read from the system is read (cores, clock, SIMD width, cache); what cannot is
assumed, and said so in the config's description. Only deterministic reads are used, so the
config's hash, and with it the datasets and models made for it, stay valid on this host.
"""

from __future__ import annotations

import re
from pathlib import Path

from .ort import host_cores

#: Assumed sustainable DRAM bandwidth per core (GB/s) up to four cores: a typical server/desktop
#: DDR4/DDR5 channel share. Not measured, so the hash does not move between runs.
ASSUMED_GBPS_PER_CORE = 8.0


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _clock_ghz(info: str) -> tuple[float, str]:
    """The nominal clock: cpufreq's maximum, else the model name's "@ x GHz", else /proc/cpuinfo's
    current MHz rounded to 0.5 GHz (it moves with load, and the hash must not)."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return round(khz / 1e6, 1), "measured (cpufreq maximum)"
    except (OSError, ValueError):
        pass
    m = re.search(r"^model name\s*:.*@\s*([\d.]+)\s*GHz", info, re.MULTILINE)
    if m:
        return float(m.group(1)), "measured (model name)"
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.MULTILINE)
    if m and float(m.group(1)) > 100:
        return max(0.5, round(float(m.group(1)) / 500) * 0.5), "measured (/proc/cpuinfo, rounded)"
    return 2.5, "assumed"


def _simd_lanes(info: str) -> tuple[int, str]:
    flags = set(re.findall(r"\b(avx512f|avx2|avx|sse4_2|neon|asimd)\b", info))
    if "avx512f" in flags:
        return 16, "measured (avx512f: 16 fp32 lanes)"
    if "avx2" in flags or "avx" in flags:
        return 8, "measured (avx2: 8 fp32 lanes)"
    if flags:
        return 4, "measured (128-bit SIMD: 4 fp32 lanes)"
    return 4, "assumed"


def _cache_kib() -> tuple[int, str]:
    """Cache per core: L2 (private on most parts)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")):
        try:
            if (idx / "level").read_text().strip() == "2":
                size = (idx / "size").read_text().strip().upper()
                n = int(re.sub(r"[^0-9]", "", size))
                return (n * 1024 if size.endswith("M") else n), "measured (L2, sysfs)"
        except (OSError, ValueError):
            continue
    return 1024, "assumed"


def cpu_config() -> dict:
    """The `cpu` preset as a hardware-config dict (datasheet only: there is no simulator of it)."""
    info = _cpuinfo()
    cores = host_cores()
    clock, clock_src = _clock_ghz(info)
    lanes, lanes_src = _simd_lanes(info)
    cache, cache_src = _cache_kib()
    counts = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= cores} | {cores})
    gbps = ASSUMED_GBPS_PER_CORE * min(cores, 4)
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    desc = (f"this host's CPU ({model.group(1).strip() if model else 'unknown model'}) run by ONNX Runtime: "
            f"cores {cores} measured (affinity), clock {clock} GHz {clock_src}, SIMD {lanes} lanes {lanes_src}, "
            f"on-chip {cache} KiB per core {cache_src}, DRAM {gbps:g} GB/s assumed, fp32; "
            "mac_array = SIMD lanes x 2 FMA ports assumed")
    return {"name": "cpu", "description": desc,
            "datasheet": {"cores": cores, "core_counts": counts, "clock_ghz": clock,
                          "mac_array": {"ci": lanes, "co": 2}, "vector_lanes": lanes, "dtype_bytes": 4,
                          "onchip_kib": cache, "dram_gbps": gbps, "max_fusion": 8}}
