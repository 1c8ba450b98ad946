"""Hardware configs: a strict YAML schema for a multi-core accelerator, presets, and a stable hash.

A config has two parts (docs/architecture.md, "The device boundary"):
- `datasheet:` what a vendor publishes and a user knows (cores, clock, MAC array, memory, bandwidth).
  The features, the cost model, the planner and every baseline read only this part.
- `device:` how the part behaves (DMA engines, launch and barrier costs, the compiler's tiling,
  DRAM contention, power limits, descriptor memory, bank conflicts, timing noise). Only the
  simulator, which plays the device, reads it. A part measured for real has no `device:`.
Retargeting the tuner is a new YAML file, in the spirit of ZigZag / Stream hardware descriptions.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autotune.errors import ConfigError
from autotune.hardware.host import cpu_config

PRESET_DIR = "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# -- datasheet ------------------------------------------------------------------------------------
class MacArray(_Strict):
    """MAC array of one core: `ci` input-channel lanes x `co` output-channel lanes per cycle.
    Channel counts are padded up to multiples of these widths (vector alignment)."""

    ci: int = Field(ge=1, le=4096)
    co: int = Field(ge=1, le=4096)


class Datasheet(_Strict):
    """What the vendor publishes: everything the cost model, features and planner may know."""

    cores: int = Field(ge=1, le=4096)
    core_counts: list[int]  # core counts a kernel may be compiled for
    clock_ghz: float = Field(gt=0, le=20)
    mac_array: MacArray
    vector_lanes: int = Field(ge=1, le=65536)  # vector-unit element ops per cycle per core
    dtype_bytes: int = Field(ge=1, le=8)
    onchip_kib: int = Field(ge=1, le=2**22)  # on-chip scratchpad per core (weights + activations)
    dram_gbps: float = Field(gt=0, le=1e5)  # DRAM bandwidth shared by all cores
    max_fusion: int = Field(ge=1, le=256)  # longest fusion group (layers per kernel)

    @model_validator(mode="after")
    def _check(self) -> Datasheet:
        if not self.core_counts:
            raise ValueError("core_counts: must list at least one core count")
        if self.core_counts[0] < 1:
            raise ValueError("core_counts: core counts must be at least 1")
        if sorted(set(self.core_counts)) != list(self.core_counts):
            raise ValueError("core_counts: must be strictly increasing")
        if self.core_counts[-1] > self.cores:
            raise ValueError(f"core_counts: {self.core_counts[-1]} exceeds cores={self.cores}")
        return self

    @property
    def macs_per_cycle(self) -> int:
        return self.mac_array.ci * self.mac_array.co

    @property
    def peak_macs_per_s(self) -> float:
        """Whole-chip peak MAC rate."""
        return self.cores * self.macs_per_cycle * self.clock_ghz * 1e9

    @property
    def onchip_bytes(self) -> int:
        return self.onchip_kib * 1024


# -- device ---------------------------------------------------------------------------------------
class Sync(_Strict):
    """Barrier between the layers of a kernel on k > 1 cores: base_us * log2(k) + per_core_us * k."""

    base_us: float = Field(ge=0)
    per_core_us: float = Field(ge=0)


class Tiling(_Strict):
    """The vendor compiler's tiles: the largest power-of-two tile (output rows, or output-channel
    tiles) up to `max_tile` whose working set fits in `buffer_fraction` of on-chip memory."""

    buffer_fraction: float = Field(gt=0, le=1)
    max_tile: float = Field(ge=1, le=1e6)  # rounded down to a power of two
    min_fill: float = Field(ge=0, le=1)  # a partial last tile costs at least this share of a full one
    tile_us: float = Field(ge=0)  # setup per tile on each core (descriptors, pipeline fill)


class Contention(_Strict):
    """DRAM contention: total bandwidth loses `loss_per_doubling` per doubling of streaming cores
    beyond `onset_cores`, so per-core bandwidth falls faster than 1/k."""

    onset_cores: float = Field(ge=1)
    loss_per_doubling: float = Field(ge=0, lt=1)


class Power(_Strict):
    """Power limit: above `budget_cores` cores' worth of dense MAC activity the clock drops as
    (budget / activity) ** exponent."""

    budget_cores: float = Field(gt=0)
    exponent: float = Field(ge=0, le=4)


class Descriptors(_Strict):
    """Descriptor / instruction memory of a kernel, in units (conv 3, depthwise/fc/matmul 2,
    other layers 1 per distinct layer; 0.25 per repeat of an identical layer). Each time a
    kernel's program exceeds `capacity` it reloads, paying `reload_us`."""

    capacity: float = Field(gt=0)
    reload_us: float = Field(ge=0)


class Banks(_Strict):
    """On-chip memory banks: a windowed layer whose channel vector spans a number of bank words
    that shares a factor d with `count` banks serialises d accesses: compute x (1 + penalty *
    (d - 1) / (count - 1))."""

    count: float = Field(ge=1, le=4096)  # rounded to a whole number
    width_bytes: float = Field(gt=0)
    penalty: float = Field(ge=0)


class Noise(_Strict):
    """Measurement noise on training labels: log-normal spread `sigma`, and with probability
    `outlier_rate` an extra slowdown of `outlier_scale` times a Lomax(2) draw (heavy tail)."""

    sigma: float = Field(ge=0, lt=1)
    outlier_rate: float = Field(default=0.0, ge=0, lt=1)
    outlier_scale: float = Field(default=0.0, ge=0)


class Device(_Strict):
    """How the part behaves: read by the simulator alone (it plays the device)."""

    dma_gbps_per_core: float = Field(gt=0)  # what one core's DMA engine can move
    dma_exposed: float = Field(ge=0, le=1)  # share of the shorter of DMA/compute not hidden (double buffering)
    launch_us: float = Field(gt=0)  # host-side kernel launch, once per kernel
    dispatch_us_per_core: float = Field(ge=0)  # per-core dispatch, once per kernel
    sync: Sync
    layer_overhead_us: float = Field(ge=0)  # per-layer pipeline setup inside a kernel, on every core
    tiling: Tiling | None = None
    contention: Contention | None = None
    power: Power | None = None
    descriptors: Descriptors | None = None
    banks: Banks | None = None
    noise: Noise = Noise(sigma=0.0)

    def sync_us(self, k: float) -> float:
        import math

        return 0.0 if k <= 1 else self.sync.base_us * math.log2(k) + self.sync.per_core_us * k


# -- the config -----------------------------------------------------------------------------------
class HardwareConfig(_Strict):
    """A multi-core DNN accelerator: its datasheet and, for a simulated part, its device behaviour.

    The datasheet's values are also readable directly (`hw.cores` is `hw.datasheet.cores`)."""

    name: str
    description: str = ""
    datasheet: Datasheet
    device: Device | None = None

    # -- the datasheet, read through ---------------------------------------------------------
    @property
    def cores(self) -> int:
        return self.datasheet.cores

    @property
    def core_counts(self) -> list[int]:
        return self.datasheet.core_counts

    @property
    def clock_ghz(self) -> float:
        return self.datasheet.clock_ghz

    @property
    def mac_array(self) -> MacArray:
        return self.datasheet.mac_array

    @property
    def vector_lanes(self) -> int:
        return self.datasheet.vector_lanes

    @property
    def dtype_bytes(self) -> int:
        return self.datasheet.dtype_bytes

    @property
    def onchip_kib(self) -> int:
        return self.datasheet.onchip_kib

    @property
    def dram_gbps(self) -> float:
        return self.datasheet.dram_gbps

    @property
    def max_fusion(self) -> int:
        return self.datasheet.max_fusion

    @property
    def macs_per_cycle(self) -> int:
        return self.datasheet.macs_per_cycle

    @property
    def peak_macs_per_s(self) -> float:
        return self.datasheet.peak_macs_per_s

    @property
    def peak_tflops(self) -> float:
        return 2 * self.datasheet.peak_macs_per_s / 1e12

    @property
    def onchip_bytes(self) -> int:
        return self.datasheet.onchip_bytes

    # -- identity ---------------------------------------------------------------------------
    @property
    def hash(self) -> str:
        """Stable digest of every value that affects latency, datasheet and device (not name or description)."""
        return _digest(self.model_dump(exclude={"name", "description"}))

    @property
    def datasheet_hash(self) -> str:
        """Stable digest of the datasheet alone: what features computed from it depend on."""
        return _digest(self.datasheet.model_dump())

    def updated(self, changes: dict[str, object]) -> HardwareConfig:
        """A validated copy with values changed by dotted path, e.g. {"datasheet.max_fusion": 4,
        "device.tiling": None}; errors name the field as loading a file would."""
        data = self.model_dump()
        for path, value in changes.items():
            *parents, leaf = path.split(".")
            node = data
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"hardware config {self.name}: no section {path!r}")
                node = node[p]
            node[leaf] = value
        return parse_hardware(data, self.name)

    @property
    def has_device(self) -> bool:
        """Whether the simulator can play this part (it has a `device:` section); says nothing of its values."""
        return self.device is not None

    def require_device(self) -> Device:
        """The `device:` section, or a clear error: a part measured for real cannot be simulated."""
        if self.device is None:
            raise ConfigError(f"hardware config {self.name!r} has no device: section (a part measured for real); "
                              "the simulator cannot play it: measure it and import the profile instead")
        return self.device


def _digest(values: dict) -> str:
    blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Presets built at load time rather than read from a file: `cpu` is this host (autotune/hardware/host.py).
HOST_PRESETS = ("cpu",)
#: Files in presets/ that are hardware families (autotune/hardware/family.py), not configs.
FAMILY_FILES = ("family",)


def preset_names() -> list[str]:
    return sorted([p.name[:-5] for p in resources.files("autotune.hardware").joinpath(PRESET_DIR).iterdir()
                   if p.name.endswith(".yaml") and p.name[:-5] not in FAMILY_FILES] + list(HOST_PRESETS))


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are
    unique; PyYAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_hardware(name_or_path: str) -> HardwareConfig:
    """Load a preset by name (`mlu100`) or a YAML file by path, validating every field strictly."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or "/" in s:
        path = Path(s)
        if not path.is_file():
            raise ConfigError(f"hardware config {s}: file not found")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            reason = "not a text file" if isinstance(err, UnicodeDecodeError) else (err.strerror or str(err))
            raise ConfigError(f"hardware config {s}: cannot read it: {reason}") from None
    elif s in HOST_PRESETS:
        return parse_hardware(cpu_config(), s)
    elif s in FAMILY_FILES:
        raise ConfigError(f"{s!r} is a hardware family, not a config: draw devices from it with --hw-family {s}")
    elif s in preset_names():
        text = resources.files("autotune.hardware").joinpath(PRESET_DIR).joinpath(f"{s}.yaml").read_text()
    else:
        raise ConfigError(f"hardware config {s!r}: no such preset (presets: {', '.join(preset_names())}) or file")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        problem = getattr(err, "problem", None)
        why = f": {problem}" if problem and "twice" in str(problem) else ""
        raise ConfigError(f"hardware config {s}: not valid YAML{where}{why}") from None
    except RecursionError:
        raise ConfigError(f"hardware config {s}: nested too deeply") from None
    return parse_hardware(data, s)


def is_host_cpu(hw: HardwareConfig) -> bool:
    """Whether `hw` is this machine's CPU (the `cpu` preset's datasheet): the one part without a
    `device:` section that `tune --verify` can time here (ONNX Runtime)."""

    return not hw.has_device and parse_hardware(cpu_config(), "cpu").datasheet_hash == hw.datasheet_hash


def dump_hardware(hw: HardwareConfig) -> str:
    """The config as YAML text that `load_hardware` reads back to an equal config."""
    return yaml.safe_dump(hw.model_dump(), sort_keys=False)
