"""Hardware families: documented ranges of datasheet and device values, and seeded draws of devices.

A family (`presets/family.yaml`, or a user's YAML) lists, for every datasheet and device value of a
hardware config, the range parts of that family span. `draw` turns a scrambled Sobol sequence into
configs, so the devices cover the ranges evenly; `outside` says which datasheet values of a
given config leave the family (the universal model warns for those). The universal model learns from
the draw's datasheets and labels; the device values only shape the labels (docs/architecture.md, "The device boundary").
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autotune.errors import ConfigError
from autotune.hardware.config import FAMILY_FILES, PRESET_DIR, HardwareConfig, _UniqueKeyLoader, parse_hardware

#: A family dataset's manifest (autotune/synth/family_labels.py writes it, universal.py reads it).
FAMILY_MANIFEST = "family.json"
#: In a family device's folder: the same rows measured on its siblings (same datasheet, device values redrawn).
SIBLINGS_FILE = "siblings.parquet"
#: Datasheet quantities a device value may be `per` (a multiple of).
PER = ("cores", "dram_gbps_per_core", "peak_tflops")
_SPEC_KEYS = {"choices", "min", "max", "log", "integer", "per"}


@dataclass(frozen=True)
class Range:
    """One value's range: a list of choices, or [lo, hi] drawn log-uniformly or uniformly."""

    path: str  # dotted, e.g. "datasheet.mac_array.ci"
    choices: tuple[float, ...] | None = None
    lo: float = 0.0
    hi: float = 0.0
    log: bool = False
    integer: bool = False
    per: str | None = None

    @property
    def bounds(self) -> tuple[float, float]:
        return (min(self.choices), max(self.choices)) if self.choices else (self.lo, self.hi)

    def value(self, u: float) -> float:
        """The value at quantile u in [0, 1)."""
        if self.choices:
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        v = math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo))) if self.log \
            else self.lo + u * (self.hi - self.lo)
        return float(round(v)) if self.integer else v


@dataclass(frozen=True)
class Family:
    """A named family: the ranges of its datasheet and device values, and a stable hash of them."""

    name: str
    description: str
    ranges: tuple[Range, ...]
    spec: dict  # the family as read, for the dataset's and the model's records

    @property
    def hash(self) -> str:
        blob = json.dumps({"datasheet": self.spec["datasheet"], "device": self.spec["device"]}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def datasheet_ranges(self) -> list[Range]:
        return [r for r in self.ranges if r.path.startswith("datasheet.")]

    def draw(self, n: int, seed: int = 0, prefix: str = "dev") -> list[HardwareConfig]:
        """n devices from a scrambled Sobol sequence over every range (seeded): a different seed
        draws different devices."""
        from scipy.stats import qmc

        if n < 1:
            raise ConfigError(f"hardware family {self.name}: draw at least one device, not {n}")
        sampler = qmc.Sobol(d=len(self.ranges), scramble=True, seed=np.random.default_rng([seed, 0x5EED]))
        m = max(0, math.ceil(math.log2(n)))
        u = sampler.random_base2(m)[:n]
        return [self.config(u[i], f"{prefix}{seed:03d}-{i:03d}") for i in range(n)]

    def config(self, u: np.ndarray, name: str, datasheet: dict | None = None) -> HardwareConfig:
        """The config at quantiles u (one per range, in `ranges` order); with `datasheet` given,
        that datasheet and the device values at u (scaled by it where `per`)."""
        data: dict[str, Any] = {"name": name, "description": f"drawn from hardware family {self.name}",
                                "datasheet": {}, "device": {}}
        for r, q in zip(self.ranges, u):
            if r.per is None and (datasheet is None or not r.path.startswith("datasheet.")):
                _put(data, r.path, r.value(float(q)))
        if datasheet is not None:
            data["datasheet"] = json.loads(json.dumps(datasheet))
        ds = data["datasheet"]
        if datasheet is None:
            for key in ("cores", "vector_lanes", "dtype_bytes", "onchip_kib", "max_fusion"):
                ds[key] = int(ds[key])
            ds["mac_array"] = {k: int(v) for k, v in ds["mac_array"].items()}
            ds["core_counts"] = [2**i for i in range(int(math.log2(ds["cores"])) + 1) if 2**i <= ds["cores"]]
        peak = 2 * ds["cores"] * ds["mac_array"]["ci"] * ds["mac_array"]["co"] * ds["clock_ghz"] / 1e3
        for r, q in zip(self.ranges, u):  # datasheet ranges come first: device ones may be per dram_gbps
            if r.per is not None and (datasheet is None or r.path.startswith("device.")):
                scale = {"cores": float(ds["cores"]), "peak_tflops": peak,
                         "dram_gbps_per_core": ds.get("dram_gbps", 0.0) / ds["cores"]}
                v = r.value(float(q)) * scale[r.per]
                _put(data, r.path, max(v, 1.0) if r.per == "cores" else v)  # a count of cores is at least one
        return parse_hardware(data, name)

    def siblings(self, hw: HardwareConfig, n: int, seed: int = 0) -> list[HardwareConfig]:
        """n parts with hw's datasheet and device values drawn from the family: what hw could be,
        knowing only its datasheet."""
        rng = np.random.default_rng([seed, 0x51B])
        ds = hw.datasheet.model_dump()
        return [self.config(rng.random(len(self.ranges)), f"{hw.name}-sibling{i}", ds) for i in range(n)]

    def outside(self, hw: HardwareConfig) -> list[str]:
        """The datasheet values of `hw` outside the family's ranges, each as one phrase."""
        out = []
        flat = hw.datasheet.model_dump()
        for r in self.datasheet_ranges():
            v = float(_get({"datasheet": flat}, r.path))
            lo, hi = r.bounds
            name = r.path.removeprefix("datasheet.")
            if r.per == "peak_tflops":
                v, name = v / hw.peak_tflops, f"{name} per peak TFLOPS"
            if not lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                out.append(f"{name}={v:.4g} (family range {lo:g}..{hi:g})")
        return out


def _put(data: dict, path: str, value: float) -> None:
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _get(data: dict, path: str) -> Any:
    node: Any = data
    for p in path.split("."):
        node = node[p]
    return node


def _ranges(node: Any, path: str, src: str) -> list[Range]:
    """Every range below `node` (a mapping of fields, or one range spec), in file order."""
    if not isinstance(node, dict):
        raise ConfigError(f"hardware family {src}: field '{path}': expected a range such as "
                          "{min: 1, max: 8} or {choices: [1, 2]}, got " + repr(node))
    if node and set(node) <= _SPEC_KEYS and ("choices" in node or "min" in node or "max" in node):
        return [_range(node, path, src)]
    out = []
    for key, child in node.items():
        out += _ranges(child, f"{path}.{key}", src)
    return out


def _range(spec: dict, path: str, src: str) -> Range:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"hardware family {src}: field '{path}': {msg}")

    def number(v: Any, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad(f"{what} must be a number, got {v!r}")
        return float(v)

    per = spec.get("per")
    if per is not None and per not in PER:
        raise bad(f"per must be one of {', '.join(PER)}, got {per!r}")
    if per is not None and not path.startswith("device.") and (per, path) != ("peak_tflops", "datasheet.dram_gbps"):
        raise bad("only device values, and datasheet.dram_gbps per peak_tflops, may be given per a datasheet quantity")
    for flag in ("log", "integer"):
        if not isinstance(spec.get(flag, False), bool):
            raise bad(f"{flag} must be true or false")
    if "choices" in spec:
        if set(spec) - {"choices", "per"}:
            raise bad("give either choices or min/max, not both")
        ch = spec["choices"]
        if not isinstance(ch, list) or not ch:
            raise bad("choices must be a non-empty list")
        return Range(path, choices=tuple(number(c, "each choice") for c in ch), per=per)
    if "min" not in spec or "max" not in spec:
        raise bad("a range needs both min and max")
    lo, hi = number(spec["min"], "min"), number(spec["max"], "max")
    if lo > hi:
        raise bad(f"min {lo:g} is above max {hi:g}")
    log = bool(spec.get("log", False))
    if log and lo <= 0:
        raise bad("a log range needs min > 0")
    return Range(path, lo=lo, hi=hi, log=log, integer=bool(spec.get("integer", False)), per=per)


def parse_family(data: object, src: str = "<dict>") -> Family:
    """A validated family; every datasheet and device field of a config must have a range
    (core_counts excepted), so a draw is always a complete config."""
    if not isinstance(data, dict):
        raise ConfigError(f"hardware family {src}: expected a mapping of fields")
    unknown = set(data) - {"name", "description", "datasheet", "device"}
    if unknown:
        raise ConfigError(f"hardware family {src}: field '{sorted(unknown)[0]}': unknown field")
    for section in ("name", "datasheet", "device"):
        if section not in data:
            raise ConfigError(f"hardware family {src}: field '{section}': missing field")
    ranges = tuple(_ranges(data["datasheet"], "datasheet", src) + _ranges(data["device"], "device", src))
    for r in ranges:  # a draw anywhere in the range, not only at its ends, must have a core
        if r.path == "datasheet.cores" and int(min(r.choices) if r.choices else r.lo) < 1:
            raise ConfigError(f"hardware family {src}: field 'datasheet.cores': every value drawn must be at least 1, "
                              f"got {min(r.choices) if r.choices else r.lo:g}")
    fam = Family(str(data["name"]), str(data.get("description", "")), ranges, json.loads(json.dumps(data)))
    # a draw at the ranges' low and high ends must be a valid config: it names a field that is not
    for u in (np.zeros(len(ranges)), np.full(len(ranges), 1 - 1e-12)):
        try:
            fam.config(u, fam.name)
        except ConfigError as err:
            raise ConfigError(f"hardware family {src}: its ranges do not make a valid config: "
                              f"{str(err).split(': ', 1)[-1]}") from None
        except KeyError as err:
            raise ConfigError(f"hardware family {src}: field 'datasheet.{err.args[0]}': missing field") from None
    return fam


def load_family(name_or_path: str) -> Family:
    """A family by preset name (`family`) or YAML path."""

    s = str(name_or_path)
    if s in FAMILY_FILES:
        text = resources.files("autotune.hardware").joinpath(PRESET_DIR).joinpath(f"{s}.yaml").read_text()
    else:
        path = Path(s)
        if not path.is_file():
            raise ConfigError(f"hardware family {s}: file not found (presets: {', '.join(FAMILY_FILES)})")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            raise ConfigError(f"hardware family {s}: cannot read it as text") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"hardware family {s}: not valid YAML") from None
    return parse_family(data, s)
