"""`autotune tune` and `autotune eval`: plan with the learned model, compare against oracle and baselines."""

from __future__ import annotations

import math
import time
from pathlib import Path

from .costmodel import LatencyModel
from .errors import AutotuneError
from .fileio import atomic_write_json
from .hardware import HardwareConfig, hw_slug, load_hardware
from .loader import load_graph
from .report import eval_table, plan_table, plot_eval, plot_plan

#: Order of the evaluation table's columns.
EVAL_STRATEGIES = ["none", "cores-only", "fuse-max", "dlfusion", "greedy", "analytic", "learned", "oracle"]
#: Strategies `learned` is compared against (everything but itself and the oracle, its limit).
BASELINE_STRATEGIES = [s for s in EVAL_STRATEGIES if s not in ("learned", "oracle")]


def load_model(hw: HardwareConfig, hw_arg: str, models_dir: str | Path = "models") -> LatencyModel:
    """The trained model for this hardware, or a clear error saying how to make one."""
    from .fileio import recover_folder

    folder = Path(models_dir) / hw_slug(hw_arg)
    try:
        recover_folder(folder)  # a publication killed between its renames leaves the old model aside
    except OSError:
        pass
    if not (folder / "meta.json").is_file():
        raise AutotuneError(f"no trained model for hardware {hw.name!r} in {folder}/; "
                            f"run `make synth train HW={hw_arg}` first")
    return LatencyModel.load(folder, hw)


def main_tune(args) -> int:
    from . import planner
    from . import strategies as strat
    from .fileio import check_output

    check_output(args.out, "file")
    check_output(args.plot, "file")
    hw = load_hardware(args.hw)
    graph = load_graph(args.model, batch=args.batch)
    strategy = args.strategy
    if args.measure_budget is not None:
        if strategy not in ("learned", "learned+measure"):
            raise AutotuneError(f"--measure-budget refines the learned plan; it does not apply to "
                                f"--strategy {strategy}")
        strategy = "learned+measure"
    model = load_model(hw, args.hw, args.models_dir) if strategy.startswith("learned") else None
    t0 = time.perf_counter()
    p = strat.run(strategy, graph, hw, model=model, measure_budget=args.measure_budget or 0)
    plan_s = time.perf_counter() - t0
    if args.verify:
        planner.verify(p, graph, hw)
    d = p.to_dict()
    print(plan_table(d))
    measured = f", {p.sim_calls} device measurements" if strategy == "learned+measure" else ""
    print(f"planned {len(graph)} layers in {plan_s:.3f} s ({strategy}{measured})")
    if args.out:
        atomic_write_json(args.out, d)
        print(f"plan: {args.out}")
    if args.plot:
        plot_plan(d, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _model_specs(arg: str) -> list[str]:
    from . import zoo

    if arg == "all":
        return zoo.names()
    specs = [s.strip() for s in arg.split(",") if s.strip()]
    if not specs:
        raise AutotuneError("--models is empty: give 'all' or comma-separated zoo names and .onnx paths")
    return specs


def evaluate(graph, hw: HardwareConfig, model: LatencyModel, strategies: list[str] = EVAL_STRATEGIES,
             measure_budget: int = 0) -> dict:
    """Simulated latency, planning time and simulator calls of every strategy on one network."""
    from . import planner
    from . import strategies as strat

    out = {}
    for s in strategies:
        t0 = time.perf_counter()
        p = strat.run(s, graph, hw, model=model, measure_budget=measure_budget)
        plan_s = time.perf_counter() - t0
        planner.verify(p, graph, hw)
        out[s] = {"ms": p.simulated_ms, "plan_s": round(plan_s, 4), "sim_calls": p.sim_calls,
                  "kernels": len(p.groups)}
    return out


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def run_eval(specs: list[str], hw: HardwareConfig, model: LatencyModel, batch: int | None = None,
             progress: bool = True, strategies: list[str] | None = None, measure_budget: int | None = None) -> dict:
    """Every strategy on every network; with `measure_budget`, `learned+measure` as well."""
    from tqdm import tqdm

    strategies = list(strategies or EVAL_STRATEGIES)
    if measure_budget is not None and "learned+measure" not in strategies:
        strategies.insert(strategies.index("learned") + 1, "learned+measure")
    baselines = [b for b in BASELINE_STRATEGIES if b in strategies]
    models = []
    for spec in tqdm(specs, desc="eval", unit="net", disable=not progress, leave=False):
        g = load_graph(spec, batch=batch)
        s = evaluate(g, hw, model, strategies, measure_budget or 0)
        models.append({"model": Path(spec).stem if spec.endswith(".onnx") else spec, "layers": len(g),
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
        summary["learned+measure_max_sim_calls"] = max(m["strategies"]["learned+measure"]["sim_calls"] for m in models)
    if baselines:
        summary["max_loss_vs_best_baseline"] = max(m["loss_vs_best_baseline"] for m in models)
        summary["learned_beats_baselines"] = sum(m["loss_vs_best_baseline"] <= 1e-9 for m in models)
    return {"hardware": hw.name, "hardware_hash": hw.hash, "strategies": strategies, "models": models,
            "summary": summary}


def main_eval(args) -> int:
    from .fileio import check_output

    check_output(args.json, "file")
    check_output(args.plot, "file")
    hw = load_hardware(args.hw)
    model = load_model(hw, args.hw, args.models_dir)
    specs = _model_specs(args.models)
    if args.measure_budget is not None and args.measure_budget < 0:
        raise AutotuneError(f"--measure-budget must be at least 0, got {args.measure_budget}")
    result = run_eval(specs, hw, model, batch=args.batch, measure_budget=args.measure_budget)
    print(eval_table(result, result["strategies"]))
    n = len(result["models"])
    sm = result["summary"]
    print(f"learned at least as fast as every baseline on {sm['learned_beats_baselines']}/{n} networks "
          f"(worst loss to the best baseline {sm['max_loss_vs_best_baseline']:+.2%}); analytic regret geomean "
          f"{sm['analytic_geomean_regret']:.2%}, max {sm['analytic_max_regret']:.2%}")
    if args.measure_budget is not None:
        print(f"learned+measure (at most {args.measure_budget} device measurements per network, at most "
              f"{sm['learned+measure_max_sim_calls']} used): regret geomean "
              f"{sm['learned+measure_geomean_regret']:.2%}, max {sm['learned+measure_max_regret']:.2%}")
    if args.json:
        atomic_write_json(args.json, result)
        print(f"json: {args.json}")
    plot = args.plot or str(Path("reports") / hw_slug(args.hw) / "eval_speedups.png")
    plot_eval(result, result["strategies"], plot)
    print(f"plot: {plot}")
    return 0
