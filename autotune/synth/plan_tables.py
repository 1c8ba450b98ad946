"""A network's candidate kernels on a model, and its plans as cells of that table.

The label rounds (autotune/synth/plan_labels.py) and the confirm stage's settle passes
(autotune/synth/settle.py) both plan every network on one model and compare plans kernel by kernel;
this module holds what they share: one prediction per distinct kernel and core count, a plan as
the cells it uses, and the pair a plan's kernel becomes when it is picked for measuring.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from autotune.costmodel.memory import row_keys
from autotune.costmodel.model import LatencyModel
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.planning import strategies
from autotune.planning.costs import memo_cost
from autotune.planning.planner import distinct_features, span_index, spans, unmeasured_doubt

#: The baselines whose plans (on the same model, or the datasheet's for `analytic`) are measured
#: too: once their kernels are measured, the learned DP can only beat them by its own unmeasured
#: kernels, which the next round measures; and a fusion the model overrates gets a measurement.
RIVALS = ("greedy", "fuse-max", "cores-only", "none", "dlfusion", "analytic")

#: A plan's kernel as a cell of `kernel_tables`: (distinct content, core column, first layer, end).
Cell = tuple[int, int, int, int]


@dataclass
class Pick:
    """One (candidate group, core count) pair of a plan: what it would cost to measure, and why."""

    graph: Graph
    i: int
    j: int
    cores: int
    predicted_ms: float
    key: int = field(repr=False)
    tier: int = 0  # 0: the learned plan's, 1: a rival's (with `sure`: one that could beat it), 2: another rival's
    share: float = 0.0  # its predicted time, every use counted, over its plan's predicted total
    timed: int = 0  # how often it was measured when picked (its prediction is then the memory's)


def name_order(graphs: list[Graph]) -> list[int]:
    """The indices of `graphs` by network name (then batch and size): the order every label choice
    visits them in, so that a choice never depends on the order the user listed the networks."""
    return sorted(range(len(graphs)), key=lambda n: (graphs[n].name, graphs[n].batch, len(graphs[n].layers)))


def network_seed(g: Graph) -> int:
    """A network's own part of a random draw's seed, from its name and batch: a draw's factors for a
    network do not depend on where in the list, or beside which others, it is given."""
    return zlib.crc32(f"{g.name}@{g.batch}".encode())


def error_scales(model: LatencyModel) -> tuple[float, float, float]:
    """The model's error on kernels it has not measured, three ways: its validation error's 90th
    percentile (`planner.unmeasured_doubt`, what `sure_plan` adds), its mean, and the normal sigma
    (log scale) with that mean absolute error, which the Thompson draws and the settle calls use."""
    doubt, typical = unmeasured_doubt(model), unmeasured_doubt(model, tail=False)
    return doubt, typical, math.sqrt(math.pi / 2) * math.log1p(typical)


def kernel_tables(g: Graph, hw: HardwareConfig, model: LatencyModel):
    """A network's spans (si, sj), each span's distinct content (inverse), and per distinct content x
    core count: the model's prediction, memory key and whether it is measured; plus the span rows
    (`span_index`). None for a network with no fusable span."""
    si, sj = spans(g, hw)
    if not len(si):
        return None
    X, inverse = distinct_features(g, hw, model, si, sj)
    pred = model.predict(X).reshape(-1, len(hw.core_counts))
    memory = getattr(model, "memory_", None)
    measured = (memory.lookup(X)[0] if memory is not None else np.zeros(len(X), bool)).reshape(pred.shape)
    return si, sj, inverse, pred, row_keys(X).reshape(pred.shape), measured, span_index(si, sj)


def plan_cells(plan, inverse: np.ndarray, at: dict[tuple[int, int], int], ks: np.ndarray) -> list[Cell]:
    """The cell of each kernel of `plan`; an unfusable layer alone has no span."""
    return [(int(inverse[at[(grp.i, grp.j)]]), int(np.flatnonzero(ks == grp.cores)[0]), grp.i, grp.j)
            for grp in plan.groups if (grp.i, grp.j) in at]


def rival_cells(g: Graph, hw: HardwareConfig, model: LatencyModel, net: tuple, rivals: tuple[str, ...]
                ) -> list[list[Cell]]:
    """The `plan_cells` of each rival's plan of `g` on `model`, searching on the predictions
    `kernel_tables` made already (`net`; costs.memo_cost) instead of predicting every candidate again."""
    if not rivals:
        return []
    _, _, inverse, pred, _, _, at = net
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    search = memo_cost(hw, model, g, at, pred[inverse])
    return [plan_cells(strategies.run(name, g, hw, model=model, search=search), inverse, at, ks)
            for name in rivals]


def plan_bound(cells: list[Cell], pred: np.ndarray, measured: np.ndarray, factor: float) -> float:
    """A plan's predicted cost with its unmeasured kernels `factor` times their prediction."""
    return float(sum(pred[d, c] * (1.0 if measured[d, c] else factor) for d, c, _, _ in cells))


def as_pairs(picks: list[Pick]) -> list[tuple[Graph, int, int, list[int]]]:
    """Picks merged per candidate group, in `export_groups(pairs=...)`'s form."""
    merged: dict[tuple[int, int, int], tuple[Graph, int, int, list[int]]] = {}
    for p in picks:
        merged.setdefault((id(p.graph), p.i, p.j), (p.graph, p.i, p.j, []))[3].append(p.cores)
    return list(merged.values())
