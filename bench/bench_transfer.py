"""Transfer to parts the universal model never saw: plan regret against label budget.

Draws held-out devices from the universal model's family with a seed other than the training
draw's (each differs from every training device), then for each device and budget (0 = zero-shot):
- adapt: `autotune adapt` (the universal model plus correction trees on the budget's labels, which
  start with the device probes when the model has probe trees, averaged with the probed member);
- scratch: a one-part model trained on the same labels alone (`autotune train`); with
  --scratch-budgets also at budgets where only scratch is trained (what it takes to catch up);
- with --measure M: the adapted model's plans refined by M device runs per network at tune time
  (`autotune tune --measure-budget M`);
and plans the whole zoo with each, scored by the device (noise-free simulator) against the oracle.
With --floor it also plans with the family's expected latency for that datasheet (the mean of the
simulator over sibling devices: same datasheet, device values redrawn), the best any zero-shot
planner can do given the family's spread. Prints the table, writes JSON and the curves (PNG).

Usage: python bench/bench_transfer.py [--universal models/universal] [--data data/universal]
           [--devices 5] [--seed 7] [--budgets 0,50,200,1000] [--scratch-budgets N[,N]] [--floor]
           [--measure M[,M]] [--label-draws N] [--out reports/transfer]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from autotune.cli.report import format_table
from autotune.fileio import atomic_write_json

#: Regret thresholds (%) whose exceedances the summary counts: the issue's worst-case targets.
TAIL_PCT = (3, 8)


def geomean_regret(rs: list[float]) -> float:
    return math.exp(float(np.mean(np.log1p(rs)))) - 1 if rs else float("nan")


def oracle_ms(hw, graphs: dict) -> dict[str, float]:
    """Per network: the oracle plan's latency on the device (computed once per device)."""
    from autotune.planning import planner, strategies

    return {name: planner.verify(strategies.run("oracle", g, hw), g, hw).device_ms for name, g in graphs.items()}


def regrets(hw, graphs: dict, best: dict[str, float], plan_of) -> dict[str, float]:
    """Per network: the regret of `plan_of(graph)`'s plan against the oracle (noise-free device)."""
    from autotune.planning import planner

    return {name: planner.verify(plan_of(g), g, hw).device_ms / best[name] - 1 for name, g in graphs.items()}


def zoo_regrets(hw, model, graphs: dict, best: dict[str, float]) -> dict[str, float]:
    """Per network: the learned plan's regret."""
    from autotune.planning import planner

    return regrets(hw, graphs, best, lambda g: planner.plan(g, hw, model))


def measured_regrets(hw, model, graphs: dict, best: dict[str, float], budget: int) -> dict[str, float]:
    """Per network: regret of the learned plan refined by `budget` noisy device runs (`learned+measure`)."""
    from autotune.planning import strategies

    return regrets(hw, graphs, best, lambda g: strategies.run("learned+measure", g, hw, model,
                                                             measure_budget=budget, measure_seed=1))


def floor_regrets(hw, fam, graphs: dict, best: dict[str, float], siblings: int, seed: int) -> dict[str, float]:
    """Regret of plans made with the family's mean latency for hw's datasheet (siblings' simulator)."""
    from autotune.device.base import Simulator
    from autotune.planning import planner
    from autotune.planning.costs import CostSource

    sibs = [Simulator(s) for s in fam.siblings(hw, siblings, seed)]

    def mean_ms(b, g, k):
        return np.mean([s.measure_batch(b, g, k) for s in sibs], axis=0)

    cost = CostSource("family-mean", mean_ms, measures=False)
    return regrets(hw, graphs, best, lambda g: planner.plan(g, hw, cost=cost))


def plot(summary: dict, budgets: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [max(b, 10) for b in budgets]  # budget 0 drawn at 10 on the log axis
    for ax, key, title in ((axes[0], "geomean", "regret, geomean over devices x zoo"),
                           (axes[1], "worst", "regret, worst network")):
        for method, style in (("adapt", "o-"), ("scratch", "s--")):
            pts = [(x, summary[method][str(b)][key]) for x, b in zip(xs, budgets) if str(b) in summary[method]]
            if pts:
                ax.plot(*zip(*[(x, 100 * y) for x, y in pts]), style, label=method)
        if "floor" in summary:
            ax.axhline(100 * summary["floor"][key], color="grey", ls=":", label="family-mean floor (zero-shot)")
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(b) for b in budgets])
        ax.set_xlabel("labels from the part (0 = zero-shot)")
        ax.set_ylabel("regret vs oracle (%)")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--universal", default="models/universal")
    ap.add_argument("--data", default="data/universal", help="the training draw (to check held-out devices differ)")
    ap.add_argument("--devices", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7, help="seed of the held-out draw (the training draw used another)")
    ap.add_argument("--budgets", default="0,50,200,1000")
    ap.add_argument("--scratch-budgets", default="", metavar="N[,N]",
                    help="budgets at which only the scratch model is trained (how many labels it needs to match adapt)")
    ap.add_argument("--floor", action="store_true", help="also the family-mean floor (zero-shot's limit)")
    ap.add_argument("--label-draws", type=int, default=1, metavar="N",
                    help="adapt (and scratch) on N label draws per device and budget, each a case of its own: "
                         "one draw's tail on 5 devices swings with the draw (docs/costmodel.md)")
    ap.add_argument("--siblings", type=int, default=16)
    ap.add_argument("--models", default="all", help="zoo networks, comma-separated, or all")
    ap.add_argument("--measure", default="", metavar="M[,M]",
                    help="also plan each adapted model with M tune-time device runs per network "
                         "(`tune --measure-budget M`, refine.py)")
    ap.add_argument("--no-probes", dest="probes", action="store_false",
                    help="adapt without the probed member (the probes' labels still spent, as ordinary labels)")
    ap.add_argument("--out", default="reports/transfer")
    a = ap.parse_args()
    from autotune.costmodel.adapt import adapt
    from autotune.costmodel.features import FEATURE_NAMES
    from autotune.costmodel.model import LatencyModel
    from autotune.costmodel.universal import load_universal, model_family
    from autotune.errors import AutotuneError
    from autotune.frontends import zoo
    from autotune.synth.adapt_labels import part_labels

    budgets = sorted({int(b) for b in a.budgets.split(",")})
    scratch_only = sorted({int(b) for b in a.scratch_budgets.split(",") if b} - set(budgets))
    measures = sorted({int(m) for m in a.measure.split(",") if m})
    nets = zoo.names() if a.models == "all" else a.models.split(",")
    graphs = {name: zoo.build(name) for name in nets}  # built once, planned per device and model
    try:
        universal, _ = load_universal(a.universal)
    except AutotuneError as err:
        print(f"bench_transfer: {err}", file=sys.stderr)
        return 2
    fam = model_family(universal)
    train_hashes, train_values = _training_draw(Path(a.data), universal)
    if a.seed == universal.meta_.get("family_seed", 0):
        print(f"bench_transfer: --seed {a.seed} is the training draw's seed; pick another", file=sys.stderr)
        return 2
    held = fam.draw(a.devices, a.seed, prefix="held")
    size_mb = (Path(a.universal) / "model.ubj").stat().st_size / 1e6
    print(f"universal model: family {fam.name} ({fam.hash}), {universal.meta_.get('devices')} training datasheets "
          f"x {universal.meta_.get('siblings', 1)} devices, {universal.meta_.get('labels')} labels, {size_mb:.1f} MB")
    rows_dev = []
    for hw in held:
        if hw.hash in train_hashes:
            print(f"bench_transfer: held-out device {hw.name} equals a training device", file=sys.stderr)
            return 2
        shared = _shared_values(hw, train_values)
        rows_dev.append([hw.name, hw.cores, f"{hw.peak_tflops:.1f}", f"{hw.dram_gbps:.1f}", hw.onchip_kib,
                         hw.dtype_bytes, f"{hw.device.launch_us:.1f}", f"{hw.device.dma_gbps_per_core:.1f}",
                         shared])
    print(format_table(rows_dev, ["device", "cores", "TFLOPS", "DRAM GB/s", "KiB/core", "bytes", "launch us",
                                  "DMA GB/s/core", "continuous values shared with a training device"],
                       right=set(range(1, 9))))
    res: dict = {"family": fam.name, "family_hash": fam.hash, "seed": a.seed, "budgets": budgets,
                 "scratch_budgets": scratch_only, "label_draws": a.label_draws,
                 "devices": [h.name for h in held], "networks": nets, "regrets": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for hw in held:
            per: dict = {}
            best = oracle_ms(hw, graphs)
            if 0 in budgets:
                per["adapt/0"] = zoo_regrets(hw, universal, graphs, best)  # zero-shot: nothing to train from scratch on
            for b, draw in itertools.product([b for b in budgets if b > 0] + scratch_only, range(a.label_draws)):
                X, y, groups, residuals, _ = part_labels(hw, universal, b, Path(tmp) / f"{hw.name}-{b}-{draw}",
                                                         seed=draw)
                tag = f" (label draw {draw})" if a.label_draws > 1 else ""
                scratch = LatencyModel(random_state=0).fit(X[:, :len(FEATURE_NAMES)], y, groups=groups)
                got = {"scratch": zoo_regrets(hw, scratch, graphs, best)}
                if b not in scratch_only:
                    ad = adapt(universal, X, y, groups, seed=0, residuals=residuals if a.probes else None)
                    got["adapt"] = zoo_regrets(hw, ad.model, graphs, best)
                    for m in measures:
                        got[f"adapt+measure{m}"] = measured_regrets(hw, ad.model, graphs, best, m)
                for method, rs in got.items():  # each label draw's (network) is a case of its own
                    per.setdefault(f"{method}/{b}", {}).update({_case(net, draw): r for net, r in rs.items()})
                line = f"  {hw.name} budget {b}{tag}: scratch {geomean_regret(list(got['scratch'].values())):.2%}"
                if "adapt" in got:
                    line += (f", adapt {geomean_regret(list(got['adapt'].values())):.2%} ({ad.kind}, {ad.rounds} "
                             f"trees, depth {ad.depth})")
                print(line, flush=True)
            if a.floor:
                per["floor"] = floor_regrets(hw, fam, graphs, best, a.siblings, a.seed)
            res["regrets"][hw.name] = per
    methods = ["adapt", *[f"adapt+measure{m}" for m in measures], "scratch"]
    summary: dict = {method: {} for method in methods}
    for key in {k for d in res["regrets"].values() for k in d}:
        cases = [(r, dev, net) for dev, d in res["regrets"].items() for net, r in d[key].items()]
        allr = [r for r, _, _ in cases]
        per_dev = {dev: geomean_regret(list(d[key].values())) for dev, d in res["regrets"].items()}
        worst = max(cases)
        # the tail as counts of (device, network) cases: on 5 devices one near-tie decides "worst"
        entry = {"geomean": geomean_regret(allr), "worst": worst[0], "worst_case": f"{worst[2]} on {worst[1]}",
                 "over": {str(t): sum(r > t / 100 for r in allr) for t in TAIL_PCT}, "cases": len(allr),
                 "per_device": per_dev}
        if key == "floor":
            summary["floor"] = entry
        else:
            method, b = key.split("/")
            summary[method][b] = entry
    res["summary"] = summary
    res["seconds"] = round(time.perf_counter() - t0, 1)
    table = []
    for b in sorted(budgets + scratch_only):
        for method in methods:
            e = summary[method].get(str(b))
            if e is None:
                continue
            label = "universal, zero-shot" if b == 0 else method
            table.append([str(b), label, *_row(e)])
    if "floor" in summary:
        table.append(["0", "family-mean floor", *_row(summary["floor"])])
    print(format_table(table, ["labels", "model", "regret geomean", "worst", *[f"> {t}%" for t in TAIL_PCT],
                               "worst case", "per device (geomean)"], right={0, *range(2, 4 + len(TAIL_PCT))}))
    out = Path(a.out)
    atomic_write_json(out / "transfer.json", res)
    plot(summary, sorted(budgets + scratch_only), out / "transfer.png")
    print(f"{len(held)} held-out devices x {len(nets)} networks in {res['seconds']} s; "
          f"wrote {out}/transfer.json, {out}/transfer.png")
    return 0


def _case(net: str, draw: int) -> str:
    """A case's name: the network, and the label draw after the first."""
    return net if draw == 0 else f"{net}#{draw}"


def _row(e: dict) -> list[str]:
    """A summary entry's table cells: geomean, worst, tail counts, worst case, per-device geomeans."""
    return [f"{e['geomean']:.2%}", f"{e['worst']:.2%}", *[f"{e['over'][str(t)]}/{e['cases']}" for t in TAIL_PCT],
            e["worst_case"], " ".join(f"{v:.2%}" for v in e["per_device"].values())]


def _training_draw(data: Path, universal) -> tuple[set[str], dict[str, set[float]]]:
    """Hashes of the training devices (siblings included) and, per continuous value, the values they took."""
    from autotune.hardware.config import parse_hardware

    configs = []
    f = data / "family.json"
    if f.is_file():
        entries = json.loads(f.read_text())["devices"]
        configs = [parse_hardware(d["config"]) for d in entries]
        configs += [parse_hardware(s["config"]) for d in entries for s in d.get("siblings") or []]
    hashes = {c.hash for c in configs} | set(universal.meta_.get("train_devices", []))
    values: dict[str, set[float]] = {}
    for c in configs:
        for path, v in _flat(c.model_dump()).items():
            values.setdefault(path, set()).add(v)
    return hashes, values


def _flat(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, float):
            out[prefix + k] = v
    return out


def _shared_values(hw, values: dict[str, set[float]]) -> int:
    """How many of hw's continuous (float) values some training device also has exactly."""
    return sum(v in values.get(p, set()) for p, v in _flat(hw.model_dump()).items())


if __name__ == "__main__":
    raise SystemExit(main())
