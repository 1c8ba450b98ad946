"""`autotune study`: the DLFusion synthetic-layer study on the simulator, as plots and CSVs.

Three views of the two knobs: latency against core count for layers spanning op counts, the
best core count over (op count, channel size), and the speed-up of fusing chains of small
and large layers against group length; plus the device effects (effects_study.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import atomic_write, atomic_write_text
from .graph import Graph, GraphBuilder
from .hardware import HardwareConfig, hw_slug, load_hardware


def conv_chain(channels: int, size: int, n: int = 1, k: int = 3, batch: int = 1) -> Graph:
    """n identical k x k convolutions, channels -> channels, on a size x size map."""
    b = GraphBuilder(f"chain{n}_c{channels}_s{size}", batch)
    x = b.input("x", (batch, channels, size, size))
    for i in range(n):
        x = b.conv(x, channels, k, name=f"conv{i}")
    return b.build()


def size_for_macs(macs: float, channels: int, k: int = 3) -> int:
    """Spatial size whose k x k conv (channels -> channels) has about `macs` MACs (0 if impossible)."""
    s = math.sqrt(macs / (channels * channels * k * k))
    return int(round(s)) if 1 <= s <= 1024 else 0


def _latency_table(graphs: list[Graph], hw: HardwareConfig) -> np.ndarray:
    """Latency (ms) of each whole graph as one group at every core count: shape (len(graphs), K)."""
    from .simulator import simulate

    ks = list(hw.core_counts)
    groups = [g.group(0, len(g)) for g in graphs for _ in ks]
    cores = np.tile(ks, len(graphs))
    return simulate(groups, cores, hw).reshape(len(graphs), len(ks))


def latency_vs_cores(hw: HardwareConfig, channels: int = 64) -> pd.DataFrame:
    rows = []
    for macs in np.logspace(5, 10, 6):
        s = size_for_macs(macs, channels)
        if s:
            g = conv_chain(channels, s)
            for k, ms in zip(hw.core_counts, _latency_table([g], hw)[0]):
                rows.append({"macs": g.total_macs, "channels": channels, "size": s, "cores": k, "latency_ms": ms})
    return pd.DataFrame(rows)


def study_grid() -> tuple[pd.DataFrame, list[Graph]]:
    """DLFusion's synthetic layers: single 3x3 convs over channel sizes and op counts (no latencies)."""
    rows, graphs = [], []
    for c in [4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048]:
        for macs in np.logspace(4, 10.5, 14):
            s = size_for_macs(macs, c)
            if s:
                graphs.append(conv_chain(c, s))
                rows.append({"channels": c, "target_macs": macs, "size": s})
    return pd.DataFrame(rows), graphs


def best_cores_map(hw: HardwareConfig, latency_table=None) -> pd.DataFrame:
    """Best core count over the study grid; `latency_table(graphs)` -> (n, K) ms, default the simulator."""
    df, graphs = study_grid()
    lat = latency_table(graphs) if latency_table is not None else _latency_table(graphs, hw)
    df["macs"] = [g.total_macs for g in graphs]
    df["best_cores"] = np.asarray(hw.core_counts)[lat.argmin(1)]
    df["speedup_vs_1core"] = lat[:, 0] / lat.min(1)
    return df


def fusion_speedup(hw: HardwareConfig) -> pd.DataFrame:
    """Best fused latency of an n-layer chain against the sum of its layers' best solo latencies."""
    cases = {"small (c32, 14x14)": (32, 14), "medium (c128, 28x28)": (128, 28), "large (c256, 112x112)": (256, 112)}
    rows = []
    for label, (c, s) in cases.items():
        solo = _latency_table([conv_chain(c, s)], hw)[0].min()
        chains = [conv_chain(c, s, n) for n in range(1, hw.max_fusion + 1)]
        lat = _latency_table(chains, hw)
        for n, row in zip(range(1, hw.max_fusion + 1), lat):
            rows.append({"case": label, "length": n, "fused_ms": row.min(), "unfused_ms": n * solo,
                         "best_cores": hw.core_counts[int(row.argmin())], "speedup": n * solo / row.min()})
    return pd.DataFrame(rows)


def _plot(kind: str, df: pd.DataFrame, hw: HardwareConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def run_study(hw: HardwareConfig, out: str | Path) -> dict[str, Path]:
    """Compute the three studies and the device-effect study, write CSV + PNG for each; returns
    the files written."""
    from . import effects_study

    hw.require_device()
    out = Path(out)
    files = {}
    for name, kind, fn in [("study_latency_vs_cores", "cores", latency_vs_cores),
                           ("study_best_cores", "heat", best_cores_map),
                           ("study_fusion_speedup", "fusion", fusion_speedup)]:
        df = fn(hw)
        files[name + ".csv"] = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
        _plot(kind, df, hw, out / f"{name}.png")
        files[name + ".png"] = out / f"{name}.png"
    files.update(effects_study.run(hw, out))
    return files


def main(args) -> int:
    hw = load_hardware(args.hw)
    out = Path(args.out or Path("reports") / hw_slug(args.hw))
    files = run_study(hw, out)
    best = pd.read_csv(files["study_best_cores.csv"])
    fus = pd.read_csv(files["study_fusion_speedup.csv"])
    print(f"{hw.name}: best core count by op count (3x3 conv, 64 channels):")
    lv = pd.read_csv(files["study_latency_vs_cores.csv"])
    for macs, d in lv.groupby("macs"):
        print(f"  {macs:12.3g} MACs -> {int(d.loc[d['latency_ms'].idxmin(), 'cores']):2d} cores")
    print(f"best core count spans {best['best_cores'].min()}..{best['best_cores'].max()} over the heat map")
    for case, d in fus.groupby("case", sort=False):
        top = d.loc[d["speedup"].idxmax()]
        print(f"fusion {case}: best speed-up {top['speedup']:.2f}x at {int(top['length'])} layers")
    from .effects_study import summary_lines

    print("device effects on the oracle's zoo plans (without -> with; mean cores per kernel weighted by work):")
    for line in summary_lines(pd.read_csv(files["study_effects_on_plans.csv"])):
        print(line)
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0
