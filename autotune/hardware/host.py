"""The `cpu` hardware preset: this machine's CPU as a multi-core device, filled from the host.

A plan on it means: run each group as one ONNX Runtime session with its thread count (the core
count). What can be read from the system is read (cores, clock, SIMD width, cache); what cannot is
assumed, and said so in the config's description. Only deterministic reads are used, so the
config's hash, and with it the datasets and models made for it, stay valid on this host.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from autotune.errors import AutotuneError

#: Assumed sustainable DRAM bandwidth per core (GB/s) up to four cores: a typical server/desktop
#: DDR4/DDR5 channel share. Not measured, so the hash does not move between runs.
ASSUMED_GBPS_PER_CORE = 8.0


def host_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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


# -- memory: what a group may hold (not part of the config, so the hash stays put) -----------------
#: Read instead of the system's available memory where set (bytes): for tests and for hosts whose
#: free memory the system misreports.
MEM_ENV = "AUTOTUNE_MEM_AVAILABLE"
#: Assumed available memory where neither /proc/meminfo nor a cgroup says (bytes).
FALLBACK_AVAILABLE = 4 << 30
#: The share of available memory one generated group may hold (inputs, every tensor, weights).
GROUP_SHARE = 1 / 16
#: Cgroup (v2, then v1) files of (limit, usage): a container's own ceiling under the host's.
_CGROUP = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
           ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _meminfo_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None."""
    try:
        m = re.search(r"^MemAvailable:\s*(\d+)\s*kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def _cgroup_headroom() -> int | None:
    """Bytes this process's memory cgroup may still take (its limit less its usage), or None if unlimited."""
    for limit_f, usage_f in _CGROUP:
        try:
            limit, usage = Path(limit_f).read_text().strip(), Path(usage_f).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - int(usage))
        return None
    return None


def available_memory() -> int:
    """Bytes this process may allocate now: $AUTOTUNE_MEM_AVAILABLE if set, else the least of
    MemAvailable and the cgroup's headroom, else FALLBACK_AVAILABLE."""
    import os

    env = os.environ.get(MEM_ENV)
    if env is not None:
        if not env.strip().isdigit() or int(env) < 1:
            raise AutotuneError(f"${MEM_ENV} must be a whole number of bytes, at least 1; got {env!r}")
        return int(env)
    known = [b for b in (_meminfo_available(), _cgroup_headroom()) if b is not None]
    return min(known) if known else FALLBACK_AVAILABLE


def group_byte_cap() -> int:
    """The most bytes a group generated for this host may hold: GROUP_SHARE of its available memory,
    rounded down to a power of two so that the generated groups stay put while free memory drifts."""
    return 1 << max(0, int(available_memory() * GROUP_SHARE).bit_length() - 1)
