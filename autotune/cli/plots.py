"""Every figure the commands write (PNG via matplotlib, written atomically): plans, evaluations, the
model's predictions, dataset coverage and the studies. Library modules compute; these draw."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from autotune.data.dataset import ZOO_FILE  # noqa: E402
from autotune.fileio import atomic_write  # noqa: E402
from autotune.hardware.config import HardwareConfig  # noqa: E402


def _save(fig, path: str | Path, dpi: int = 120) -> Path:
    fig.tight_layout()
    fmt = Path(path).suffix[1:].lower()  # a .pdf or .svg name gets that format; anything else PNG
    fmt = fmt if fmt in fig.canvas.get_supported_filetypes() else "png"
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))
    plt.close(fig)
    return Path(out)


def plot_plan(plan: dict, path: str | Path) -> Path:
    """Groups along the network as bars (width = layers), coloured by core count, height = latency."""
    groups = plan["groups"]
    key = "device_ms" if "device_ms" in plan else "predicted_ms"
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


def _speedup(m: dict, s: str) -> float:
    """Strategy `s`'s speed-up over `none` on network `m` of an eval result; NaN where either is inf."""
    r = m["strategies"]["none"]["ms"] / m["strategies"][s]["ms"]
    return r if math.isfinite(r) and r > 0 else math.nan


def plot_eval(result: dict, strategies: list[str], path: str | Path) -> Path:
    """Grouped bars: speed-up over `none` per network and strategy (log scale)."""
    models = result["models"]
    shown = [s for s in strategies if s != "none"]
    fig, ax = plt.subplots(figsize=(max(8, len(models) * 0.9), 4.8))
    w = 0.8 / max(1, len(shown))
    cmap = plt.get_cmap("tab10")
    for k, s in enumerate(shown):
        xs = [i + (k - (len(shown) - 1) / 2) * w for i in range(len(models))]
        ys = [_speedup(m, s) for m in models]
        ax.bar(xs, ys, width=w, label=s, color=cmap(k))
    ax.set_xticks(range(len(models)), [m["model"] for m in models], rotation=40, ha="right")
    ax.set_yscale("log")
    # a plan holding a kernel the part could not run scores inf on a measured table: no bar
    top = max([y for m in models for s in shown if math.isfinite(y := _speedup(m, s))], default=1.0)
    ax.set_ylim(0.8, 10 ** math.ceil(math.log10(max(top, 1.01)) + 0.1))
    ax.axhline(1, color="k", lw=0.6)
    ax.set(ylabel="speed-up over no optimisation (simulated)", title=f"Speed-ups on {result['hardware']}")
    ax.legend(fontsize=8, ncol=min(4, len(shown)))
    return _save(fig, path)


#: Points a scatter draws at most (a fixed random subset past it): the zoo's 277,000 pairs took
#: seconds to draw and hid each other anyway.
MAX_POINTS = 40_000


def plot_pred_vs_sim(zoo: pd.DataFrame, pred: np.ndarray, title: str) -> bytes:
    """PNG bytes: predicted against simulated latency on zoo groups, coloured by group length."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    true = zoo["latency_ms"].to_numpy(np.float64)
    length = (zoo["j"] - zoo["i"]).to_numpy()
    shown = np.arange(len(true))
    if len(shown) > MAX_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(len(true), MAX_POINTS, replace=False))
        title += f" ({MAX_POINTS:,} of {len(true):,} pairs drawn)"
    sc = ax.scatter(true[shown], pred[shown], c=length[shown], s=4, cmap="viridis", alpha=0.6)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    for f in (0.9, 1.1):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set(xscale="log", yscale="log", xlabel="simulated latency (ms)", ylabel="predicted latency (ms)", title=title)
    fig.colorbar(sc, ax=ax, label="group length (layers)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def plot_coverage(folder: str | Path, path: str | Path, title: str) -> Path:
    """Histograms of log10 op count, largest channel count and group length: synthetic vs zoo."""
    folder = Path(folder)
    cols = ["group_id", "ops", "max_channels", "n_layers"]
    syn = pd.concat([pd.read_parquet(p, columns=cols) for p in sorted(folder.glob("shard-*.parquet"))])
    syn = syn.drop_duplicates("group_id")
    zp = folder / ZOO_FILE
    zoo = pd.read_parquet(zp, columns=cols).drop_duplicates("group_id") if zp.is_file() else None
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    top = int(max(syn["n_layers"].to_numpy().max(), zoo["n_layers"].to_numpy().max() if zoo is not None else 1))
    spec: list[tuple[str, Callable, np.ndarray, str]] = [
            ("ops", lambda s: np.log10(s + 1), np.linspace(0, 12, 49), "log10 op count (MACs; vector ops if none)"),
            ("max_channels", np.log2, np.arange(0, 13.01, 0.5), "log2 largest channel count"),
            ("n_layers", lambda s: s, np.arange(0.5, top + 1.5), "group length (layers)")]
    for a, (col, f, bins, label) in zip(ax, spec):
        a.hist(f(syn[col].to_numpy(float)), bins=bins, density=True, alpha=0.55, label=f"synthetic ({len(syn)})")
        if zoo is not None:
            a.hist(f(zoo[col].to_numpy(float)), bins=bins, density=True, alpha=0.55,
                   label=f"zoo candidates ({len(zoo)})")
        a.set(xlabel=label, ylabel="density")
        a.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path, dpi=110)


def plot_study(kind: str, df: pd.DataFrame, hw: HardwareConfig, path: str | Path) -> Path:
    """One of the synthetic-layer study's figures: kind 'cores', 'heat' or 'fusion'."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    if kind == "cores":
        for macs, d in df.groupby("macs"):
            ax.plot(d["cores"], d["latency_ms"] / d["latency_ms"].min(), marker="o", label=f"{macs:.1e} MACs")
        ax.set(xscale="log", yscale="log", xlabel="cores", ylabel="latency / best latency",
               title=f"{hw.name}: latency against core count (3x3 conv, 64 ch)")
        ax.set_xticks(hw.core_counts, [str(k) for k in hw.core_counts])
        ax.legend(fontsize=8)
    elif kind == "heat":
        piv = df.assign(logm=np.round(np.log10(df["target_macs"]), 1)).pivot_table(
            index="channels", columns="logm", values="best_cores", aggfunc="first")
        im = ax.imshow(np.log2(piv.to_numpy(dtype=float)), aspect="auto", origin="lower", cmap="viridis",
                       vmin=0, vmax=math.log2(hw.core_counts[-1]))
        ax.set_xticks(range(len(piv.columns)), [f"{v:g}" for v in piv.columns], rotation=60, fontsize=7)
        ax.set_yticks(range(len(piv.index)), [str(v) for v in piv.index], fontsize=7)
        cb = fig.colorbar(im, ax=ax, label="best core count")
        cb.set_ticks([math.log2(k) for k in hw.core_counts], labels=[str(k) for k in hw.core_counts])
        ax.set(xlabel="log10 op count (MACs)", ylabel="channels", title=f"{hw.name}: best core count")
    else:
        for case, d in df.groupby("case", sort=False):
            ax.plot(d["length"], d["speedup"], marker="o", label=case)
        ax.axhline(1, color="k", lw=0.6)
        ax.set(xlabel="fused group length (layers)", ylabel="speed-up of fusing vs best unfused",
               title=f"{hw.name}: fusion speed-up against group length")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_effects(df: pd.DataFrame, hw: HardwareConfig, path: str | Path) -> Path:
    """One panel per probe: the device against the device with that effect switched off."""
    panels = list(dict.fromkeys(df["panel"]))
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, panel in zip(axes.flat, panels):
        for variant, d in df[df["panel"] == panel].groupby("variant", sort=False):
            style = "--" if variant == "effect off" else "-"
            ax.plot(d["x"], d["y"], style, marker="o" if len(d) < 20 else None, ms=4, label=variant)
        if panel.startswith(("contention", "power")):
            ax.set_xscale("log", base=2)
        if panel.startswith("noise"):
            ax.set_yscale("log")
        ax.set_title(panel.split(":")[0], fontsize=10)
        ax.set(xlabel=panel.split(" vs ")[-1], ylabel=panel.split(": ")[1].split(" vs ")[0])
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{hw.name}: device effects, each against the device without it")
    return _save(fig, path, dpi=110)


