"""How few labels the cost model needs: zoo accuracy and plan regret against the label budget,
Sobol against active sampling over seeds, and regret against tune-time measurements.

For each budget and seed, `autotune synth --budget N --sampling S` makes a dataset (zoo groups are
never labelled into it), a model is trained on it, and the zoo is planned with it. Then, with the
model trained at --measure-at labels, `learned+measure` plans spend M = 0, 10, 25, 50, 100 device
measurements per network. Prints the tables and writes the numbers (CSV) and curves (PNG) to --out.

Usage: python bench/bench_label_budget.py [--hw mlu100] [--budgets 250,500,1000,2000,4000,16000]
           [--seeds 0,1,2] [--full] [--measure-at 2000] [--out reports/mlu100/label_budget]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from autotune.cli.report import format_table
from autotune.costmodel.feature_cache import dataset_features
from autotune.costmodel.model import LatencyModel
from autotune.costmodel.training import accuracy
from autotune.data.dataset import read_dataset
from autotune.fileio import atomic_write, atomic_write_text
from autotune.frontends import zoo
from autotune.hardware.config import hw_slug, load_hardware
from autotune.planning.evaluation import run_eval

MEASURE = (0, 10, 25, 50, 100)


def one_run(hw, tmp: Path, budget: int, sampling: str, seed: int, zoo_eval: tuple, jobs: int) -> tuple[dict, object]:
    """Dataset, model, zoo accuracy and regret for one (budget, sampling, seed); `zoo_eval` is the
    zoo's (features, latencies), the same evaluation set for every run."""
    from autotune.synth.pipeline import run

    folder = tmp / f"{sampling}-{budget}-{seed}"
    t0 = time.perf_counter()
    run(hw, folder, budget, seed, jobs=jobs, progress=False, zoo_models=[], force=True, sampling=sampling)
    synth_s = time.perf_counter() - t0
    ds = read_dataset(folder, hw)
    X, _ = dataset_features(ds, hw)
    t0 = time.perf_counter()
    m = LatencyModel(random_state=seed).fit(X, ds.rows["latency_ms"].to_numpy(), groups=ds.rows["group_id"].to_numpy())
    fit_s = time.perf_counter() - t0
    acc = accuracy(m.predict(zoo_eval[0]), zoo_eval[1])
    ev = run_eval(zoo.names(), hw, m, progress=False, strategies=["none", "learned", "oracle"])
    shutil.rmtree(folder, ignore_errors=True)
    return {"budget": budget, "sampling": sampling, "seed": seed, "labels": len(X), "within10": acc["within10"],
            "mape": acc["mape"], "regret_geomean": ev["summary"]["geomean_regret"],
            "regret_worst": ev["summary"]["max_regret"], "synth_s": synth_s, "fit_s": fit_s}, m


def measure_curve(hw, model, seed: int) -> list[dict]:
    """Regret of learned+measure on every zoo network for each tune-time measurement budget."""
    from autotune.planning import strategies
    from autotune.planning.planner import verify

    rows = []
    for name in zoo.names():
        g = zoo.build(name)
        oracle = strategies.run("oracle", g, hw).predicted_ms
        for M in MEASURE:
            p = verify(strategies.run("learned+measure", g, hw, model=model, measure_budget=M,
                                            measure_seed=seed), g, hw)
            rows.append({"seed": seed, "model": name, "M": M, "device_calls": p.device_calls,
                         "regret": p.device_ms / oracle - 1})
    return rows


def plot(df: pd.DataFrame, meas: pd.DataFrame, hw_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.6))
    colors = {"sobol": "tab:blue", "active": "tab:orange"}
    for sampling, d in df.groupby("sampling", sort=False):
        c = colors.get(sampling)
        agg = d.groupby("labels").agg(w10=("within10", "mean"), g=("regret_geomean", "mean"),
                                      gmin=("regret_geomean", "min"), gmax=("regret_geomean", "max"),
                                      worst=("regret_worst", "mean"))
        ax[0].plot(agg.index, 100 * agg["w10"], marker="o", color=c, label=sampling)
        ax[1].plot(agg.index, 100 * agg["g"], marker="o", color=c, label=f"{sampling} geomean")
        ax[1].fill_between(agg.index, 100 * agg["gmin"], 100 * agg["gmax"], color=c, alpha=0.2)
        ax[1].plot(agg.index, 100 * agg["worst"], marker="s", ls="--", color=c, label=f"{sampling} worst network")
    for a in ax[:2]:
        a.set_xscale("log")
        a.set_xlabel("labels (device measurements for training)")
        a.legend(fontsize=8)
    ax[0].set(ylabel="zoo pairs within 10% (%)", title=f"{hw_name}: accuracy against labels")
    ax[1].set(ylabel="regret vs oracle (%)", title="plan regret against labels (mean of seeds; band: min-max)")
    if len(meas):
        agg = meas.groupby("M")["regret"]
        ax[2].plot(agg.mean().index, 100 * agg.mean(), marker="o", label="mean over networks and seeds")
        ax[2].plot(agg.max().index, 100 * agg.max(), marker="s", ls="--", label="worst network")
        ax[2].axhline(1.0, color="k", lw=0.6)
        ax[2].set(xlabel="measurements at tune time, per network", ylabel="regret vs oracle (%)",
                  title="learned+measure: regret against measurements")
        ax[2].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="mlu100")
    ap.add_argument("--budgets", default="250,500,1000,2000,4000,16000")
    ap.add_argument("--samplings", default="sobol,active")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--full", action="store_true", help="also the default dataset (Sobol) per seed")
    ap.add_argument("--measure-at", type=int, default=2000, help="labels of the model used for the M curve")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from the CSVs in --out")
    a = ap.parse_args()
    from autotune.costmodel.feature_cache import compute_features
    from autotune.synth.pipeline import default_budget, zoo_frame

    hw = load_hardware(a.hw)
    out = Path(a.out or f"reports/{hw_slug(a.hw)}/label_budget")
    if a.replot:
        plot(pd.read_csv(out / "label_budget.csv"), pd.read_csv(out / "measure_budget.csv"), hw.name,
             out / "label_budget.png")
        return
    budgets = [int(b) for b in a.budgets.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    samplings = a.samplings.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="label_budget-"))
    try:
        zoo_rows = zoo_frame(hw)
        zoo_eval = (compute_features(zoo_rows, hw), zoo_rows["latency_ms"].to_numpy())
        rows, meas = [], []
        plan = [(b, s) for b in budgets for s in samplings] + ([(default_budget(hw), "sobol")] if a.full else [])
        for seed in seeds:
            for budget, sampling in plan:
                r, model = one_run(hw, tmp, budget, sampling, seed, zoo_eval, a.jobs)
                rows.append(r)
                print(f"  seed {seed} {sampling:6s} {budget:6d} labels: within 10% {r['within10']:.1%}, regret "
                      f"{r['regret_geomean']:.2%} / {r['regret_worst']:.2%} (synth {r['synth_s']:.0f} s, "
                      f"fit {r['fit_s']:.0f} s)", flush=True)
                if budget == a.measure_at and sampling == samplings[-1]:
                    meas += measure_curve(hw, model, seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    df, md = pd.DataFrame(rows), pd.DataFrame(meas)
    table = df.groupby(["labels", "sampling"], sort=True).agg(
        within10=("within10", "mean"), regret_geomean=("regret_geomean", "mean"),
        regret_geomean_max=("regret_geomean", "max"), regret_worst=("regret_worst", "mean"),
        regret_worst_max=("regret_worst", "max")).reset_index()
    print(f"{hw.name}: mean over seeds {seeds} (max over seeds in brackets)")
    print(format_table([[int(r.labels), r.sampling, f"{r.within10:.1%}",
                         f"{r.regret_geomean:.2%} ({r.regret_geomean_max:.2%})",
                         f"{r.regret_worst:.2%} ({r.regret_worst_max:.2%})"] for r in table.itertuples()],
                       ["labels", "sampling", "within 10%", "regret geomean", "regret worst network"],
                       right={0, 2, 3, 4}))
    if len(md):
        mt = md.groupby("M").agg(mean=("regret", "mean"), worst=("regret", "max"), calls=("device_calls", "max"),
                                 within1=("regret", lambda r: float((r <= 0.01).mean()))).reset_index()
        print(f"learned+measure with the {a.measure_at}-label {samplings[-1]} model (all networks, seeds):")
        print(format_table([[int(r.M), f"{r.mean:.2%}", f"{r.worst:.2%}", f"{r.within1:.0%}", int(r.calls)]
                            for r in mt.itertuples()],
                           ["M", "regret mean", "regret worst", "networks within 1%", "max device_calls"],
                           right={0, 1, 2, 3, 4}))
    atomic_write_text(out / "label_budget.csv", df.to_csv(index=False))
    atomic_write_text(out / "measure_budget.csv", md.to_csv(index=False))
    plot(df, md, hw.name, out / "label_budget.png")
    print(f"wrote {out}/label_budget.csv, measure_budget.csv, label_budget.png (each row: mean of {len(seeds)} seeds)")


if __name__ == "__main__":
    main()
