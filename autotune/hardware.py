"""Hardware configs: a strict YAML schema for a multi-core accelerator, presets, and a stable hash.

Every constant the simulator and the features use comes from a `HardwareConfig`, so retargeting
the tuner is a new YAML file (in the spirit of ZigZag / Stream hardware descriptions).
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from .errors import ConfigError

PRESET_DIR = "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MacArray(_Strict):
    """MAC array of one core: `ci` input-channel lanes x `co` output-channel lanes per cycle.
    Channel counts are padded up to multiples of these widths (vector alignment)."""

    ci: PositiveInt
    co: PositiveInt


class Sync(_Strict):
    """Barrier between the layers of a kernel on k > 1 cores: base_us * log2(k) + per_core_us * k."""

    base_us: float = Field(ge=0)
    per_core_us: float = Field(ge=0)


class HardwareConfig(_Strict):
    """A multi-core DNN accelerator as the simulator sees it."""

    name: str
    description: str = ""
    cores: PositiveInt
    core_counts: list[PositiveInt]  # core counts a kernel may be compiled for
    clock_ghz: PositiveFloat
    mac_array: MacArray
    vector_lanes: PositiveInt  # vector-unit element ops per cycle per core (pool, eltwise, act, ...)
    dtype_bytes: PositiveInt
    onchip_kib: PositiveInt  # on-chip scratchpad per core (weights + activations)
    dram_gbps: PositiveFloat  # DRAM bandwidth shared by all cores
    dma_gbps_per_core: PositiveFloat  # what one core's DMA engine can move
    dma_overlap: float = Field(ge=0, le=1)  # fraction of DMA hidden under compute (double buffering)
    launch_us: PositiveFloat  # host-side kernel launch, once per kernel
    dispatch_us_per_core: float = Field(ge=0)  # per-core dispatch, once per kernel
    sync: Sync
    layer_overhead_us: float = Field(ge=0)  # per-layer pipeline setup inside a kernel, on every core
    max_fusion: PositiveInt  # longest fusion group (layers per kernel)
    label_noise: float = Field(ge=0, lt=1)  # relative std of measurement noise on training labels

    @model_validator(mode="after")
    def _check(self) -> HardwareConfig:
        if not self.core_counts:
            raise ValueError("core_counts: must list at least one core count")
        if sorted(set(self.core_counts)) != list(self.core_counts):
            raise ValueError("core_counts: must be strictly increasing")
        if self.core_counts[-1] > self.cores:
            raise ValueError(f"core_counts: {self.core_counts[-1]} exceeds cores={self.cores}")
        return self

    # -- derived ----------------------------------------------------------------------------
    @property
    def macs_per_cycle(self) -> int:
        return self.mac_array.ci * self.mac_array.co

    @property
    def peak_macs_per_s(self) -> float:
        """Whole-chip peak MAC rate."""
        return self.cores * self.macs_per_cycle * self.clock_ghz * 1e9

    @property
    def peak_tflops(self) -> float:
        return 2 * self.peak_macs_per_s / 1e12

    @property
    def onchip_bytes(self) -> int:
        return self.onchip_kib * 1024

    def sync_us(self, k: float) -> float:
        return 0.0 if k <= 1 else self.sync.base_us * math.log2(k) + self.sync.per_core_us * k

    @property
    def hash(self) -> str:
        """Stable digest of every value that affects latency (not name or description)."""
        values = self.model_dump(exclude={"name", "description"})
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("autotune").joinpath(PRESET_DIR).iterdir()
                  if p.name.endswith(".yaml"))


def hw_slug(name_or_path: str) -> str:
    """Folder name for a config's data/models/reports: the preset name or the YAML file's stem."""
    return Path(name_or_path).stem if name_or_path.endswith((".yaml", ".yml")) else name_or_path


def _format_error(src: str, err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown field"
    elif e["type"] == "missing":
        msg = "missing field"
    return f"hardware config {src}: field '{loc}': {msg}"


def parse_hardware(data: object, src: str = "<dict>") -> HardwareConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"hardware config {src}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return HardwareConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(src, err)) from None


def load_hardware(name_or_path: str) -> HardwareConfig:
    """Load a preset by name (`mlu100`) or a YAML file by path, validating every field strictly."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or "/" in s:
        path = Path(s)
        if not path.is_file():
            raise ConfigError(f"hardware config {s}: file not found")
        text = path.read_text()
    elif s in preset_names():
        text = resources.files("autotune").joinpath(PRESET_DIR, f"{s}.yaml").read_text()
    else:
        raise ConfigError(f"hardware config {s!r}: no such preset (presets: {', '.join(preset_names())}) or file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"hardware config {s}: not valid YAML{where}") from None
    return parse_hardware(data, s)
