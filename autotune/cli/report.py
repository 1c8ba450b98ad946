"""Text tables of plans and evaluations for the terminal; they read the JSON forms, so saved results print too."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(rows: Sequence[Sequence[object]], header: Sequence[str], right: set[int] | None = None) -> str:
    """A plain text table with aligned columns (`right` = indices of right-aligned columns)."""
    right = right or set()
    cells = [[str(v) for v in header]] + [[str(v) for v in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(v.rjust(w) if k in right else v.ljust(w) for k, (v, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def _layers_label(layers: list[str], width: int = 48) -> str:
    s = layers[0] if len(layers) == 1 else f"{layers[0]} .. {layers[-1]} ({len(layers)})"
    return s if len(s) <= width else s[: width - 1] + "…"


def plan_table(plan: dict) -> str:
    """Groups of a plan (JSON form): index, layers, cores, predicted and simulated ms."""
    sim = "device_ms" in plan
    rows = []
    for k, g in enumerate(plan["groups"]):
        row = [k, _layers_label(g["layers"]), len(g["layers"]), g["cores"], f"{g['predicted_ms']:.4f}"]
        if sim:
            row.append(f"{g['device_ms']:.4f}")
        rows.append(row)
    word = "measured" if "measured_on" in plan else "simulated"  # a real device (the cpu preset) or the simulator
    header = ["#", "layers", "n", "cores", "pred ms"] + ([f"{word[:4]} ms"] if sim else [])
    total = f"total: {len(plan['groups'])} kernels, predicted {plan['predicted_ms']:.3f} ms"
    if sim:
        err = plan["predicted_ms"] / plan["device_ms"] - 1
        total += f", {word} {plan['device_ms']:.3f} ms (prediction error {err:+.1%})"
    return format_table(rows, header, right={0, 2, 3, 4, 5}) + "\n" + total


def eval_table(result: dict, strategies: list[str]) -> str:
    """The paper-style table: simulated ms per strategy, speed-up over none, regret vs oracle."""
    rows = []
    for m in result["models"]:
        s = m["strategies"]
        rows.append([m["model"], m["layers"]] + [f"{s[k]['ms']:.3f}" for k in strategies]
                    + [f"{m['speedup']:.2f}x", f"{m['regret']:.2%}", f"{s['learned']['plan_s']:.3f}",
                       s["oracle"]["device_calls"]])
    header = ["model", "layers"] + [f"{k} ms" for k in strategies] + ["speedup", "regret", "plan s", "oracle sims"]
    sm = result["summary"]
    foot = (f"geomean speed-up {sm['geomean_speedup']:.2f}x (min {sm['min_speedup']:.2f}x, max "
            f"{sm['max_speedup']:.2f}x); regret vs oracle geomean {sm['geomean_regret']:.2%}, "
            f"max {sm['max_regret']:.2%}")
    return format_table(rows, header, right=set(range(1, len(header)))) + "\n" + foot
