"""Whole networks on this CPU (issue 28): for each zoo network, the learned plan's predicted latency,
its measured latency (each group one ONNX Runtime session at its core count as threads, groups one
after another) and the whole network as one ORT session at every thread: does the plan hold, and
does it win anywhere?

    make synth train HW=cpu                      # the cpu model first (models/cpu)
    python bench/bench_cpu.py                    # 10 networks, writes reports/cpu/bench_cpu.{json,png}

With labels on these networks' own plans (30% of 1,200, autotune/synth/plan_labels.py):

    autotune synth --hw cpu --backend onnxruntime --budget 1200 --out D --plans \
        resnet18,resnet50,mobilenet_v2,squeezenet1_1,googlenet,efficientnet_b0,densenet121,mobilenet_v1,vgg16,alexnet
    autotune train --hw cpu --data D --out M/cpu && python bench/bench_cpu.py --models-dir M
    python bench/bench_cpu.py --networks resnet18,mobilenet_v2 --models-dir models
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autotune.costmodel.model import LatencyModel  # noqa: E402
from autotune.device.ort import OrtDevice, plan_models, record_plan  # noqa: E402
from autotune.fileio import atomic_write_json  # noqa: E402
from autotune.frontends.loader import load_graph  # noqa: E402
from autotune.hardware.config import load_hardware  # noqa: E402
from autotune.planning import strategies  # noqa: E402

NETWORKS = ["resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "googlenet", "efficientnet_b0",
            "densenet121", "mobilenet_v1", "vgg16", "alexnet"]


def bench(networks: list[str], model: LatencyModel, hw, passes: int = 3) -> list[dict]:
    """One row per network: predicted, measured and whole-model ms of the learned plan. Every plan's
    kernels and whole network are timed in the same passes, so a kernel's passes lie a minute or
    more apart, as its labels' did (docs/costmodel.md, "Timing on the CPU")."""
    plans, models, threads, spans = [], [], [], []
    t0 = time.perf_counter()
    for net in networks:
        g = load_graph(net)
        p = strategies.run("learned", g, hw, model=model)
        m, k = plan_models(p, g, hw)
        spans.append((len(models), len(models) + len(m)))
        plans.append(p)
        models += m
        threads += k
    ms = OrtDevice(hw, passes=passes).time(models, threads, progress=True)
    print(f"{'network':16s} {'kern':>4s} {'pred ms':>10s} {'meas ms':>10s} {'error':>8s} {'ORT ms':>10s} "
          f"{'plan/ORT':>8s}")
    rows = []
    for net, p, (a, b) in zip(networks, plans, spans):
        whole = record_plan(p, ms[a:b])
        measured = float(p.device_ms or 0.0)
        rows.append({"model": net, "kernels": len(p.groups), "predicted_ms": p.predicted_ms, "measured_ms": measured,
                     "error": p.predicted_ms / measured - 1.0, "whole_model_ms": whole,
                     "plan_speedup_vs_ort": whole / measured})
        r = rows[-1]
        print(f"{net:16s} {r['kernels']:4d} {r['predicted_ms']:10.3f} {r['measured_ms']:10.3f} {r['error']:+8.1%} "
              f"{whole:10.3f} {r['plan_speedup_vs_ort']:7.2f}x", flush=True)
    print(f"planned and timed in {time.perf_counter() - t0:.0f} s ({passes} passes over {len(models)} sessions)")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 4))
    for k, (key, label) in enumerate([("predicted_ms", "plan, predicted"), ("measured_ms", "plan, measured"),
                                      ("whole_model_ms", "whole model, one ORT session")]):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=label)
    ax.set_xticks(x, [r["model"] for r in rows], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("this CPU: learned plan predicted vs measured, and ONNX Runtime's default")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--out", default="reports/cpu/bench_cpu")
    ap.add_argument("--passes", type=int, default=3, help="passes over all the sessions; each takes the fastest")
    args = ap.parse_args()
    hw = load_hardware("cpu")
    model = LatencyModel.load(Path(args.models_dir) / "cpu", hw)
    rows = bench([n.strip() for n in args.networks.split(",") if n.strip()], model, hw, args.passes)
    within = int(sum(abs(r["error"]) <= 0.10 for r in rows))
    wins = int(sum(r["plan_speedup_vs_ort"] > 1.0 for r in rows))
    # the machine's speed moves by 10-20% over minutes (docs/costmodel.md, "Timing on the CPU"): the
    # median error is what the whole run shares, the rest is the model's
    shared = float(np.median([np.log1p(r["error"]) for r in rows]))
    within_shared = int(sum(abs(np.expm1(np.log1p(r["error"]) - shared)) <= 0.10 for r in rows))
    print(f"plan within ±10% of its measured latency on {within}/{len(rows)} networks; the plan beats one ORT "
          f"session on {wins}/{len(rows)}")
    print(f"median error {np.expm1(shared):+.1%} (the machine now against when it was labelled); within ±10% of "
          f"that on {within_shared}/{len(rows)}")
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), {"hardware": hw.name, "rows": rows, "within10": within,
                                                 "plan_wins": wins, "median_error": float(np.expm1(shared)),
                                                 "within10_of_median": within_shared})
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
