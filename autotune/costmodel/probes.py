"""Device probes: a fixed handful of kernels a part runs first, whose latencies tell the universal
model how this part departs from what its datasheet predicts.

A datasheet leaves a part's device values (DMA engines, launch and tile costs, clocks under load)
unknown, and a few hundred labels of random groups pin them only where those groups happen to
exercise them. The probes are the same kernels on every part: PROBE_GROUPS synthetic groups (the
generator's first points at a fixed seed, sized to the datasheet like any synthetic group) on one
core, a middle core count and every core. Over the training draw the universal model learns what
a part's probe residuals (measured against its own zero-shot prediction, in log) say about every
other kernel (universal.probe_trees): a learned hardware embedding, as HELP (Lee et al., NeurIPS
2021) builds one from a device's latencies on reference networks. Probe latencies are measurements
like any label: `adapt` spends PROBE_GROUPS x len(probe_cores) of its budget on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

from autotune.costmodel.boosters import read_boosters
from autotune.costmodel.calibration import RooflineFit
from autotune.errors import ModelFileError
from autotune.frontends.synthetic import generate
from autotune.hardware.config import HardwareConfig
from autotune.ir.tables import GroupBatch

#: Probe kernels: this many synthetic groups, each at every core count of `probe_cores`.
PROBE_GROUPS = 8
#: The generator seed of the probe groups: fixed, so every part runs the same probes.
PROBE_SEED = 4242
#: Group ids of the probes in exported and measured datasets start with this.
PROBE_PREFIX = "probe-"
#: Labels the probes take on every part: each group at the three core counts of `probe_cores`.
PROBE_LABELS = PROBE_GROUPS * 3


def probe_cores(hw: HardwareConfig) -> list[int]:
    """The core counts a probe runs at: the fewest, the middle one and the most of the part's."""
    ks = list(hw.core_counts)
    return [ks[0], ks[len(ks) // 2], ks[-1]]


def probe_id(k: int) -> str:
    """The group id of probe group k in exported and measured datasets (`export-groups --probes`)."""
    return f"{PROBE_PREFIX}{k}"


def probe_graphs(hw: HardwareConfig) -> list:
    """The probe groups of `hw`'s datasheet as standalone graphs (what export-groups writes)."""

    return generate(PROBE_GROUPS, hw, PROBE_SEED)


def probe_pairs(hw: HardwareConfig) -> tuple[GroupBatch, np.ndarray, np.ndarray]:
    """The probes of `hw` as (batch, group index, cores) pairs, group-major: what the model predicts
    and the device measures. Parts with one datasheet run the same kernels."""
    groups = [g.group(0, len(g)) for g in probe_graphs(hw)]
    ks = np.asarray(probe_cores(hw), dtype=np.int64)
    return GroupBatch.build(groups), np.repeat(np.arange(len(groups)), len(ks)), np.tile(ks, len(groups))


def probe_noise_seed(seed: int, datasheet: int = 0, device: int = 0) -> int:
    """Timing-noise seed of the probes on device `device` (0: the datasheet's first) of datasheet
    `datasheet` in a draw made with `seed` (synth --hw-family); `adapt` measures one part: (seed, 0, 0)."""
    return int(np.random.SeedSequence([seed, datasheet, device, 0x9B0]).generate_state(1)[0] % 2**31)


def probes_from_rows(rows, hw: HardwareConfig) -> np.ndarray | None:
    """The probes' latencies (ms, in `probe_pairs` order) from a measured dataset's rows (group_id,
    cores, latency_ms), or None unless every probe was measured."""
    have = {(str(g), int(k)): float(ms) for g, k, ms in zip(rows["group_id"], rows["cores"], rows["latency_ms"])}
    want = [(probe_id(g), k) for g in range(PROBE_GROUPS) for k in probe_cores(hw)]
    if not all(w in have for w in want):
        return None
    return np.asarray([have[w] for w in want])


def probe_residuals(model, hw: HardwareConfig, probe_ms: np.ndarray, pairs: tuple | None = None) -> np.ndarray:
    """log(measured / predicted) of each probe, predicted by the universal `model` for `hw`'s datasheet;
    `probe_ms` may hold one device's probes or a row per device of that datasheet (predicted once)."""
    batch, gidx, cores = pairs if pairs is not None else probe_pairs(hw)
    ms = np.asarray(probe_ms, dtype=np.float64)
    if ms.ndim not in (1, 2) or ms.shape[-1] != len(gidx) or not (np.isfinite(ms).all() and (ms > 0).all()):
        raise ValueError(f"expected {len(gidx)} positive probe latencies per device, got shape {ms.shape}")
    return np.log(ms) - np.log(model.predict_batch(batch, gidx, cores, hw))


#: Files of a probed member in an adapted model's folder.
MEMBER_FILE = "member.ubj"
MEMBER_PROBE_FILE = "member_probe.ubj"


@dataclass
class ProbedMember:
    """The universal model told about one part by its probes: the family's pooled roofline as prior,
    the universal trees continued by correction trees fitted to the part's labels, and the probe
    trees evaluated at the part's probe residuals. `adapt` averages it with the labels' own adaptation."""

    calibration: RooflineFit
    booster: xgb.Booster
    probe: xgb.Booster
    residuals: np.ndarray
    weight: float  # the member's share of the adapted model's log prediction (members.inverse_variance)

    kind = "probed"

    def margin(self, X: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray:
        """log ms of the prior plus the probe trees' departure: what the booster continues from."""
        return self.calibration.log_ms(parts) + probe_offset(self.probe, X, self.residuals)

    def log_predict(self, X: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(X, base_margin=self.margin(X, parts)), dtype=np.float64)

    def to_meta(self) -> tuple[dict, dict[str, bytes]]:
        """(meta.json's "member" entry, the files to publish beside the model)."""
        files = {MEMBER_FILE: bytes(self.booster.save_raw(raw_format="ubj")),
                 MEMBER_PROBE_FILE: bytes(self.probe.save_raw(raw_format="ubj"))}
        meta = {"kind": self.kind, "weight": self.weight, "calibration": self.calibration.to_dict(),
                "residuals": [float(v) for v in self.residuals],
                "sha256": {name: hashlib.sha256(raw).hexdigest() for name, raw in files.items()}}
        return meta, files

    @classmethod
    def from_meta(cls, meta: dict, folder: Path, retrain: str) -> ProbedMember:
        """The member meta.json describes, its files checked against the digests it records."""

        boosters = read_boosters(meta, folder, (MEMBER_FILE, MEMBER_PROBE_FILE), retrain)
        try:
            residuals = np.asarray(meta["residuals"], dtype=np.float64)
            member = cls(RooflineFit.from_dict(meta["calibration"]), boosters[MEMBER_FILE],
                         boosters[MEMBER_PROBE_FILE], residuals, float(meta["weight"]))
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{folder}/meta.json's probed member is malformed ({retrain})") from None
        if residuals.shape != (PROBE_LABELS,) or not np.isfinite(residuals).all() or not 0 <= member.weight <= 1:
            raise ModelFileError(f"{folder}/meta.json's probed member is malformed ({retrain})")
        return member


def probe_offset(probe: xgb.Booster, X: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """The probe trees' log departure of each row from the universal model, at the part's residuals."""
    r = np.tile(np.asarray(residuals, dtype=np.float32), (len(X), 1))
    return np.asarray(probe.inplace_predict(np.hstack([np.asarray(X, dtype=np.float32), r])), dtype=np.float64)
