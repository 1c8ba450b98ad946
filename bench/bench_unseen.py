"""How well a measured part's model predicts a network it has never seen (issue 28): each network
whose candidate kernels a dataset holds (group ids `net:i-j`) is held out in turn, the model is
trained on the rest, and that network's pairs are scored. Three training sets per held-out network,
to compare where labels are best spent: every other row; the `--plans` networks' rows plus the
synthetic groups; the `--plans` networks' rows plus the other networks' kernels.

    make synth train HW=cpu
    python bench/bench_unseen.py --hw cpu --data data/cpu --plans resnet50   # reports/cpu/bench_unseen.{json,png}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autotune.costmodel.feature_cache import dataset_features  # noqa: E402
from autotune.costmodel.model import LatencyModel  # noqa: E402
from autotune.costmodel.training import MEASURED_PARAMS, accuracy  # noqa: E402
from autotune.data.dataset import read_dataset  # noqa: E402
from autotune.fileio import atomic_write_json  # noqa: E402
from autotune.hardware.config import load_hardware  # noqa: E402


def networks_of(group_ids: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """The network each row's group belongs to ('' for a synthetic group); ids are planner.candidate_id's."""
    return np.array([g.rsplit(":", 1)[0] if k == "network" else "" for g, k in zip(group_ids, kinds)])


def score(X, y, groups, train: np.ndarray, test: np.ndarray, seeds: int) -> tuple[float, float]:
    """(share of the test pairs within ±10%, as `training.accuracy` counts it; median |log error|)
    over `seeds` fits on `train`."""
    hits, errs = [], []
    for seed in range(seeds):
        model = LatencyModel(random_state=seed, **MEASURED_PARAMS).fit(X[train], y[train], groups=groups[train])
        pred = model.predict_own(X[test])
        hits.append(accuracy(pred, y[test])["within10"])
        errs.append(np.median(np.abs(np.log(pred / y[test]))))
    return float(np.mean(hits)), float(np.mean(errs))


def bench(hw_name: str, data: str, plans: list[str], seeds: int) -> dict:
    hw = load_hardware(hw_name)
    ds = read_dataset(data, hw)
    X, _ = dataset_features(ds, hw, LatencyModel(**MEASURED_PARAMS).featurizer)
    y = ds.rows["latency_ms"].to_numpy(np.float64)
    groups = ds.rows["group_id"].astype(str).to_numpy()
    net = networks_of(groups, ds.rows["kind"].astype(str).to_numpy())
    mine, synthetic = np.isin(net, plans), net == ""
    sources = {"every other row": lambda held: net != held,
               "plans + synthetic groups": lambda held: mine | synthetic,
               "plans + other networks": lambda held: mine | (~synthetic & (net != held))}
    rows = []
    for held in sorted(set(net) - set(plans) - {""}):
        test = net == held
        for name, train_of in sources.items():
            train = train_of(held) & ~test
            if train.sum() < 20:
                continue
            w10, med = score(X, y, groups, train, test, seeds)
            rows.append({"network": held, "source": name, "pairs": int(test.sum()), "train_rows": int(train.sum()),
                         "within10": w10, "median_abs_log_err": med})
            print(f"{held:22s} {name:26s} {int(test.sum()):4d} pairs  within 10% {w10:6.1%}  "
                  f"median error {np.expm1(med):6.1%}  ({int(train.sum())} training rows)", flush=True)
    summary = {}
    for name in sources:
        rs = [r for r in rows if r["source"] == name]
        n = sum(r["pairs"] for r in rs)
        if n:
            summary[name] = {"within10": sum(r["within10"] * r["pairs"] for r in rs) / n, "pairs": n,
                             "median_abs_log_err": float(np.median([r["median_abs_log_err"] for r in rs]))}
    return {"hw": hw_name, "data": data, "plans": plans, "seeds": seeds, "rows": rows, "summary": summary}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({r["network"] for r in res["rows"]})
    names = list(res["summary"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(nets) + 2), 4.5))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        v = {r["network"]: r["within10"] for r in res["rows"] if r["source"] == name}
        ax.bar(np.arange(len(nets)) + k * width, [100 * v.get(n, np.nan) for n in nets], width,
               label=f"{name} ({100 * res['summary'][name]['within10']:.0f}%, "
                     f"{np.mean([r['train_rows'] for r in res['rows'] if r['source'] == name]):.0f} rows)")
    ax.set_xticks(np.arange(len(nets)) + 0.4 - width / 2, nets, rotation=60, ha="right")
    ax.set_ylabel("pairs within ±10% (%)")
    ax.set_title(f"{res['hw']}: networks never trained on")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hw", default="cpu")
    ap.add_argument("--data", default="data/cpu")
    ap.add_argument("--plans", default="resnet50", help="networks whose rows every training set keeps")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default=None, help="path stem (default reports/<hw>/bench_unseen)")
    args = ap.parse_args()
    plans = [p.strip() for p in args.plans.split(",") if p.strip()]
    if not (Path(args.data) / "manifest.json").is_file():
        print(f"bench_unseen: no dataset in {args.data}/ (make synth HW={args.hw} first)", file=sys.stderr)
        return 1
    res = bench(args.hw, args.data, plans, args.seeds)
    for name, s in res["summary"].items():
        print(f"{name:26s} within 10% {s['within10']:6.1%} of {s['pairs']} pairs, "
              f"median error {np.expm1(s['median_abs_log_err']):.1%}")
    stem = Path(args.out or ROOT / "reports" / args.hw / "bench_unseen")
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stem.with_suffix(".json"), res)
    plot(res, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
