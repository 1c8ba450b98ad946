"""Does a bootstrap ensemble's spread tell where a measured part's model errs? On a finished
`bench_blackbox.py` run: five models like the run's (no memory) refitted on bootstrap draws of its
dataset's groups; their standard deviation of log latency on every unmeasured candidate pair of the
zoo, against the run's model's error there (the black box's noise-free table). Prints the median
|error| per eighth of spread, the correlation, rms error over rms spread, and where the 20 most
overrated pairs fall (docs/costmodel.md, "A bootstrap ensemble's spread does").

    python bench/bench_blackbox.py --budgets 2000 --work W      # then
    python bench/bench_ensemble_spread.py --work W --device gpu-sm --budget 2000 --seed 0
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
from autotune.data.dataset import read_dataset  # noqa: E402
from autotune.frontends import zoo  # noqa: E402
from autotune.frontends.loader import load_graph  # noqa: E402
from autotune.hardware.config import load_hardware  # noqa: E402
from autotune.planning.planner import distinct_features  # noqa: E402
from autotune.synth.plan_tables import kernel_tables  # noqa: E402
from autotune.synth.profiles import measured_table  # noqa: E402


def refits(model: LatencyModel, X: np.ndarray, y: np.ndarray, groups: np.ndarray, n: int, seed: int
           ) -> list[LatencyModel]:
    """`n` models with `model`'s parameters (no memory) fitted on bootstrap draws of the groups."""
    rng = np.random.default_rng(seed)
    ug = np.unique(groups)
    params = {**model.get_params(), "memory": False, "bags": 1, "repeats": 1}
    out = []
    for b in range(n):
        take = np.isin(groups, rng.choice(ug, len(ug), replace=True))
        out.append(LatencyModel(**{**params, "random_state": b}).fit(X[take], y[take], groups=groups[take]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="bench_blackbox.py's --work")
    ap.add_argument("--device", required=True)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=5)
    args = ap.parse_args(argv)
    w = Path(args.work) / args.device
    run = w / f"plans-{args.budget}-s{args.seed}"
    hw = load_hardware(str(w / f"{args.device}.yaml"))
    model = LatencyModel.load(run / "model", hw)
    ds = read_dataset(run / "data", hw)
    X, _ = dataset_features(ds, hw, model.featurizer)
    members = refits(model, X, ds.rows["latency_ms"].to_numpy(np.float64), ds.rows["group_id"].to_numpy(),
                     args.members, args.seed)
    sd, err = [], []
    for net in zoo.names():
        _, table = measured_table(w / "zoo" / net, hw)
        g = load_graph(net)
        si, sj, inverse, pred, _, measured, at = kernel_tables(g, hw, model)
        Xz, _ = distinct_features(g, hw, model, si, sj)
        spread = np.log(np.stack([m.predict(Xz) for m in members])).std(0).reshape(pred.shape)
        first = {int(inverse[r]): ij for ij, r in sorted(at.items(), key=lambda x: -x[1])}
        for d, (i, j) in first.items():
            true = np.asarray(table.ms_by_span[(i, j)])
            new = ~measured[d]
            sd.append(spread[d][new])
            err.append(np.log(pred[d][new] / true[new]))
    s, e = np.concatenate(sd), np.concatenate(err)
    eighth = np.minimum((np.argsort(np.argsort(s)) * 8) // len(s), 7)
    med = [float(np.median(np.abs(e[eighth == b]))) for b in range(8)]
    pct = (np.argsort(np.argsort(s)) + 1) / len(s)
    top = np.argsort(-e)[:20]
    print(f"{args.device} {args.budget} labels seed {args.seed}: {len(s)} unmeasured pairs")
    print("median |error| by spread eighth, lowest to highest: " + ", ".join(f"{m:.1%}" for m in med))
    print(f"correlation of spread and |error| {np.corrcoef(s, np.abs(e))[0, 1]:.2f}; "
          f"rms error / rms spread {np.sqrt(np.mean(e ** 2)) / np.sqrt(np.mean(s ** 2)):.2f}")
    print("the 20 most overrated pairs' spread percentiles: " + " ".join(f"{100 * p:.0f}" for p in sorted(pct[top])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
