"""Devices: what measures (group, cores) pairs. The one seam between the tool and a part's latencies.

A device answers `measure_batch(batch, gidx, cores, seed)` in ms: with `seed=None` the latency as
the part runs it without timing noise (what the oracle and verification read), with a seed one
seeded measurement as a timer reports it (what labels are). Implementations:

- `Simulator`: our simulated accelerator (autotune/device/simulator.py), for a config with a `device:`
  section. Only this package imports the simulator (tests/test_architecture.py).
- `TableDevice`: a part's measurements of one network's candidates (`eval --measured`), looked up.
- `OrtDevice` (autotune/device/ort.py): this machine's CPU through ONNX Runtime, each group
  exported as ONNX and timed (`measure`; a feature batch holds no ONNX, so not `measure_batch`).
  Labels for the CPU are an export folder's files timed one line at a time (`OrtDevice.time_one`,
  called by autotune/synth/measure.py), the way a user's own part is measured: `export-groups`,
  then a profile. Only this package calls the timer (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotune.errors import AutotuneError
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph, Group
from autotune.ir.tables import GroupBatch


class Device:
    """A part that measures (group, cores) pairs; `name` says which in reports."""

    name = "device"

    def measure_batch(self, batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray,
                      seed: int | None = None) -> np.ndarray:
        """Latency (ms) of pairs (batch group gidx[i], cores[i]): without timing noise when `seed`
        is None, else one measurement seeded by `seed`."""
        raise NotImplementedError

    def measure(self, groups: Sequence[Group], cores: Sequence[int] | np.ndarray,
                seed: int | None = None) -> np.ndarray:
        """As `measure_batch`, for pairs (groups[i], cores[i])."""
        if len(groups) == 0:
            return np.zeros(0)
        return self.measure_batch(GroupBatch.build(groups), np.arange(len(groups)),
                                  np.asarray(cores, dtype=np.int64), seed)


@dataclass
class Simulator(Device):
    """The simulated accelerator of `hw` (its `device:` section)."""

    hw: HardwareConfig
    name = "simulator"

    def __post_init__(self) -> None:
        self.hw.require_device()

    def measure_batch(self, batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray,
                      seed: int | None = None) -> np.ndarray:
        from autotune.device.simulator import simulate_batch

        return simulate_batch(batch, np.asarray(gidx), np.asarray(cores), self.hw, noise=seed is not None,
                              seed=0 if seed is None else int(seed))

    def measure(self, groups: Sequence[Group], cores: Sequence[int] | np.ndarray,
                seed: int | None = None) -> np.ndarray:
        from autotune.device.simulator import simulate

        return simulate(groups, cores, self.hw, noise=seed is not None, seed=0 if seed is None else int(seed))


@dataclass
class MeasuredTable:
    """Measured latencies (ms) of one network's candidate spans [i, j) at each of the part's core
    counts (`ms_by_span[(i, j)][k]` for core_counts[k]): what `eval --measured` scores plans on; +inf
    where the part could not run the pair, NaN where it was not measured."""

    network: str
    ms_by_span: dict[tuple[int, int], np.ndarray]
    source: str = ""

    def ms(self, i: int, j: int, k: int) -> float:
        row = self.ms_by_span.get((i, j))
        if row is None or np.isnan(row[k]):
            raise AutotuneError(f"{self.source or self.network}: no measurement of {self.network}'s layers "
                                f"[{i}, {j}) at core-count index {k}; export and measure every candidate "
                                f"(`autotune export-groups --model {self.network}`)")
        return float(row[k])


@dataclass
class TableDevice(Device):
    """A part's measurements of one network's candidates standing in for the part: each pair is
    looked up (spans of that network only); the table is all there is, so `seed` changes nothing."""

    table: MeasuredTable
    hw: HardwareConfig
    graph: Graph | None = None  # the network the table measured: a batch of other graphs is refused

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"measured:{self.table.network}"

    def measure_batch(self, batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray,
                      seed: int | None = None) -> np.ndarray:
        if self.graph is not None and len(gidx) and not batch.of_graph(self.graph):
            raise AutotuneError(f"{self.table.source or self.table.network} holds {self.table.network}'s candidates "
                                "only, and the plan asked for other layers (a strategy that measures a study of "
                                "its own, as dlfusion does, needs the part's device: section or a trained model)")
        col = {int(k): n for n, k in enumerate(self.hw.core_counts)}
        return np.array([self.table.ms(int(batch.start[x]), int(batch.end[x]), col[int(c)])
                         for x, c in zip(gidx, cores)], dtype=np.float64)
