"""The sub-commands of `autotune`: each calls the library, prints a summary and writes the plots and
JSON it was asked for. Heavy imports stay inside the commands, so `autotune --help` is quick."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from autotune.artefacts import check_folder_output
from autotune.cli.report import format_table
from autotune.costmodel.model_io import check_model_for
from autotune.errors import AutotuneError
from autotune.fileio import atomic_write_json
from autotune.frontends.onnx_batch import parse_dims
from autotune.hardware.config import HardwareConfig, hw_slug, is_host_cpu, load_hardware
from autotune.planning.costs import table_cost


def _print_table(rows: Sequence[Sequence[object]], header: list[str], right: set[int] | None = None) -> None:
    print(format_table(rows, header, right))


# -- foundation --------------------------------------------------------------------------------
def cmd_zoo(args: argparse.Namespace) -> int:
    from autotune.frontends import zoo

    rows, out = [], []
    for name in zoo.names():
        g = zoo.build(name, batch=args.batch)
        rows.append([name, str(len(g)), f"{g.total_macs / 1e9:.3f}", f"{g.params / 1e6:.2f}"])
        out.append({"model": name, "layers": len(g), "macs": g.total_macs, "params": g.params})
    _print_table(rows, ["model", "layers", "GMACs", "params(M)"], right={1, 2, 3})
    if args.json:
        atomic_write_json(args.json, {"batch": args.batch, "models": out})
    return 0


def inspect_dict(g, model: str) -> dict:
    """The `autotune inspect --json` document of a graph."""
    return {
        "model": model, "batch": g.batch, "total_macs": g.total_macs, "params": g.params,
        "layers": [{"name": lyr.name, "op": lyr.op, "inputs": list(lyr.inputs), "outputs": list(lyr.outputs),
                    "output_shape": list(lyr.out_shape), "macs": lyr.macs, "in_channels": lyr.in_channels,
                    "out_channels": lyr.out_channels} for lyr in g.order],
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    from autotune.frontends.loader import load_graph

    g = load_graph(args.model, batch=args.batch, strict=args.strict, dims=parse_dims(args.dim))
    rows = []
    for lyr in g.order:
        kind = lyr.op + ("/dw" if lyr.depthwise else "") + (f"+{lyr.attrs.act}" if lyr.attrs.act else "")
        rows.append([lyr.name, kind, "x".join(map(str, lyr.out_shape)), f"{lyr.macs:,}", str(lyr.in_channels),
                     str(lyr.out_channels)])
    _print_table(rows, ["layer", "op", "output", "MACs", "in_ch", "out_ch"], right={3, 4, 5})
    print(f"\n{g.name}: {len(g)} layers, batch {g.batch}, {g.total_macs / 1e9:.3f} GMACs, "
          f"{g.params / 1e6:.2f} M params")
    if args.json:
        atomic_write_json(args.json, inspect_dict(g, args.model))
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from autotune.frontends.loader import load_graph
    from autotune.frontends.onnx_export import export_onnx

    g = load_graph(args.model, batch=args.batch)
    export_onnx(g, args.out)
    print(f"wrote {args.out}: {len(g)} layers")
    return 0


# -- the study ---------------------------------------------------------------------------------
#: The study's figures: table name -> the plot kind of `plots.plot_study` (None: its own plot, or none).
_STUDY_PLOTS = {"study_latency_vs_cores": "cores", "study_best_cores": "heat", "study_fusion_speedup": "fusion"}


def cmd_study(args: argparse.Namespace) -> int:
    from autotune.cli import plots
    from autotune.fileio import atomic_write_text
    from autotune.studies import dlfusion_study as study
    from autotune.studies import effects_study

    hw = load_hardware(args.hw)
    out = Path(args.out or Path("reports") / hw_slug(args.hw))
    check_folder_output(out, None, others_ok=True)
    tables = {"study_latency_vs_cores": study.latency_vs_cores(hw), "study_best_cores": study.best_cores(hw),
              "study_fusion_speedup": study.fusion_speedup(hw),
              "study_device_effects": effects_study.effect_curves(hw),
              "study_effects_on_plans": effects_study.effects_on_plans(hw)}
    files = []
    for name, df in tables.items():
        files.append(atomic_write_text(out / f"{name}.csv", df.to_csv(index=False)))
        if name in _STUDY_PLOTS:
            files.append(plots.plot_study(_STUDY_PLOTS[name], df, hw, out / f"{name}.png"))
    files.append(plots.plot_effects(tables["study_device_effects"], hw, out / "study_device_effects.png"))
    lv, best, fus = tables["study_latency_vs_cores"], tables["study_best_cores"], tables["study_fusion_speedup"]
    print(f"{hw.name}: best core count by op count (3x3 conv, 64 channels):")
    for macs, d in lv.groupby("macs"):
        print(f"  {macs:12.3g} MACs -> {int(d.loc[d['latency_ms'].idxmin(), 'cores']):2d} cores")
    print(f"best core count spans {best['best_cores'].min()}..{best['best_cores'].max()} over the heat map")
    for case, d in fus.groupby("case", sort=False):
        top = d.loc[d["speedup"].idxmax()]
        print(f"fusion {case}: best speed-up {top['speedup']:.2f}x at {int(top['length'])} layers")
    print("device effects on the oracle's zoo plans (without -> with; mean cores per kernel weighted by work):")
    for line in effects_study.summary_lines(tables["study_effects_on_plans"]):
        print(line)
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


# -- the pipeline --------------------------------------------------------------------------------
def cmd_synth(args: argparse.Namespace) -> int:
    from autotune.cli import plots
    from autotune.synth.pipeline import run

    if args.hw_family:
        from autotune.cli.universal_commands import cmd_synth_family

        return cmd_synth_family(args)
    if args.devices is not None or args.siblings is not None:
        raise AutotuneError(f"--{'devices' if args.devices is not None else 'siblings'} applies to --hw-family only")
    args.hw = args.hw or "mlu100"
    hw = load_hardware(args.hw)
    folder = Path(args.out or Path("data") / hw_slug(args.hw))
    t0 = time.perf_counter()
    if args.backend == "onnxruntime":
        return _synth_on_this_cpu(hw, folder, args, t0)
    if args.plans or args.zoo_share is not None:
        raise AutotuneError(f"--{'plans' if args.plans else 'zoo-share'} measures this CPU (--backend onnxruntime); "
                            "for a device of yours use `autotune learn`")
    if not hw.has_device:
        raise AutotuneError(f"{hw.name} has no device: section, so the simulator cannot label it; measure it "
                            "instead (`--backend onnxruntime` for the cpu preset, or export-groups / measure / "
                            "import-profile for a device of yours)")
    m = run(hw, folder, args.budget, args.seed, args.jobs, args.scheduler, args.force, progress=True,
            sampling=args.sampling)
    png = plots.plot_coverage(folder, folder / "coverage.png",
                              f"{hw.name}: synthetic groups vs zoo candidates ({m['sampling']}, "
                              f"seed {m['seed']}, {m['labels']} labels)")
    dt = time.perf_counter() - t0
    done = m["labelled_shards"]
    rate = sum(m["shard_rows"]) / m["label_s"] if done == len(m["shards"]) and m["label_s"] > 0 else None
    unit = "rounds" if m["sampling"] == "active" else "shards"
    print(f"{folder}/: {m['labels']} labels ({m['sampling']} sampling, budget {m['budget']}), "
          f"{done} of {len(m['shards'])} {unit} labelled now" + (f" at {rate:,.0f} labels/s" if rate else "")
          + f"; zoo.parquet {m['zoo']['rows'] if m['zoo'] else 0} rows (evaluation, not counted); {dt:.1f} s")
    print(f"coverage plot: {png}")
    return 0


def _synth_on_this_cpu(hw: HardwareConfig, folder: Path, args: argparse.Namespace, t0: float) -> int:
    from autotune.costmodel.training import MEASURED_PARAMS
    from autotune.hardware.host import host_cores
    from autotune.synth.cpu_labels import synth_by_measuring
    from autotune.synth.plan_labels import ZOO_SHARE
    from autotune.synth.profiles import CPU_BUDGET
    from autotune.synth.settle import measured_logs, timer_report

    if hw.cores > host_cores():
        raise AutotuneError(f"--backend onnxruntime measures this host ({host_cores()} cores); {hw.name} has "
                            f"{hw.cores} cores (use --hw cpu)")
    budget = args.budget or CPU_BUDGET
    plans = [n.strip() for n in args.plans.split(",") if n.strip()] if args.plans else None
    zoo_share = ZOO_SHARE if args.zoo_share is None else args.zoo_share
    m = synth_by_measuring(hw, folder, budget, args.seed, progress=True, plans=plans,
                           log=lambda line: print(line, flush=True), zoo_share=zoo_share)
    if m.get("kept"):
        print(f"{folder}/: {m['rows']} labels measured on this CPU earlier with the same settings (kept)")
        return 0
    for n in m.get("notes", []):
        print(f"note: {n}")
    print(f"{folder}/: {m['rows']} labels measured on this CPU with ONNX Runtime (budget {budget}); "
          f"{len(m['outliers'])} outlier repeats; {time.perf_counter() - t0:.1f} s")
    # the kernels the settle passes timed again show how far a label moves from run to run: a noisy
    # spell on this machine limits every accuracy figure `train` then reports
    print(timer_report(measured_logs(hw, folder, str(MEASURED_PARAMS["featurizer"]))))
    return 0


#: The plot published next to a trained model.
PRED_PLOT = "predicted_vs_simulated.png"


def _by_kind_line(by: dict) -> str:
    return "  by kind, within 10% [rows]: " + ", ".join(f"{k} {a['within10']:.0%} [{a['n']}]" for k, a in by.items())


def _train_lines(metrics: dict) -> list[str]:
    v = metrics["validation"]
    lines = [f"validation (held-out groups; predictors fitted without them): MAPE {v['mape']:.2%}, "
             f"within 5% {v['within5']:.1%}, within 10% {v['within10']:.1%}  [{v['n']} rows]"]
    if metrics.get("validation_by_kind"):
        lines.append(_by_kind_line(metrics["validation_by_kind"]))
    if metrics.get("cross_validation_skipped"):
        lines.append(f"not cross-validated: {metrics['cross_validation_skipped']}")
    c = metrics.get("cross_validation")
    if c:
        lines.append(f"cross-validated ({c['folds']} group folds, every row held out once): MAPE {c['mape']:.2%}, "
                     f"median error {c['median']:.1%}, within 5% {c['within5']:.1%}, within 10% {c['within10']:.1%}  "
                     f"[{c['n']} rows]")
        if metrics.get("cross_validation_by_kind"):
            lines.append(_by_kind_line(metrics["cross_validation_by_kind"]))
    t = metrics.get("timing_agreement")
    if t:
        lines.append(f"  two timings of one kernel within 10% of each other: {t['within10']:.1%} of {t['n']} kernels "
                     "timed twice (how far this timer lets a held-out figure go)")
    z = metrics.get("zoo")
    if z:
        lines.append(f"zoo groups (never trained on):          MAPE {z['mape']:.2%}, within 5% {z['within5']:.1%}, "
                     f"within 10% {z['within10']:.1%}, core-rank corr {z['rank_corr']:.3f}, "
                     f"best core {z['best_core_agree']:.1%}  [{z['n']} rows]")
        lines.append("  per network:  " + ", ".join(f"{m} {a['within10']:.0%}" for m, a in z["per_model"].items()))
        lines.append("  per length:   " + ", ".join(f"{n}:{a['within10']:.0%}" for n, a in z["per_length"].items()))
    return lines


def cmd_train(args: argparse.Namespace) -> int:
    from autotune.cli import plots
    from autotune.costmodel.training import TrainResult, train

    if args.universal:
        from autotune.cli.universal_commands import cmd_train_universal

        if getattr(args, "cv", None) is not None:
            raise AutotuneError("--cv cross-validates a part's own model; train --universal validates on "
                                "held-out devices instead")
        if getattr(args, "force", False):
            raise AutotuneError("--force replaces a model of another part with a part's own; train --universal "
                                "writes the universal model, which needs none")
        return cmd_train_universal(args)
    args.hw = args.hw or "mlu100"
    hw = load_hardware(args.hw)
    slug = hw_slug(args.hw)
    data_dir = Path(args.data or f"data/{slug}")
    out_dir = Path(args.out or f"models/{slug}")
    check_model_for(out_dir, hw.name, getattr(args, "force", False))

    def extras(res: TrainResult) -> dict[str, bytes]:
        if res.zoo is None or res.zoo_pred is None:
            return {}
        return {PRED_PLOT: plots.plot_pred_vs_sim(res.zoo, res.zoo_pred,
                                                  f"{hw.name}: zoo groups, predicted vs simulated")}

    if not (data_dir / "manifest.json").is_file():
        raise AutotuneError(f"no dataset in {data_dir}/ (manifest.json missing); run `make synth HW={args.hw}` first")
    params = {} if getattr(args, "threads", None) is None else {"n_jobs": args.threads}
    res = train(hw, data_dir, out_dir, seed=args.seed, scheduler=args.scheduler, progress=True, extras=extras,
                cv=args.cv, **params)
    model, meta = res.model, res.meta
    print(f"trained on {meta['dataset_rows']} rows in {meta['metrics']['fit_s']} s "
          f"({model.best_iteration_ + 1} trees); saved to {out_dir}/")
    for line in _train_lines(meta["metrics"]):
        print(line)
    if res.zoo is not None:
        print(f"plot: {out_dir / PRED_PLOT}")
    if getattr(args, "json", None):
        atomic_write_json(args.json, meta)
    return 0


def load_model(hw: HardwareConfig, hw_arg: str, models_dir: str | Path = "models", cost: str = "learned",
               model_dir: str | Path | None = None):
    """The trained model for this hardware: `model_dir` if given, else models_dir/<hw argument's stem>
    or models_dir/<part's name>; with cost="universal", models/universal. A clear error says how to
    make one."""
    from autotune.costmodel.model import LatencyModel
    from autotune.fileio import recover_folder

    if cost == "universal":
        if model_dir is not None:
            raise AutotuneError("--model-dir names the part's own model; --cost universal uses "
                                "<models-dir>/universal")
        from autotune.cli.universal_commands import load_universal_model

        return load_universal_model(hw, models_dir)
    tried = [Path(model_dir)] if model_dir is not None else list(dict.fromkeys(
        [Path(models_dir) / hw_slug(hw_arg), Path(models_dir) / hw_slug(hw.name)]))
    for folder in tried:
        try:
            recover_folder(folder)  # a publication killed between its renames leaves the old model aside
        except OSError:
            pass
        if (folder / "meta.json").is_file():
            return LatencyModel.load(folder, hw)
    where = " or ".join(f"{f}/" for f in tried)
    if model_dir is not None:
        what = "is a file, not a model folder" if Path(model_dir).is_file() else (
            "does not exist" if not Path(model_dir).exists() else "holds no meta.json")
        raise AutotuneError(f"--model-dir {model_dir} {what}; give the --out folder of `autotune train`, "
                            "`learn` or `adapt`")
    if hw.has_device:
        how = f"run `make synth train HW={hw_arg}`, or give the model folder with --model-dir"
    else:
        how = (f"measure the part (`autotune export-groups --hw {hw_arg} --groups N --out G`, run G/manifest.csv "
               f"on it, `autotune import-profile G/measured.csv --hw {hw_arg} --out D`, `autotune train --hw "
               f"{hw_arg} --data D --out M`), then give --model-dir M")
    raise AutotuneError(f"no trained model for hardware {hw.name!r} in {where}; {how}")


def _measured_table(folder: str, hw: HardwareConfig, graph):
    """The measured table of `graph`'s candidates in an export folder, checked against the graph."""
    from autotune.synth.profiles import measured_table

    _, table = measured_table(folder, hw)
    if table.network != graph.name:
        raise AutotuneError(f"{folder}/ holds the candidates of {table.network!r}, not of {graph.name!r}")
    return table


def cmd_tune(args: argparse.Namespace) -> int:
    from autotune.cli import plots
    from autotune.cli.report import plan_table
    from autotune.frontends.loader import load_graph
    from autotune.planning import planner
    from autotune.planning import strategies as strat

    hw = load_hardware(args.hw)
    graph = load_graph(args.model, batch=args.batch, strict=args.strict, dims=parse_dims(args.dim))
    strategy = args.strategy
    if args.measure_budget is not None:
        if strategy not in ("learned", "learned+measure"):
            raise AutotuneError(f"--measure-budget refines the learned plan; it does not apply to "
                                f"--strategy {strategy}")
        strategy = "learned+measure"
    table = _measured_table(args.measured, hw, graph) if args.measured else None
    if args.measured and not args.verify:
        raise AutotuneError("--measured is what --verify looks plans up in; add --verify")
    if args.verify and not hw.has_device and table is None and not is_host_cpu(hw):
        raise AutotuneError(f"{hw.name} has no device: section, so --verify has nothing to run the plan on; measure "
                            f"the network's candidates (`autotune export-groups --hw {args.hw} --model {args.model}`, "
                            "then your part) and add --measured DIR")
    st = strat.get(strategy)
    # a part known only by its datasheet: a searching baseline searches on the part's model
    want_model = st.needs_model or (not hw.has_device and strategy != "analytic")
    if strategy == "oracle" and not hw.has_device and table is None:
        raise AutotuneError(f"the oracle plans on the device, and {hw.name} has no device: section; give the measured "
                            "candidates with --measured DIR --verify")
    model = (load_model(hw, args.hw, args.models_dir, args.cost, args.model_dir)
             if want_model and strategy != "oracle" else None)
    t0 = time.perf_counter()
    p = strat.run(strategy, graph, hw, model=model, measure_budget=args.measure_budget or 0, table=table)
    plan_s = time.perf_counter() - t0
    known = model
    if known is None and not hw.has_device and args.cost == "learned":
        try:  # a plan on the datasheet alone is still checked against what the part could not run
            known = load_model(hw, args.hw, args.models_dir, args.cost, args.model_dir)
        except AutotuneError:
            known = None  # no model of the part: nothing is known to fail
    blocked = planner.known_unrunnable(p, graph, hw, known) if known is not None else []
    if blocked:
        grp = blocked[0]
        raise AutotuneError(f"{strategy}'s plan of {args.model} holds {len(blocked)} kernel(s) {hw.name} could not run "
                            f"when measured (first: {_layers_text(grp.layers)} at {grp.cores} cores); "
                            + ("no plan avoids them: measure the layers alone at other core counts"
                               if strategy in SEARCHING else "its rule cannot avoid them: use --strategy learned"))
    whole_ms = None
    if args.verify and table is not None:
        planner.verify(p, graph, hw, table_cost(table, hw))
    elif args.verify and not hw.has_device:
        from autotune.device.ort import verify_plan

        whole_ms = verify_plan(p, graph, hw)  # measured on this CPU
    elif args.verify:
        planner.verify(p, graph, hw)
    d = p.to_dict()
    if model is not None:
        d["cost_model"] = args.cost
        n_out, why, nov = planner.outside_training(p, graph, hw, model)
        d["kernels_outside_training"] = n_out
        if nov == nov:
            d["novelty"] = round(nov, 3)
        if n_out:
            worst = (", ".join(f"{c} beyond its range: {k}" for c, k in sorted(why.items(), key=lambda kv: -kv[1])[:3])
                     or "unlike every training group, though within each size's range")
            print(f"warning: {n_out} of the plan's {len(p.groups)} kernels lie outside the model's training data "
                  f"({worst}): their latencies are extrapolated; measure groups like them (`autotune export-groups "
                  f"--model {args.model}`) and train on them", file=sys.stderr)
    if table is not None:
        d["measured_on"] = f"the measured table {table.source}"
    elif args.verify and hw.has_device:
        d["measured_on"] = f"the simulator playing {hw.name} (noise-free)"
    if whole_ms is not None:
        d["measured_on"] = "this CPU (ONNX Runtime, each group one session with its cores as threads)"
        d["whole_model_one_session_ms"] = whole_ms
    print(plan_table(d))
    if whole_ms is not None:
        planned = d["device_ms"]
        verdict = "the plan is faster" if planned < whole_ms else "ORT's default is faster"
        print(f"measured on this CPU: plan {planned:.3f} ms (groups run one after another) vs the whole model as "
              f"one ONNX Runtime session at {hw.cores} threads {whole_ms:.3f} ms: {verdict} "
              f"({whole_ms / planned:.2f}x)")
    measured = f", {p.device_calls} device measurements" if strategy == "learned+measure" else ""
    zero_shot = ", universal model: no labels from this part" if model is not None and args.cost == "universal" else ""
    print(f"planned {len(graph)} layers in {plan_s:.3f} s ({strategy}{measured}{zero_shot})")
    if args.out:
        atomic_write_json(args.out, d)
        print(f"plan: {args.out}")
    if args.plot:
        plots.plot_plan(d, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _finite_json(obj):
    """`obj` with every non-finite float as None: strict JSON has no Infinity (a plan scored on a measured
    table that holds a kernel the part could not run is inf ms)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


#: The strategy that searches every plan on the model: if its plan holds a kernel the part could not run,
#: no plan avoids it (the others follow a rule or a local search).
SEARCHING = ("learned",)


def _layers_text(layers: list[str]) -> str:
    return layers[0] if len(layers) == 1 else f"layers {layers[0]} .. {layers[-1]}"


def _model_specs(arg: str) -> list[str]:
    from autotune.frontends import zoo

    if arg == "all":
        return zoo.names()
    specs = [s.strip() for s in arg.split(",") if s.strip()]
    if not specs:
        raise AutotuneError("--models is empty: give 'all' or comma-separated zoo names and .onnx paths")
    return specs


def cmd_eval(args: argparse.Namespace) -> int:
    from autotune.cli import plots
    from autotune.cli.report import eval_table
    from autotune.planning.evaluation import check_dims, run_eval

    hw = load_hardware(args.hw)
    tables = None
    if args.measured:
        from autotune.synth.profiles import measured_table

        if args.models != "all":
            raise AutotuneError("--measured names the networks (each export folder is one); leave out --models")
        if args.measure_budget is not None:
            raise AutotuneError("--measure-budget measures on the simulator; it does not apply with --measured")
        pairs = [measured_table(d, hw) for d in args.measured]
        specs, tables = [sp for sp, _ in pairs], [t for _, t in pairs]
    elif not hw.has_device:
        raise AutotuneError(f"{hw.name} has no device: section, so eval has no oracle to score on; measure the "
                            f"networks' candidates (`autotune export-groups --hw {args.hw} --model NET`, then your "
                            "part) and give the folders with --measured DIR [DIR ...]")
    else:
        specs = _model_specs(args.models)
    check_dims(specs, parse_dims(args.dim))
    model = load_model(hw, args.hw, args.models_dir, args.cost, args.model_dir)
    if args.measure_budget is not None and args.measure_budget < 0:
        raise AutotuneError(f"--measure-budget must be at least 0, got {args.measure_budget}")
    result = run_eval(specs, hw, model, batch=args.batch, progress=True, measure_budget=args.measure_budget,
                      dims=parse_dims(args.dim), strict=args.strict, tables=tables)
    print(eval_table(result, result["strategies"]))
    n = len(result["models"])
    sm = result["summary"]
    print(f"learned at least as fast as every baseline on {sm['learned_beats_baselines']}/{n} networks "
          f"(worst loss to the best baseline {sm['max_loss_vs_best_baseline']:+.2%}); analytic regret geomean "
          f"{sm['analytic_geomean_regret']:.2%}, max {sm['analytic_max_regret']:.2%}")
    far = [(m["model"], m["strategies"]["learned"].get("kernels_outside_training", 0)) for m in result["models"]]
    far = [(name, k) for name, k in far if k]
    if far:
        print("warning: learned plans use kernels outside the model's training data (extrapolated): "
              + ", ".join(f"{name} {k}" for name, k in far), file=sys.stderr)
    if args.measure_budget is not None:
        print(f"learned+measure (at most {args.measure_budget} device measurements per network, at most "
              f"{sm['learned+measure_max_device_calls']} used): regret geomean "
              f"{sm['learned+measure_geomean_regret']:.2%}, max {sm['learned+measure_max_regret']:.2%}")
    if args.json:
        atomic_write_json(args.json, _finite_json(result))
        print(f"json: {args.json}")
    suffix = "_universal" if args.cost == "universal" else ""  # never over the part's own model's plot
    plot = args.plot or str(Path("reports") / hw_slug(args.hw) / f"eval_speedups{suffix}.png")
    plots.plot_eval(result, result["strategies"], plot)
    print(f"plot: {plot}")
    return 0
