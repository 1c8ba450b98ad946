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
    from .features import FEATURE_NAMES, FEATURE_VERSION

    folder = Path(models_dir) / hw_slug(hw_arg)
    if not (folder / "meta.json").is_file():
        raise AutotuneError(f"no trained model for hardware {hw.name!r} in {folder}/; "
                            f"run `make synth train HW={hw_arg}` first")
    return LatencyModel.load(folder, hw, FEATURE_VERSION, list(FEATURE_NAMES))


def main_tune(args) -> int:
    from . import planner

    hw = load_hardware(args.hw)
    graph = load_graph(args.model, batch=args.batch)
    model = load_model(hw, args.hw, args.models_dir) if args.strategy == "learned" else None
    t0 = time.perf_counter()
    p = planner.run_strategy(args.strategy, graph, hw, model=model)
    plan_s = time.perf_counter() - t0
    if args.verify:
        planner.verify(p, graph, hw)
    d = p.to_dict()
    print(plan_table(d))
    print(f"planned {len(graph)} layers in {plan_s:.3f} s ({args.strategy})")
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


def evaluate(graph, hw: HardwareConfig, model: LatencyModel, strategies: list[str] = EVAL_STRATEGIES) -> dict:
    """Simulated latency, planning time and simulator calls of every strategy on one network."""
    from . import planner

    out = {}
    for s in strategies:
        t0 = time.perf_counter()
        p = planner.run_strategy(s, graph, hw, model=model)
        plan_s = time.perf_counter() - t0
        planner.verify(p, graph, hw)
        out[s] = {"ms": p.simulated_ms, "plan_s": round(plan_s, 4), "sim_calls": p.sim_calls,
                  "kernels": len(p.groups)}
    return out


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def run_eval(specs: list[str], hw: HardwareConfig, model: LatencyModel, batch: int | None = None,
             progress: bool = True) -> dict:
    from tqdm import tqdm

    models = []
    for spec in tqdm(specs, desc="eval", unit="net", disable=not progress, leave=False):
        g = load_graph(spec, batch=batch)
        s = evaluate(g, hw, model)
        models.append({"model": Path(spec).stem if spec.endswith(".onnx") else spec, "layers": len(g),
                       "strategies": s, "speedup": s["none"]["ms"] / s["learned"]["ms"],
                       "regret": s["learned"]["ms"] / s["oracle"]["ms"] - 1})
    for m in models:
        s = m["strategies"]
        best = min(BASELINE_STRATEGIES, key=lambda b: s[b]["ms"])
        m["best_baseline"] = best
        m["loss_vs_best_baseline"] = s["learned"]["ms"] / s[best]["ms"] - 1
        m["analytic_regret"] = s["analytic"]["ms"] / s["oracle"]["ms"] - 1
    sp = [m["speedup"] for m in models]
    rg = [m["regret"] for m in models]
    ar = [m["analytic_regret"] for m in models]
    summary = {"geomean_speedup": _geomean(sp), "min_speedup": min(sp), "max_speedup": max(sp),
               "geomean_regret": _geomean([1 + r for r in rg]) - 1, "max_regret": max(rg),
               "analytic_geomean_regret": _geomean([1 + r for r in ar]) - 1, "analytic_max_regret": max(ar),
               "max_loss_vs_best_baseline": max(m["loss_vs_best_baseline"] for m in models),
               "learned_beats_baselines": sum(m["loss_vs_best_baseline"] <= 1e-9 for m in models)}
    return {"hardware": hw.name, "hardware_hash": hw.hash, "models": models, "summary": summary}


def main_eval(args) -> int:
    hw = load_hardware(args.hw)
    model = load_model(hw, args.hw, args.models_dir)
    specs = _model_specs(args.models)
    result = run_eval(specs, hw, model, batch=args.batch)
    print(eval_table(result, EVAL_STRATEGIES))
    n = len(result["models"])
    sm = result["summary"]
    print(f"learned at least as fast as every baseline on {sm['learned_beats_baselines']}/{n} networks "
          f"(worst loss to the best baseline {sm['max_loss_vs_best_baseline']:+.2%}); analytic regret geomean "
          f"{sm['analytic_geomean_regret']:.2%}, max {sm['analytic_max_regret']:.2%}")
    if args.json:
        atomic_write_json(args.json, result)
        print(f"json: {args.json}")
    plot = args.plot or str(Path("reports") / hw_slug(args.hw) / "eval_speedups.png")
    plot_eval(result, EVAL_STRATEGIES, plot)
    print(f"plot: {plot}")
    return 0
