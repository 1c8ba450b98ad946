"""Commands for one model over a hardware family: synth --hw-family, train --universal, adapt, and
the universal model as a cost source (`--cost universal` in tune and eval)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from autotune.artefacts import DATASET, MODEL, check_folder_output
from autotune.costmodel.model_io import check_model_for
from autotune.errors import AutotuneError
from autotune.fileio import atomic_write_json
from autotune.hardware.config import HardwareConfig, hw_slug, load_hardware
from autotune.synth import SAMPLINGS

#: Where `make universal` puts the family dataset and the model (under data/ and models/).
UNIVERSAL = "universal"


def cmd_synth_family(args: argparse.Namespace) -> int:
    from autotune.hardware.family import load_family
    from autotune.synth.family_labels import DEFAULT_BUDGET, DEFAULT_DEVICES, DEFAULT_SIBLINGS, run_family

    if args.hw is not None:
        raise AutotuneError("give --hw (one part) or --hw-family (a family of parts), not both")
    if args.backend != "simulator" or args.scheduler:
        raise AutotuneError("--hw-family labels with the simulator on this machine (no --backend/--scheduler)")
    fam = load_family(args.hw_family)
    devices = args.devices or DEFAULT_DEVICES
    siblings = args.siblings or (1 if args.sampling == "active" else DEFAULT_SIBLINGS)
    budget = args.budget or DEFAULT_BUDGET * siblings // DEFAULT_SIBLINGS
    folder = Path(args.out or Path("data") / UNIVERSAL)
    t0 = time.perf_counter()
    m = run_family(fam, folder, devices, budget, args.seed, args.jobs, args.force, progress=True,
                   sampling=args.sampling, siblings=siblings)
    n = len(m["devices"])
    print(f"{folder}/: {m['labels']} labels on {n} datasheets x {siblings} devices drawn from family {fam.name} "
          f"(hash {fam.hash}, seed {args.seed}), {m['labels'] // (n * siblings)} per device; "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def cmd_train_universal(args: argparse.Namespace) -> int:
    from autotune.costmodel.universal import train_universal

    if args.hw is not None:
        raise AutotuneError("train --universal learns from every device of a family dataset; drop --hw")
    data_dir = Path(args.data or Path("data") / UNIVERSAL)
    out_dir = Path(args.out or Path("models") / UNIVERSAL)
    model, meta = train_universal(data_dir, out_dir, seed=args.seed, progress=True)
    m = meta["metrics"]
    v = m["validation"]
    size = (out_dir / "model.ubj").stat().st_size / 1e6
    print(f"trained one model for family {meta['family']['name']} on {meta['dataset_rows']} rows from "
          f"{meta['devices']} datasheets x {meta['siblings']} devices ({meta['labels']} labels) in {m['fit_s']} s "
          f"({model.best_iteration_ + 1} trees, {size:.1f} MB); "
          f"saved to {out_dir}/")
    print(f"held-out devices (never trained on): MAPE {v['mape']:.2%}, within 10% {v['within10']:.1%} "
          f"[{v['n']} rows, {len(m['validation_devices'])} devices]")
    if getattr(args, "json", None):
        atomic_write_json(args.json, meta)
    return 0


def load_universal_model(hw: HardwareConfig, models_dir: str | Path, advice: str = "adapt it with `autotune adapt`"):
    """models/universal for `hw`, with a warning line for each datasheet value outside its family."""
    from autotune.costmodel.universal import load_universal

    model, outside = load_universal(Path(models_dir) / UNIVERSAL, hw)
    if outside:
        print(f"autotune: warning: {hw.name} lies outside the universal model's family "
              f"({model.meta_['family']['name']}): {'; '.join(outside)}; its predictions extrapolate there "
              f"({advice})", file=sys.stderr)
    return model


def cmd_adapt(args: argparse.Namespace) -> int:
    from autotune.costmodel.probes import PROBE_LABELS
    from autotune.synth.adapt_labels import ADAPT_SAMPLING, adapt_for

    if args.budget < PROBE_LABELS:
        raise AutotuneError(f"--budget {args.budget} is too few labels to adapt on: at least {PROBE_LABELS} (the "
                            "probes' share; a few hundred is a sensible start)")
    hw = load_hardware(args.hw)
    out = Path(args.out or Path(args.models_dir) / hw_slug(args.hw))
    data = Path(args.data) if args.data else Path("data") / f"{hw_slug(args.hw)}.adapt"
    check_folder_output(out, MODEL, inputs=[Path(args.models_dir) / UNIVERSAL, args.data])
    check_model_for(out, hw.name, args.force)
    if not args.data:
        check_folder_output(data, DATASET, flag="the adaptation's dataset")
    universal = load_universal_model(hw, args.models_dir, "the adaptation relies on the part's labels there")
    res = adapt_for(hw, universal, args.budget, data, out, seed=args.seed, sampling=args.sampling or ADAPT_SAMPLING,
                    measured=bool(args.data), progress=True)
    print(f"adapted the universal model to {hw.name} with {res['labels']} labels ({res['source']}): "
          f"{res['kind']} prior, {res['rounds']} correction trees of depth {res['depth']}; cross-validated "
          "log-latency error "
          f"{res['cv_mae_universal']:.3f} -> {res['cv_mae_adapted']:.3f}")
    if res["probed"] is not None:
        p = res["probed"]
        print(f"probed member (the universal model told about the part by its probes): {p['rounds']} correction "
              f"trees of depth {p['depth']}, cross-validated error {p['cv_mae_log']:.3f}; "
              f"its weight in the average {p['weight']:.2f}")
    if res["scratch"] is not None:
        c = res["scratch"]
        print(f"scratch member (a one-part model on these labels alone): {c['trees']} trees, cross-validated "
              f"error {c['cv_mae_log']:.3f}; its weight in the average {c['weight']:.2f}")
    print(f"saved to {out}/ (plain `autotune tune --hw {args.hw}` and `eval` use it)")
    return 0


def add_adapt_parser(sub, seed_type, budget_type) -> None:
    s = sub.add_parser("adapt", help="adapt the universal model to one part with a few measurements")
    s.add_argument("--hw", required=True, help="the part: a preset name or a YAML file")
    s.add_argument("--budget", type=budget_type, required=True, metavar="N",
                   help="labels (group x cores measurements) to spend on this part")
    s.add_argument("--sampling", choices=SAMPLINGS, default=None,
                   help="how the N labels are chosen, as `synth --sampling` (default spread: each group at one "
                        "core count, the most distinct groups per label)")
    s.add_argument("--data", default=None, metavar="DIR",
                   help="use this dataset's measurements (e.g. from import-profile) instead of simulating; "
                        "at most N of its labels")
    s.add_argument("--models-dir", default="models", help="where models/universal lives")
    s.add_argument("--out", default=None, metavar="DIR", help="model folder (default models/<hw>)")
    s.add_argument("--force", action="store_true", help="replace a model trained for another part in --out")
    s.add_argument("--seed", type=seed_type, default=0)
    s.set_defaults(func=cmd_adapt)
