"""`learned+measure`: refine the learned plan with a few device measurements at tune time.

DLFusion's "reduced brute force", done with a model. The DP plans on the model; the device
measures the plan's groups; measurements that contradict the model correct it; the DP re-plans;
and so on while the budget lasts. Device runs are noisy and heavy-tailed, so a pair is measured
several times, and a median within what model error and run noise explain changes nothing:
choosing among near-equal plans by noisy runs would pick the luckiest, not the best. What was
tried and rejected (measured on the zoo, docs/costmodel.md): trusting every measurement in
proportion to its variance, a pure run-noise threshold, a per-network bias shift, and spreading
corrections to similar pairs by a kernel over features; each made plans worse than the model
alone, by making measured and unmeasured alternatives compare unfairly.
"""

from __future__ import annotations

import numpy as np

from autotune.errors import AutotuneError
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.ir.tables import GroupBatch
from autotune.planning.costs import CostSource, model_predictor
from autotune.planning.planner import Plan, cost_table, dp_from_table, span_index, spans

#: Device runs per measured (group, cores) pair: their median resists timing outliers.
MEASURE_REPEATS = 3


def measured_plan(graph: Graph, hw: HardwareConfig, model, budget: int, device: CostSource,
                  optimism: float | None = None, repeats: int = MEASURE_REPEATS,
                  cost: CostSource | None = None) -> Plan:
    """The learned plan refined by at most `budget` measurements on `device` (all counted there).

    Each step measures (`repeats` runs each) the groups of the current plan not measured yet,
    largest first. Once the plan is all measured, the search explores: unmeasured pairs count
    `optimism` cheaper than predicted (default: the model's validation error), so alternatives the
    model may overrate get measured too; it stops when even that plan is measured. `cost` replaces
    the model's predictions (any CostSource with the model's feature rows' meaning; `model` then
    only lends its validation error)."""

    if budget < 0:
        raise AutotuneError(f"--measure-budget must be at least 0, got {budget}")
    val_mae = float(getattr(model, "val_mae_log_", None) or 0.03)
    val_mae = val_mae if np.isfinite(val_mae) else 0.03  # a model saved without its validation error
    val_err = val_mae * np.sqrt(np.pi / 2)  # mean absolute error -> standard deviation
    optimism = float(np.expm1(val_mae)) if optimism is None else optimism
    si, sj = spans(graph, hw)
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    source = cost if cost is not None else CostSource("learned", model_predictor(model, hw), measures=False)
    pred = cost_table(graph, hw, source, si, sj)
    runs: dict[tuple[int, int], np.ndarray] = {}
    k_index = {int(k): c for c, k in enumerate(ks)}
    span_at = span_index(si, sj)
    table = pred.copy()
    left = budget

    def unmeasured(t: np.ndarray) -> list[tuple[int, int]]:
        p = dp_from_table(graph, hw, si, sj, t, "learned+measure")
        todo = [(span_at[(g.i, g.j)], k_index[g.cores]) for g in p.groups]
        return sorted((x for x in todo if x not in runs), key=lambda x: -table[x])  # most at stake first

    while left >= repeats:
        todo = unmeasured(table)
        if not todo:
            explore = np.where(_measured_mask(runs, table.shape), table, table * (1.0 - optimism))
            todo = unmeasured(explore)
        todo = todo[:left // repeats]  # whole sets of repeats only: a lone run proves little
        if not todo:
            break
        groups = [graph.group(int(si[s]), int(sj[s])) for s, _ in todo for _ in range(repeats)]
        ms = device(GroupBatch.build(groups), np.arange(len(groups)), np.repeat(ks[[c for _, c in todo]], repeats))
        left -= len(groups)
        for t, m in zip(todo, ms.reshape(len(todo), repeats)):
            runs[t] = np.log(m)
        table = _corrected(pred, runs, val_err)
    return dp_from_table(graph, hw, si, sj, table, "learned+measure")


def _measured_mask(runs: dict, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for t in runs:
        mask[t] = True
    return mask


def _corrected(pred: np.ndarray, runs: dict[tuple[int, int], np.ndarray], val_err: float) -> np.ndarray:
    """Costs to plan with: the predictions, except for measured pairs whose median run departs
    from the prediction by more than twice what the model's error and run noise together explain;
    those take the variance-weighted mean of median and prediction. The model's error is its
    validation error (std, log scale) less the run noise that validation labels carry too."""
    noise = _run_spread(runs)
    model_err = float(np.sqrt(max(val_err**2 - noise**2, (val_err / 3) ** 2)))
    out = pred.copy()
    for t, logs in runs.items():
        med, lp, n = float(np.median(logs)), float(np.log(pred[t])), len(logs)
        if abs(med - lp) > 2.0 * np.sqrt(model_err**2 + noise**2 / n):
            w = model_err**2 / (model_err**2 + noise**2 / n)
            out[t] = np.exp(w * med + (1 - w) * lp)
    return out


def _run_spread(runs: dict[tuple[int, int], np.ndarray]) -> float:
    """Spread (log scale) of one device run around its pair's median, from the repeats so far
    (a robust MAD, x1.2 as a median of few runs understates it); 3% before there are enough."""
    dev = np.concatenate([logs - np.median(logs) for logs in runs.values() if len(logs) > 1] or [np.zeros(0)])
    if len(dev) < 4:
        return 0.03
    return float(max(1.4826 * np.median(np.abs(dev)) * 1.2, 1e-3))
