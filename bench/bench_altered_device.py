"""A device the code has never seen: a preset's `device:` values scaled by random factors, then
the whole pipeline (synth -> train -> eval) on it, against the oracle and the analytic baseline.

Every number in `device:` is multiplied by its own factor drawn log-uniformly from [lo, hi]
(seeded); the datasheet is kept, so the model sees the same features and must learn the new
behaviour from labels alone. Prints the factors, the model's accuracy on the zoo's groups and
the plan table; writes the altered YAML, eval JSON and a plot under --out.

With --via-profile the labels take the path a real device's would: export-groups, measure (the
simulator playing the altered device, as a remote chip), write the CSV, import-profile, train.
With --learn N they come from `autotune learn`'s loop instead (N labels: a first share, then rounds
on the zoo plans' kernels), the model seeing only the datasheet: a part never shown to the code,
scored as issue 27 scores the black boxes.

Usage: python bench/bench_altered_device.py [--base mlu100] [--seed 1] [--lo 0.5] [--hi 2]
           [--groups 16000] [--out reports/altered] [--via-profile | --learn 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from autotune.cli.report import format_table
from autotune.fileio import atomic_write_json, atomic_write_text
from autotune.hardware.config import dump_hardware, load_hardware, parse_hardware


def scaled_device(base: str, seed: int, lo: float, hi: float) -> tuple[dict, dict[str, float]]:
    """The base config as a dict with every device number scaled; and the factor of each path."""
    data = load_hardware(base).model_dump()
    rng = np.random.default_rng(seed)
    factors: dict[str, float] = {}

    def walk(node: dict, prefix: str) -> None:
        for key in sorted(node):
            v = node[key]
            if isinstance(v, dict):
                walk(v, f"{prefix}.{key}")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
                node[key] = v * f
                factors[f"{prefix}.{key}"] = f

    walk(data["device"], "device")
    data["name"] = f"{base}-altered-s{seed}"
    data["description"] = f"{base} with device values scaled by factors in [{lo}, {hi}] (seed {seed})"
    return data, factors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="mlu100")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lo", type=float, default=0.5)
    ap.add_argument("--hi", type=float, default=2.0)
    ap.add_argument("--groups", type=int, default=16000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="reports/altered")
    ap.add_argument("--via-profile", action="store_true", help="labels through export/measure/import-profile")
    ap.add_argument("--learn", type=int, default=None, metavar="N",
                    help="N labels from the learn loop on the zoo's plans, the model given the datasheet only")
    ap.add_argument("--threads", type=int, default=1, help="XGBoost threads (--learn)")
    a = ap.parse_args()
    from autotune.costmodel.training import train
    from autotune.errors import AutotuneError
    from autotune.synth.pipeline import run

    data, factors = scaled_device(a.base, a.seed, a.lo, a.hi)
    try:
        hw = parse_hardware(data, data["name"])
    except AutotuneError as err:  # a scale that leaves a field's range: say which
        print(f"altered config is invalid: {err}", file=sys.stderr)
        return 2
    out = Path(a.out) / hw.name
    yaml_path = atomic_write_text(out / f"{hw.name}.yaml", dump_hardware(hw))
    print(f"{hw.name}: {len(factors)} device values scaled; config {yaml_path}")
    print(format_table([[p, f"{f:.2f}"] for p, f in factors.items()], ["device value", "factor"], right={1}))
    t0 = time.perf_counter()
    if a.learn:
        res_model, used = learned(hw, out, a.learn, a.seed, a.threads)
        synth_s, train_s = time.perf_counter() - t0, 0.0
        print(f"{used} labels from the learn loop in {synth_s:.0f} s")
        return report(hw, out, factors, res_model, None, synth_s, train_s)
    if a.via_profile:
        from autotune.synth.measure import measure
        from autotune.synth.profiles import export_groups, import_profile, write_profile

        # the same label count as the synth path: --groups labels, every group at every core count
        export_groups(hw, out / "groups", n_groups=a.groups // len(hw.core_counts), seed=0, force=True,
                      progress=True)
        frame, _ = measure(out / "groups", "simulator", hw, seed=a.seed)
        write_profile(out / "groups" / "measured.csv", frame)
        import_profile(out / "groups" / "measured.csv", hw, out / "data", force=True)
    else:
        run(hw, out / "data", a.groups, 0, jobs=a.jobs, force=True, progress=True)
    synth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = train(hw, out / "data", out / "models" / hw.name, progress=False)
    train_s = time.perf_counter() - t0
    return report(hw, out, factors, res.model, res.meta["metrics"], synth_s, train_s)


def learned(hw, out: Path, budget: int, seed: int, threads: int):
    """The learn loop's model for the altered part: it plans and learns on the datasheet alone, and
    each export is measured by the simulator playing the part, with fresh timing noise per call."""
    import itertools

    from autotune.frontends import zoo
    from autotune.frontends.loader import load_graph
    from autotune.synth.measure import measure
    from autotune.synth.plan_labels import learn_part
    from autotune.synth.profiles import write_profile

    sheet = hw.model_copy(update={"device": None})
    calls = itertools.count()

    def run(folder: Path) -> Path:
        frame, _ = measure(folder, "simulator", hw, seed=seed * 100_003 + next(calls))
        write_profile(folder / "measured.csv", frame)
        return folder / "measured.csv"

    res = learn_part(sheet, run, out / f"learn-{budget}", budget, [load_graph(n) for n in zoo.names()], seed=seed,
                     threads=threads, log=lambda m: print(f"  {hw.name} {budget}: {m}", flush=True))
    return res.model, res.labels


def zoo_accuracy(hw, model) -> dict:
    """The model against the noise-free simulator on every candidate (group, cores) pair of the zoo."""
    from autotune.frontends import zoo
    from autotune.frontends.loader import load_graph
    from autotune.planning.costs import make_cost
    from autotune.planning.planner import cost_table, spans

    rel = []
    for net in zoo.names():
        g = load_graph(net)
        si, sj = spans(g, hw)
        p = cost_table(g, hw, make_cost("learned", hw, model), si, sj)
        y = cost_table(g, hw, make_cost("oracle", hw), si, sj)
        rel.append(np.abs(p / y - 1).ravel())
    r = np.concatenate(rel)
    return {"within10": float((r <= 0.10).mean()), "mape": float(r.mean()), "pairs": len(r)}


def report(hw, out: Path, factors: dict, model, metrics: dict | None, synth_s: float, train_s: float) -> int:
    """Accuracy on the zoo's candidates and every strategy's plans against the oracle, printed and saved."""
    from autotune.frontends import zoo
    from autotune.planning.evaluation import EVAL_STRATEGIES, run_eval

    result = run_eval(zoo.names(), hw, model, progress=False)
    s = result["summary"]
    mt = metrics or {}  # train's own figures; the learn loop's model is scored here on the zoo
    z = mt.get("zoo") or mt.get("validation") or zoo_accuracy(hw, model)
    what = "held-out measured pairs" if z is mt.get("validation") else "zoo pairs"
    print(f"labels {synth_s:.0f} s, train {train_s:.0f} s; {what} within 10%: {z['within10']:.1%} "
          f"(MAPE {z['mape']:.2%})")
    rows = [[m["model"], f"{m['strategies']['learned']['ms']:.3f}", f"{m['strategies']['analytic']['ms']:.3f}",
             f"{m['strategies']['oracle']['ms']:.3f}", f"{m['regret']:.2%}", f"{m['analytic_regret']:.2%}",
             f"{m['loss_vs_best_baseline']:+.2%}"] for m in result["models"]]
    print(format_table(rows, ["model", "learned ms", "analytic ms", "oracle ms", "regret", "analytic regret",
                              "vs best baseline"], right=set(range(1, 7))))
    print(f"learned regret geomean {s['geomean_regret']:.2%}, worst {s['max_regret']:.2%}; analytic geomean "
          f"{s['analytic_geomean_regret']:.2%}, worst {s['analytic_max_regret']:.2%}; worst loss to a baseline "
          f"{s['max_loss_vs_best_baseline']:+.2%}")
    result["factors"] = factors
    result["accuracy"] = {k: z[k] for k in ("mape", "within5", "within10", "rank_corr") if k in z}
    atomic_write_json(out / "eval.json", result)
    from autotune.cli.plots import plot_eval

    plot_eval(result, EVAL_STRATEGIES, out / "eval_speedups.png")
    print(f"wrote {out}/eval.json, {out}/eval_speedups.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
