"""Planning time (best of 3): ResNet-152 with the oracle (and the learned model, if trained), and
chains of 1k-10k layers to show the cost grows linearly with the number of layers. "chain" repeats
two layers, so the planner costs each distinct kernel once; "distinct" gives every layer its own
width, so every one of its ~16 x n candidate groups is featurized and predicted. With a model, also
the searching baselines on ResNet-152 predicting their candidates again against planning on the
predictions made once (costs.memo_cost, as the confirm stage's passes do).

Usage: python bench/bench_planner.py [--hw mlu100] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from autotune.cli.report import format_table
from autotune.frontends import zoo
from autotune.hardware.config import hw_slug, load_hardware
from autotune.ir.graph import GraphBuilder
from autotune.planning import strategies
from autotune.planning.costs import make_cost, memo_cost
from autotune.planning.planner import cost_table, span_index, spans


def chain(n: int, distinct: bool = False):
    b = GraphBuilder(f"{'distinct' if distinct else 'chain'}{n}")
    x = b.input("x", (1, 64, 28, 28))
    for i in range(n):
        x = b.conv(x, 64 + (i % 4096) if distinct else 64, 3 if i % 2 else 1)
    return b.build()


def timed(strategy: str, g, hw, model=None, repeat: int = 3) -> tuple[float, int]:
    best, k = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = strategies.run(strategy, g, hw, model=model)
        best, k = min(best, time.perf_counter() - t0), len(p.groups)
    return best, k


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", default="mlu100")
    ap.add_argument("--model-dir", default=None, help="a trained model (default: models/<hw>, if trained)")
    a = ap.parse_args()
    hw = load_hardware(a.hw)
    model = None
    folder = Path(a.model_dir) if a.model_dir else Path("models") / hw_slug(a.hw)
    if (folder / "meta.json").is_file():
        from autotune import LatencyModel

        model = LatencyModel.load(folder, hw)
    rows = []
    g = zoo.build("resnet152")
    oracle = ["oracle"] if hw.has_device else []  # a part known by its datasheet has no simulator
    for s in (["learned"] if model else []) + oracle:
        dt, k = timed(s, g, hw, model)
        rows.append(["resnet152", len(g), s, f"{dt:.3f}", f"{dt / len(g) * 1e3:.2f}", k])
    for n in (1000, 2000, 5000, 10000):
        for distinct in (False, True):
            g = chain(n, distinct)
            for s in (["learned"] if model else []) + ([] if distinct else oracle):
                dt, k = timed(s, g, hw, model, repeat=3 if n <= 2000 else 1)
                rows.append([g.name, n, s, f"{dt:.3f}", f"{dt / n * 1e3:.2f}", k])
    print(f"planning time on {hw.name} (max_fusion {hw.max_fusion}, {len(hw.core_counts)} core counts)")
    print(format_table(rows, ["network", "layers", "cost", "plan s", "ms/layer", "kernels"], right={1, 3, 4, 5}))
    if model is not None:
        print("\nthe searching baselines on ResNet-152 (best of 3)")
        print(format_table(baselines_on_predictions(hw, model), ["baselines", "search cost", "s"], right={2}))


def baselines_on_predictions(hw, model, repeat: int = 3) -> list[list]:
    """The five searching baselines planned on the model, predicting again against looking up the
    predictions made once for every candidate (and how long making those took)."""
    g = zoo.build("resnet152")
    names = ("none", "cores-only", "fuse-max", "dlfusion", "greedy")
    t0 = time.perf_counter()
    si, sj = spans(g, hw)
    table = cost_table(g, hw, make_cost("learned", hw, model), si, sj)
    made_s = time.perf_counter() - t0
    rows = [["-", "predicting every candidate once (cost_table)", f"{made_s:.3f}"]]
    memo = memo_cost(hw, model, g, span_index(si, sj), table)
    for label, options in (("predicting again", {}), ("on the predictions made", {"search": memo})):
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for name in names:
                strategies.run(name, g, hw, model=model, **options)
            best = min(best, time.perf_counter() - t0)
        rows.append([", ".join(names), label, f"{best:.3f}"])
    return rows


if __name__ == "__main__":
    main()
