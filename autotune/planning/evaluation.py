"""Evaluation: every strategy on a set of networks, scored by the device (noise-free simulator) against the oracle."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

from autotune.costmodel.model import LatencyModel
from autotune.errors import AutotuneError
from autotune.frontends.loader import dim_names, load_graph
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.planning import planner
from autotune.planning import strategies as strat
from autotune.planning.costs import MeasuredTable, table_cost

#: Order of the evaluation table's columns.
EVAL_STRATEGIES = ["none", "cores-only", "fuse-max", "dlfusion", "greedy", "analytic", "learned", "oracle"]
#: Strategies `learned` is compared against (everything but itself and the oracle, its limit).
BASELINE_STRATEGIES = [s for s in EVAL_STRATEGIES if s not in ("learned", "oracle")]


def evaluate(graph: Graph, hw: HardwareConfig, model: LatencyModel | None = None,
             strategies: list[str] = EVAL_STRATEGIES, measure_budget: int = 0, table: MeasuredTable | None = None
             ) -> dict:
    """Per strategy on one network: the plan's latency on the device (noise-free simulator, or the
    measured `table` of the network's candidates, after planning), planning time, device
    measurements made while planning (`device_calls`) and kernels. Without a model, the strategies
    that need one are left out."""

    out = {}
    for s in strategies:
        if model is None and strat.get(s).needs_model:
            continue
        t0 = time.perf_counter()
        p = strat.run(s, graph, hw, model=model, measure_budget=measure_budget, table=table)
        plan_s = time.perf_counter() - t0
        planner.verify(p, graph, hw, None if table is None else table_cost(table, hw))
        out[s] = {"ms": p.device_ms, "plan_s": round(plan_s, 4), "device_calls": p.device_calls,
                  "kernels": len(p.groups)}
        if s == "learned":
            n_out, _, nov = planner.outside_training(p, graph, hw, model)
            out[s]["kernels_outside_training"] = n_out
            if nov == nov:  # not nan: the model records its coverage
                out[s]["novelty"] = round(nov, 3)
    return out


def _geomean(xs: list[float]) -> float:
    """Geometric mean of non-negative values: 0 with a 0 among them, inf with an inf (a plan scored on
    a measured table holding a kernel the part could not run), NaN with both or none."""
    zero, inf = any(x == 0 for x in xs), any(math.isinf(x) for x in xs)
    if not xs or (zero and inf):
        return float("nan")
    if zero or inf:
        return 0.0 if zero else math.inf
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def check_dims(specs: Sequence[str | Graph], dims: dict[str, int] | None) -> None:
    """One --dim sizes every network that has it, but a name none of them has is a typo: one line."""
    names = [s for s in specs if not isinstance(s, Graph)]
    if not dims or not names:
        return
    taken = set().union(*(dim_names(s) for s in names))
    unknown = sorted(set(dims) - taken)
    if unknown:
        raise AutotuneError(f"--dim {unknown[0]}: none of the networks has a dimension of that name"
                            + (f" (they have: {', '.join(sorted(taken))})" if taken else ""))


def run_eval(specs: Sequence[str | Graph], hw: HardwareConfig, model: LatencyModel, batch: int | None = None,
             progress: bool = False, strategies: list[str] | None = None, measure_budget: int | None = None,
             dims: dict[str, int] | None = None, strict: bool = False,
             tables: Sequence[MeasuredTable] | None = None) -> dict:
    """Every strategy on every network (zoo names, .onnx paths or Graphs); with `measure_budget`,
    `learned+measure` as well. `dims` sizes each network that has such a dimension (e.g. seq).
    With `tables` (one per spec, in order), plans are scored on those measurements and the oracle
    is the DP on them, not on the simulator. The summary compares `learned` with the oracle and
    the baselines."""
    from tqdm import tqdm

    strategies = list(strategies or EVAL_STRATEGIES)
    if tables is not None and len(tables) != len(specs):
        raise ValueError(f"{len(tables)} measured tables for {len(specs)} networks")
    if measure_budget is not None and "learned+measure" not in strategies:
        strategies.insert(strategies.index("learned") + 1, "learned+measure")
    baselines = [b for b in BASELINE_STRATEGIES if b in strategies]
    check_dims(specs, dims)
    models = []
    for n, spec in enumerate(tqdm(specs, desc="eval", unit="net", disable=not progress, leave=False)):
        g = spec if isinstance(spec, Graph) else load_graph(spec, batch=batch, strict=strict, dims=dims,
                                                            lenient_dims=True)
        s = evaluate(g, hw, model, strategies, measure_budget or 0, None if tables is None else tables[n])
        name = g.name if isinstance(spec, Graph) else Path(spec).stem if spec.endswith(".onnx") else spec
        models.append({"model": name, "layers": len(g),
                       "strategies": s, "speedup": s["none"]["ms"] / s["learned"]["ms"],
                       "regret": s["learned"]["ms"] / s["oracle"]["ms"] - 1})
    for m in models:
        s = m["strategies"]
        if baselines:
            best = min(baselines, key=lambda b: s[b]["ms"])
            m["best_baseline"] = best
            m["loss_vs_best_baseline"] = s["learned"]["ms"] / s[best]["ms"] - 1
        for extra in ("analytic", "learned+measure"):
            if extra in s:
                m[f"{extra}_regret"] = s[extra]["ms"] / s["oracle"]["ms"] - 1
    sp = [m["speedup"] for m in models]
    rg = [m["regret"] for m in models]
    summary = {"geomean_speedup": _geomean(sp), "min_speedup": min(sp), "max_speedup": max(sp),
               "geomean_regret": _geomean([1 + r for r in rg]) - 1, "max_regret": max(rg)}
    for extra in ("analytic", "learned+measure"):
        if extra in strategies:
            xr = [m[f"{extra}_regret"] for m in models]
            summary[f"{extra}_geomean_regret"] = _geomean([1 + r for r in xr]) - 1
            summary[f"{extra}_max_regret"] = max(xr)
    if "learned+measure" in strategies:
        summary["measure_budget"] = measure_budget
        summary["learned+measure_max_device_calls"] = max(m["strategies"]["learned+measure"]["device_calls"]
                                                          for m in models)
    if baselines:
        summary["max_loss_vs_best_baseline"] = max(m["loss_vs_best_baseline"] for m in models)
        summary["learned_beats_baselines"] = sum(m["loss_vs_best_baseline"] <= 1e-9 for m in models)
    return {"hardware": hw.name, "hardware_hash": hw.hash, "strategies": strategies, "models": models,
            "summary": summary,
            "scored_on": "simulator" if tables is None else "measured: " + ", ".join(t.source for t in tables)}
