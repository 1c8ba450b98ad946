"""Cost sources: where a plan's (group, cores) latencies come from, as small plug-ins.

A cost source maps a batch of (group, cores) pairs to milliseconds and counts what it was asked.
Those that run on the device (`measures=True`: the oracle's noise-free simulator, noisy device
runs) count every pair as a device measurement; the model and the datasheet estimate never touch
the device. New sources register a factory with `register_cost`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autotune.costmodel.features import get_featurizer
from autotune.device.base import MeasuredTable, Simulator, TableDevice
from autotune.errors import AutotuneError
from autotune.hardware.analytic import analytic_ms
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.ir.tables import GroupBatch


@dataclass
class CostSource:
    """Latency (ms) of (group, cores) pairs; counts the pairs asked and those measured on the device."""

    name: str
    fn: Callable[[GroupBatch, np.ndarray, np.ndarray], np.ndarray]
    measures: bool  # runs on the device: every pair is a device measurement
    pairs: int = 0
    sim_pairs: int = 0

    def __call__(self, batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray) -> np.ndarray:
        self.pairs += len(gidx)
        if self.measures:
            self.sim_pairs += len(gidx)
        return self.fn(batch, gidx, cores)


@dataclass(frozen=True)
class CostKind:
    """A registered cost source: how to make one, whether it needs a model, whether it measures."""

    name: str
    make: Callable[..., CostSource]  # (hw, model, seed) -> CostSource
    needs_model: bool
    measures: bool
    doc: str


_COSTS: dict[str, CostKind] = {}


def register_cost(name: str, needs_model: bool = False, measures: bool = False):
    """Decorator for a factory `(hw, model, seed) -> CostSource` registered under `name`."""
    def deco(make: Callable[..., CostSource]) -> Callable[..., CostSource]:
        if name in _COSTS:
            raise ValueError(f"cost source {name!r} is registered twice")
        _COSTS[name] = CostKind(name, make, needs_model, measures, (make.__doc__ or "").strip().partition("\n")[0])
        return make
    return deco


def cost_names() -> list[str]:
    return list(_COSTS)


def make_cost(name: str, hw: HardwareConfig, model=None, seed: int = 0) -> CostSource:
    """A fresh (counting) cost source of kind `name`."""
    kind = _COSTS.get(name)
    if kind is None:
        raise AutotuneError(f"unknown cost source {name!r}; choose one of: {', '.join(_COSTS)}")
    if kind.needs_model and model is None:
        raise AutotuneError(f"cost source {name!r} needs a trained model")
    return kind.make(hw, model, seed)


@register_cost("learned", needs_model=True)
def model_cost(hw: HardwareConfig, model, seed: int = 0) -> CostSource:
    """The learned model: features + predict, never the device. Any regressor fitted on the datasheet
    featurizer's rows works; a LatencyModel featurizes by its own featurizer (`predict_batch`)."""
    return CostSource("learned", model_predictor(model, hw), measures=False)


def model_predictor(model, hw: HardwareConfig):
    """(batch, gidx, cores) -> predicted ms, for a LatencyModel or any fitted scikit-learn regressor."""
    if hasattr(model, "predict_batch"):
        return lambda b, g, k: model.predict_batch(b, g, k, hw)

    featurize = get_featurizer("datasheet").batch
    return lambda b, g, k: model.predict(featurize(b, g, k, hw))


def memo_cost(hw: HardwareConfig, model, graph: Graph, rows: dict[tuple[int, int], int], table: np.ndarray
              ) -> CostSource:
    """The learned model with the predictions of `graph`'s spans made already (`table`, spans x core
    counts, span [i, j) in row `rows[(i, j)]`, e.g. planner.cost_table's and planner.span_index's):
    a pair of a batch of `graph` is looked up where its span has a row; any other pair (another
    graph's, as DLFusion's study grid asks for) is predicted. Planning that network again on the
    same model then costs no prediction."""
    col = {int(k): n for n, k in enumerate(hw.core_counts)}
    predict = model_predictor(model, hw)

    def fn(b: GroupBatch, g: np.ndarray, k: np.ndarray) -> np.ndarray:
        if not b.of_graph(graph):
            return predict(b, g, k)
        at = np.array([rows.get((int(b.start[x]), int(b.end[x])), -1) for x in g], dtype=np.int64)
        cores = np.array([col[int(c)] for c in k], dtype=np.int64)
        out = np.empty(len(g), dtype=np.float64)
        hit = at >= 0
        out[hit] = table[at[hit], cores[hit]]
        if not hit.all():
            miss = ~hit
            out[miss] = predict(b, np.asarray(g)[miss], np.asarray(k)[miss])
        return out

    return CostSource("learned", fn, measures=False)


@register_cost("analytic")
def analytic_cost(hw: HardwareConfig, model=None, seed: int = 0) -> CostSource:
    """The datasheet estimate alone (`analytic.py`): no learning, no device."""

    return CostSource("analytic", lambda b, g, k: analytic_ms(b, g, k, hw.datasheet), measures=False)


@register_cost("oracle", measures=True)
def simulator_cost(hw: HardwareConfig, model=None, seed: int = 0) -> CostSource:
    """The noise-free device (the simulator): the oracle's cost; every pair counts."""
    return CostSource("simulator", lambda b, g, k: Simulator(hw).measure_batch(b, g, k), measures=True)


def table_cost(table: MeasuredTable, hw: HardwareConfig, graph: Graph | None = None) -> CostSource:
    """A device's measured profile standing in for the device: every (span, cores) pair of one
    network (`graph`, when given: a batch of another graph is refused) looked up in `table`; each
    counts as a measurement (it was one, on the part)."""
    device = TableDevice(table, hw, graph)
    return CostSource(device.name, device.measure_batch, measures=True)


@register_cost("device", measures=True)
def device_cost(hw: HardwareConfig, model=None, seed: int = 0) -> CostSource:
    """Device runs as a timer reports them: the simulator with its timing noise, seeded (each call
    draws fresh noise); every pair counts."""
    calls = [0]

    def measure(b: GroupBatch, g: np.ndarray, k: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return Simulator(hw).measure_batch(b, g, k, seed=seed * 1000003 + calls[0])

    return CostSource("device", measure, measures=True)
