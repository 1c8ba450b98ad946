"""The cost model on devices we did not write: the shared black boxes, known by datasheet and measurements.

For each black box (../shared/blackbox) and label budget: `learn` (autotune/synth/plan_labels.py) spends the
budget through the black box (timing noise on): synthetic groups, then rounds on the kernels the
networks' plans use, each export -> measure -> import-profile -> train; `--labels synthetic` spends
it all on synthetic groups instead. Then every strategy plans the zoo networks and is scored on the
black box's noise-free measurements of every candidate group, the oracle being the DP on those
measurements. Prints accuracy on the zoo's candidate pairs and regret tables, writes a plot and a JSON.

    python bench/bench_blackbox.py                      # 2,000 and 16,000 labels, 21 networks, 3 devices (26 min)
    python bench/bench_blackbox.py --budgets 2000       # 2,000 labels only (about 10 min)
    python bench/bench_blackbox.py --full               # also 96,000
    python bench/bench_blackbox.py --devices cluster32 --budgets 2000 --networks resnet18,vit_b16

Devices run side by side, one process each, as many at once as `--jobs` (default: one per core);
the times above are a 2-core machine with a fresh `--work` (the zoo's tables measured too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BLACKBOX = ROOT.parent / "shared" / "blackbox"
#: A plans run's networks, one a line (bench_confirm_replay.py reads it).
NETWORKS_FILE = "networks.txt"
sys.path.insert(0, str(ROOT))

from autotune.costmodel.model import LatencyModel  # noqa: E402
from autotune.costmodel.training import train  # noqa: E402
from autotune.fileio import atomic_write_text  # noqa: E402
from autotune.frontends import zoo  # noqa: E402
from autotune.frontends.loader import load_graph  # noqa: E402
from autotune.hardware.config import HardwareConfig, load_hardware  # noqa: E402
from autotune.planning.costs import MeasuredTable, make_cost  # noqa: E402
from autotune.planning.evaluation import BASELINE_STRATEGIES, EVAL_STRATEGIES, run_eval  # noqa: E402
from autotune.planning.planner import cost_table, spans  # noqa: E402
from autotune.synth.plan_labels import NETWORK_SHARE, SYNTH_AT_MOST, SYNTH_SHARE, ZOO_SHARE, learn_part  # noqa: E402
from autotune.synth.profiles import export_groups, import_profile, measured_table, write_profile  # noqa: E402


def blackbox():
    """The shared black-box module (its CLI's functions; the devices stay unread)."""
    if not (BLACKBOX / "blackbox.py").is_file():
        raise SystemExit(f"no black boxes at {BLACKBOX}")
    sys.path.insert(0, str(BLACKBOX))
    import blackbox as bb  # type: ignore[import-not-found]

    return bb


def measure(bb, dev, folder: Path, out: Path, noise: bool, seed: int) -> None:
    import pandas as pd

    rows = bb.measure_rows(folder, dev, seed=seed, noise=noise)
    frame = pd.DataFrame([(g, c, v) for g, c, _, v in rows], columns=["group_id", "cores", "latency_ms"])
    write_profile(out, frame)


def device_hw(bb, name: str, work: Path) -> tuple[object, HardwareConfig]:
    dev = bb.load_device(name)
    path = work / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bb.datasheet_yaml(dev))
    return dev, load_hardware(str(path))


def noisy_measure(bb, dev, seed: int, calls_before: int = 0) -> Callable[[Path], Path]:
    """`learn_part`'s measuring callable on the black box: a real timer's noise is fresh at every
    call, drawn from the run's seed and the call's number (`calls_before` calls made already: a
    replay of a run's later stage draws what the run drew)."""
    calls = itertools.count(calls_before)

    def run(folder: Path) -> Path:
        measure(bb, dev, folder, folder / "measured.csv", noise=True, seed=seed * 100_003 + next(calls))
        return folder / "measured.csv"

    return run


def zoo_tables(bb, dev, hw: HardwareConfig, nets: list[str], work: Path) -> list[MeasuredTable]:
    """Each network's candidates exported and measured noise-free on the device (cached in `work`)."""
    out = []
    for net in nets:
        folder = work / "zoo" / net
        if not (folder / "measured.csv").is_file():
            export_groups(hw, folder, model=net, force=True)
            measure(bb, dev, folder, folder / "measured.csv", noise=False, seed=0)
        out.append(measured_table(folder, hw)[1])
    return out


def trained(bb, dev, hw: HardwareConfig, budget: int, seed: int, work: Path, threads: int,
            params: dict, nets: list[str], labels: str, network_share: float | None = None,
            zoo_share: float = ZOO_SHARE, synth_share: float = SYNTH_SHARE) -> tuple[LatencyModel, int]:
    """The model from `budget` labels: all synthetic, or (`labels="plans"`) a synthetic share and
    then rounds on the kernels the plans of `nets` use (autotune/synth/plan_labels.py); and the labels used."""
    if labels == "plans":
        run = work / f"plans-{budget}-s{seed}"
        res = learn_part(hw, noisy_measure(bb, dev, seed), run, budget,
                         [load_graph(n) for n in nets], seed=seed, threads=threads, params=params,
                         network_share=network_share, zoo_share=zoo_share, synth_share=synth_share,
                         log=lambda m: print(f"  {hw.name} {budget}: {m}", flush=True))
        atomic_write_text(run / NETWORKS_FILE, "\n".join(nets) + "\n")
        return res.model, res.labels
    n_groups = math.ceil(budget / len(hw.core_counts))
    folder = work / f"labels-{budget}-s{seed}"
    if not (folder / "measured.csv").is_file():
        export_groups(hw, folder, n_groups, seed=seed, force=True)
        measure(bb, dev, folder, folder / "measured.csv", noise=True, seed=seed)
    data = work / f"data-{budget}-s{seed}"
    made = import_profile(folder / "measured.csv", hw, data, folder, force=True)
    return train(hw, data, work / f"model-{budget}-s{seed}", seed=seed, n_jobs=threads, **params).model, made["labels"]


def scored(hw: HardwareConfig, model: LatencyModel, nets: list[str], tables: list[MeasuredTable]) -> dict:
    """The model's accuracy on every candidate pair of `nets` and each strategy's regret per network,
    all against the device's measurements (`tables`)."""
    ev = run_eval(nets, hw, model, tables=tables)
    networks = []
    for m in ev["models"]:
        s = m["strategies"]
        networks.append({"model": m["model"],
                         **{k: s[k]["ms"] / s["oracle"]["ms"] - 1 for k in EVAL_STRATEGIES if k in s},
                         "novelty": s["learned"].get("novelty"),
                         "outside": s["learned"].get("kernels_outside_training")})
    return {"accuracy": zoo_accuracy(hw, model, nets, tables), "networks": networks}


def zoo_accuracy(hw: HardwareConfig, model: LatencyModel, nets: list[str], tables: list[MeasuredTable]) -> dict:
    """Predicted against measured on every candidate pair of the networks."""
    pred, true = [], []
    for net, t in zip(nets, tables):
        g = load_graph(net)
        si, sj = spans(g, hw)
        pred.append(cost_table(g, hw, make_cost("learned", hw, model), si, sj).ravel())
        true.append(np.stack([t.ms_by_span[(int(i), int(j))] for i, j in zip(si, sj)]).ravel())
    p, y = np.concatenate(pred), np.concatenate(true)
    rel = np.abs(p / y - 1)
    return {"pairs": len(y), "within10": float((rel <= 0.10).mean()), "mape": float(rel.mean()),
            "median_err": float(np.median(rel))}


def device_results(name: str, args: argparse.Namespace, nets: list[str], budgets: list[int], params: dict
                   ) -> list[dict]:
    """One device's rows: its zoo tables measured (cached in --work), then each budget learned and scored."""
    bb = blackbox()
    work = Path(args.work) / name
    dev, hw = device_hw(bb, name, work)
    t0 = time.perf_counter()
    tables = zoo_tables(bb, dev, hw, nets, work)
    print(f"{name}: {len(nets)} networks' candidates measured in {time.perf_counter() - t0:.0f} s", flush=True)
    results = []
    for budget in budgets:
        t0 = time.perf_counter()
        model, used = trained(bb, dev, hw, budget, args.seed, work, args.threads, params, nets, args.labels,
                              args.network_share, args.zoo_share, args.synth_share)
        fit_s = time.perf_counter() - t0
        res = {"device": name, "budget": budget, "labels_used": used, "sampling": args.labels,
               "network_share": NETWORK_SHARE if args.network_share is None else args.network_share,
               "synth_at_most": SYNTH_AT_MOST if args.network_share is None else None,
               "zoo_share": args.zoo_share, "synth_share": args.synth_share,
               "fit_s": round(fit_s, 1), **scored(hw, model, nets, tables)}
        results.append(res)
        print(summary_line(res), flush=True)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", default="cluster32,dataflow16,gpu-sm")
    ap.add_argument("--budgets", default="2000,16000")
    ap.add_argument("--full", action="store_true", help="also 96,000 labels")
    ap.add_argument("--networks", default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="XGBoost threads")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="devices benched at once, one process each (default: one per core)")
    ap.add_argument("--work", default="/tmp/bench_blackbox", help="cache of exports and measurements")
    ap.add_argument("--out", default=str(ROOT / "reports" / "blackbox"))
    ap.add_argument("--params", default="{}", help="LatencyModel parameters as JSON (design comparisons)")
    ap.add_argument("--labels", choices=["plans", "synthetic"], default="plans",
                    help="plans: a first round (synthetic groups and random network kernels), then rounds on the "
                         "plans' kernels; synthetic: all synthetic")
    ap.add_argument("--network-share", type=float, default=None,
                    help="of the first round, the share on random candidate kernels of the networks (default: "
                         "learn's, 0.5 with the synthetic groups at most 500 labels)")
    ap.add_argument("--synth-share", type=float, default=SYNTH_SHARE,
                    help="share of the budget spent before any plan (learn's --synth-share)")
    ap.add_argument("--zoo-share", type=float, default=ZOO_SHARE,
                    help="of the first round past the networks' own kernels, the share on random kernels of the "
                         "built-in networks outside --networks (the rest: synthetic groups)")
    args = ap.parse_args(argv)
    blackbox()  # no black boxes: one line, before any work
    nets = zoo.names() if args.networks == "all" else args.networks.split(",")
    budgets = [int(b) for b in args.budgets.split(",")] + ([96000] if args.full else [])
    params = json.loads(args.params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    devices = args.devices.split(",")
    jobs = max(1, min(args.jobs, len(devices)))
    if jobs == 1:
        per_device = [device_results(name, args, nets, budgets, params) for name in devices]
    else:  # one process a device; each prints its own lines as it goes
        # spawned, not forked: a fork of a process whose OpenMP threads have run (XGBoost) can hang
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            n = len(devices)
            per_device = list(pool.map(device_results, devices, [args] * n, [nets] * n, [budgets] * n, [params] * n))
    results = [r for rs in per_device for r in rs]
    (out / "blackbox.json").write_text(json.dumps(results, indent=1))
    print_tables(results)
    plot(results, out / "blackbox.png")
    print(f"json: {out / 'blackbox.json'}; plot: {out / 'blackbox.png'}")
    return 0


def _geo(xs) -> float:
    return float(np.exp(np.mean(np.log1p(np.asarray(xs))))) - 1


def worst_loss(r: dict) -> tuple[float, str, str]:
    """Learned's largest margin behind any baseline (regret points), and that network and baseline."""
    return max((n["learned"] - n[b], n["model"], b) for n in r["networks"] for b in BASELINE_STRATEGIES)


def summary_line(r: dict) -> str:
    reg = {k: [n[k] for n in r["networks"]] for k in ("learned", "greedy", "analytic")}
    loss, net, rival = worst_loss(r)
    a = r["accuracy"]
    return (f"{r['device']:>10} {r.get('labels_used', r['budget']):>6} labels: within10 {a['within10']:.1%}, "
            f"MAPE {a['mape']:.1%} | "
            f"regret learned {_geo(reg['learned']):.2%} / {max(reg['learned']):.2%}, greedy "
            f"{_geo(reg['greedy']):.2%}, analytic {_geo(reg['analytic']):.2%} | worst loss to a baseline "
            f"{loss:+.2%} ({net}, behind {rival}) | worst network "
            f"{max(r['networks'], key=lambda n: n['learned'])['model']} | fit {r['fit_s']} s")


def print_tables(results: list[dict]) -> None:
    print("\n| device | labels | pairs within 10% | MAPE | learned regret geomean / worst | greedy | analytic |"
          " worst loss to a baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        reg = {k: [n[k] for n in r["networks"]] for k in ("learned", "greedy", "analytic")}
        loss = worst_loss(r)[0]
        a = r["accuracy"]
        print(f"| {r['device']} | {r['budget']:,} | {a['within10']:.1%} | {a['mape']:.1%} | "
              f"{_geo(reg['learned']):.2%} / {max(reg['learned']):.2%} | {_geo(reg['greedy']):.2%} | "
              f"{_geo(reg['analytic']):.2%} | {loss:+.2%} |")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = list(dict.fromkeys(r["device"] for r in results))
    fig, axes = plt.subplots(1, len(devices), figsize=(5 * len(devices), 4), squeeze=False)
    for ax, d in zip(axes[0], devices):
        rs = [r for r in results if r["device"] == d]
        for k, style in (("learned", "o-"), ("greedy", "s--"), ("analytic", "^:")):
            ax.plot([r["budget"] for r in rs], [100 * _geo([n[k] for n in r["networks"]]) for r in rs], style, label=k)
        ax.plot([r["budget"] for r in rs], [100 * max(n["learned"] for n in r["networks"]) for r in rs], "o:",
                color="C0", alpha=0.5, label="learned, worst")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xlabel("labels")
        ax.set_ylabel("regret vs measured oracle, %")
        ax.set_title(d)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
