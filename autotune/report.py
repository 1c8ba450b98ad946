"""Tables and plots of plans and evaluations; they read the JSON forms, so saved results plot too."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .fileio import atomic_write  # noqa: E402


def format_table(rows: list[list[object]], header: list[str], right: set[int] | None = None) -> str:
    """A plain text table with aligned columns (`right` = indices of right-aligned columns)."""
    right = right or set()
    cells = [[str(v) for v in header]] + [[str(v) for v in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(v.rjust(w) if k in right else v.ljust(w) for k, (v, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return out


def _layers_label(layers: list[str], width: int = 48) -> str:
    s = layers[0] if len(layers) == 1 else f"{layers[0]} .. {layers[-1]} ({len(layers)})"
    return s if len(s) <= width else s[: width - 1] + "…"


def plan_table(plan: dict) -> str:
    """Groups of a plan (JSON form): index, layers, cores, predicted and simulated ms."""
    sim = "simulated_ms" in plan
    rows = []
    for k, g in enumerate(plan["groups"]):
        row = [k, _layers_label(g["layers"]), len(g["layers"]), g["cores"], f"{g['predicted_ms']:.4f}"]
        if sim:
            row.append(f"{g['simulated_ms']:.4f}")
        rows.append(row)
    header = ["#", "layers", "n", "cores", "pred ms"] + (["sim ms"] if sim else [])
    total = f"total: {len(plan['groups'])} kernels, predicted {plan['predicted_ms']:.3f} ms"
    if sim:
        err = plan["predicted_ms"] / plan["simulated_ms"] - 1
        total += f", simulated {plan['simulated_ms']:.3f} ms (prediction error {err:+.1%})"
    return format_table(rows, header, right={0, 2, 3, 4, 5}) + "\n" + total


def plot_plan(plan: dict, path: str | Path) -> Path:
    """Groups along the network as bars (width = layers), coloured by core count, height = latency."""
    groups = plan["groups"]
    key = "simulated_ms" if "simulated_ms" in plan else "predicted_ms"
    counts = sorted({g["cores"] for g in groups})
    cmap = plt.get_cmap("viridis", max(2, len(counts)))
    colour = {c: cmap(k) for k, c in enumerate(counts)}
    fig, ax = plt.subplots(figsize=(max(8, min(24, len(groups) * 0.25)), 4.5))
    x = 0
    for g in groups:
        n = len(g["layers"])
        ax.bar(x, g[key], width=n, align="edge", color=colour[g["cores"]], edgecolor="white", linewidth=0.5)
        x += n
    for c in counts:
        ax.bar(0, 0, color=colour[c], label=f"{c} cores")
    ax.set(xlabel="layer index (topological order); bar width = layers fused in one kernel",
           ylabel=f"{key.replace('_', ' ')} per kernel",
           title=f"{plan['model']} on {plan['hardware']} ({plan['strategy']}): {len(groups)} kernels, "
                 f"{plan[key]:.3f} ms", xlim=(0, x))
    ax.legend(loc="upper right", fontsize=8, ncol=min(6, len(counts)))
    return _save(fig, path)


def eval_table(result: dict, strategies: list[str]) -> str:
    """The paper-style table: simulated ms per strategy, speed-up over none, regret vs oracle."""
    rows = []
    for m in result["models"]:
        s = m["strategies"]
        rows.append([m["model"], m["layers"]] + [f"{s[k]['ms']:.3f}" for k in strategies]
                    + [f"{m['speedup']:.2f}x", f"{m['regret']:.2%}", f"{s['learned']['plan_s']:.3f}",
                       s["oracle"]["sim_calls"]])
    header = ["model", "layers"] + [f"{k} ms" for k in strategies] + ["speedup", "regret", "plan s", "oracle sims"]
    sm = result["summary"]
    foot = (f"geomean speed-up {sm['geomean_speedup']:.2f}x (min {sm['min_speedup']:.2f}x, max "
            f"{sm['max_speedup']:.2f}x); regret vs oracle geomean {sm['geomean_regret']:.2%}, "
            f"max {sm['max_regret']:.2%}")
    return format_table(rows, header, right=set(range(1, len(header)))) + "\n" + foot


def plot_eval(result: dict, strategies: list[str], path: str | Path) -> Path:
    """Grouped bars: speed-up over `none` per network and strategy (log scale)."""
    models = result["models"]
    shown = [s for s in strategies if s != "none"]
    fig, ax = plt.subplots(figsize=(max(8, len(models) * 0.9), 4.8))
    w = 0.8 / max(1, len(shown))
    cmap = plt.get_cmap("tab10")
    for k, s in enumerate(shown):
        xs = [i + (k - (len(shown) - 1) / 2) * w for i in range(len(models))]
        ys = [m["strategies"]["none"]["ms"] / m["strategies"][s]["ms"] for m in models]
        ax.bar(xs, ys, width=w, label=s, color=cmap(k))
    ax.set_xticks(range(len(models)), [m["model"] for m in models], rotation=40, ha="right")
    ax.set_yscale("log")
    top = max(m["strategies"]["none"]["ms"] / min(m["strategies"][s]["ms"] for s in shown) for m in models)
    ax.set_ylim(0.8, 10 ** math.ceil(math.log10(max(top, 1.01)) + 0.1))
    ax.axhline(1, color="k", lw=0.6)
    ax.set(ylabel="speed-up over no optimisation (simulated)", title=f"Speed-ups on {result['hardware']}")
    ax.legend(fontsize=8, ncol=min(4, len(shown)))
    return _save(fig, path)
