"""Planning time (best of 3): ResNet-152 with the oracle (and the learned model, if trained), and
chains of 1k-10k layers to show the cost grows linearly with the number of layers. "chain" repeats
two layers, so the planner costs each distinct kernel once; "distinct" gives every layer its own
width, so every one of its ~16 x n candidate groups is featurized and predicted.

Usage: python bench/bench_planner.py [--hw mlu100]
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
    a = ap.parse_args()
    hw = load_hardware(a.hw)
    model = None
    if (Path("models") / hw_slug(a.hw) / "meta.json").is_file():
        from autotune import LatencyModel

        model = LatencyModel.load(Path("models") / hw_slug(a.hw), hw)
    rows = []
    g = zoo.build("resnet152")
    for s in (["learned"] if model else []) + ["oracle"]:
        dt, k = timed(s, g, hw, model)
        rows.append(["resnet152", len(g), s, f"{dt:.3f}", f"{dt / len(g) * 1e3:.2f}", k])
    for n in (1000, 2000, 5000, 10000):
        for distinct in (False, True):
            g = chain(n, distinct)
            for s in (["learned"] if model else []) + ([] if distinct else ["oracle"]):
                dt, k = timed(s, g, hw, model, repeat=3 if n <= 2000 else 1)
                rows.append([g.name, n, s, f"{dt:.3f}", f"{dt / n * 1e3:.2f}", k])
    print(f"planning time on {hw.name} (max_fusion {hw.max_fusion}, {len(hw.core_counts)} core counts)")
    print(format_table(rows, ["network", "layers", "cost", "plan s", "ms/layer", "kernels"], right={1, 3, 4, 5}))


if __name__ == "__main__":
    main()
