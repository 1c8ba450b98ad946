"""Commands for real measurements: export-groups, measure, import-profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from autotune.artefacts import check_file_output
from autotune.cli.args import fraction, share
from autotune.errors import AutotuneError
from autotune.hardware.config import hw_slug, load_hardware


def cmd_export_groups(args: argparse.Namespace) -> int:
    from autotune.synth.profiles import export_groups, skipped_note

    if sum(x is not None for x in (args.groups, args.model, args.plans)) > 1:
        raise AutotuneError("give one of --groups N (synthetic groups), --model NET (a network's candidates) or "
                            "--plans NETS (the kernels a model's plans use)")
    if args.plans is None:
        given = [f for f, v in (("--limit", args.limit), ("--explore", args.explore or None),
                                ("--model-dir", args.model_dir)) if v is not None]
        if given:
            raise AutotuneError(f"{given[0]} works with --plans only (the kernels a model's plans use)")
    hw = load_hardware(args.hw)
    if args.plans is not None:
        return _export_plan_pairs(args, hw)
    info = export_groups(hw, args.out, args.groups, args.seed, args.model, args.weights, args.force, progress=True,
                         probes=args.probes)
    note = skipped_note(info)
    if note:
        print(f"note: {note}")
    what = f"{args.model}'s candidate groups" if args.model else "synthetic groups"
    what += " and the device probes" if args.probes else ""
    print(f"{args.out}/: {info['groups']} {what} as ONNX ({'with' if args.weights else 'no'} weights), "
          f"{info['rows']} rows to measure in manifest.csv (core counts {info['core_counts']}); see its README.md")
    if info.get("views"):
        print(f"{len(info['views'])} of the groups are pure views (reshapes only, no data moved): measuring them is "
              "optional, and one left unmeasured counts as free (0 ms)")
    return 0


def _export_plan_pairs(args: argparse.Namespace, hw) -> int:
    """export-groups --plans: the pairs the part's model plans with and has not measured."""
    from autotune.cli.commands import load_model
    from autotune.frontends.loader import load_graph
    from autotune.synth.plan_labels import plan_picks
    from autotune.synth.plan_tables import as_pairs
    from autotune.synth.profiles import export_groups

    model = load_model(hw, args.hw, args.models_dir, model_dir=args.model_dir)
    graphs = [load_graph(n) for n in _names(args.plans)]
    picks = plan_picks(hw, model, graphs, args.limit or 10**9, args.explore)
    if not picks:
        print(f"every kernel the plans of {args.plans} use is measured already; nothing to export "
              f"(--explore > 0 also exports close rivals)")
        return 0
    info = export_groups(hw, args.out, pairs=as_pairs(picks), seed=args.seed, weights=args.weights, force=args.force,
                         progress=True)
    print(f"{args.out}/: {info['rows']} (group, cores) pairs the plans use and the model has not measured, "
          f"{info['groups']} groups as ONNX; measure manifest.csv, then `autotune import-profile "
          f"{args.out}/measured.csv --hw {args.hw} --out DATA --append` and train again")
    return 0


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise AutotuneError("--plans/--networks names no network")
    return names


def cmd_measure(args: argparse.Namespace) -> int:
    from autotune.synth.measure import measure
    from autotune.synth.profiles import check_export_for, read_export, write_profile

    out = args.out or str(Path(args.folder) / "measured.csv")
    info, _, manifest = read_export(args.folder)
    check_file_output(out, flag="--out")
    _refuse_other_groups(out, set(manifest["group_id"].astype(str)), args.folder)
    hw = load_hardware(args.hw) if args.hw else None
    if hw is not None:
        check_export_for(info, hw, args.folder)
    as_you_go = args.backend == "onnxruntime"  # appended row by row, resumed by a rerun
    frame, notes = measure(args.folder, args.backend, hw, args.limit, args.seed, args.repeats,
                           timeout_s=args.timeout, progress=True, out=out if as_you_go else None,
                           passes=args.passes)
    if not as_you_go:
        _refuse_other_measurements(out, args.backend)
        write_profile(out, frame)
    for n in notes:
        print(f"note: {n}")
    print(f"{out}: {len(frame)} measurements ({args.backend})")
    return 0


def _refuse_other_groups(out: str, known: set[str], folder: str) -> None:
    """A profile already at `out` that holds groups `folder` does not export (another export's
    measurements) is never replaced or added to: one line, and it stays."""
    import pandas as pd

    if not Path(out).is_file():
        return
    try:
        old = pd.read_csv(out, usecols=lambda c: c.strip() == "group_id", dtype=str)
    except (OSError, ValueError):
        return  # not a profile we can read: _refuse_other_measurements judges it
    old.columns = [c.strip() for c in old.columns]
    if "group_id" in old and not set(old["group_id"].dropna().str.strip()) <= known:
        raise AutotuneError(f"{out} holds measurements of groups that {folder}/ does not export (another "
                            "export's profile?); choose another --out or move it away")


def _refuse_other_measurements(out: str, backend: str) -> None:
    """A profile already at `out` with rows from anything but `backend` (a device's, this CPU's) is
    never replaced: one line, and it stays."""
    import pandas as pd

    if not Path(out).is_file():
        return
    try:
        old = pd.read_csv(out, usecols=lambda c: c == "backend", dtype=str)
    except (OSError, ValueError):
        old = pd.DataFrame()
    if "backend" not in old or not old["backend"].eq(backend).all():
        raise AutotuneError(f"{out} already holds measurements not made by the {backend} backend (a device's "
                            "would be lost); choose another --out or move it away")


def cmd_import_profile(args: argparse.Namespace) -> int:
    from autotune.synth.profiles import import_profile

    hw = load_hardware(args.hw)
    out = args.out or str(Path("data") / hw_slug(args.hw))
    m = import_profile(args.profile, hw, out, args.groups, args.force, append=args.append, again=args.again,
                       how=args.aggregate, unrunnable=args.unrunnable)
    if args.append and m["new_rows"]:
        print(f"{out}/: {m['shard_rows'][-1]} labels added as shard {len(m['shards'])}")
    print(f"{out}/: {m['rows']} labels (group x cores) from {m['measurements']} measurements, marked measured")
    if args.unrunnable:
        total = (m.get("unrunnable") or {}).get("rows", 0)
        print(f"{out}/: {m['new_unrunnable']} pair(s) of the export have no timing: kernels {hw.name} could not run "
              f"({total} listed in the dataset; no plan holds one that never ran)")
    if m["ignored_columns"]:
        print(f"note: columns not used (kept out of the dataset): {', '.join(m['ignored_columns'])}")
    if m["outliers"]:
        print(f"{len(m['outliers'])} outlier repeat(s) (over 5 robust spreads, pooled over all pairs, from their "
              "pair's median; the median is kept):")
        for line in m["outliers"][:10]:
            print(f"  {line}")
    return 0


def _ranged_threads(text: str) -> int:
    from autotune.cli.args import THREADS

    return THREADS(text)


def _ranged_rounds(text: str) -> int:
    from autotune.cli.args import ranged

    return ranged(1, 50)(text)


def cmd_learn(args: argparse.Namespace) -> int:
    import json
    import os
    import shlex
    import signal
    import subprocess

    from autotune.artefacts import MODEL, check_folder_output
    from autotune.costmodel.model_io import check_model_for
    from autotune.data.dataset import MANIFEST
    from autotune.fileio import publish_folder
    from autotune.frontends.loader import load_graph
    from autotune.synth.plan_labels import ROUNDS, SYNTH_SHARE, ZOO_SHARE, learn_part
    from autotune.synth.profiles import read_export, unrunnable_asks
    from autotune.synth.settle import measured_logs, timer_report

    hw = load_hardware(args.hw)
    work = Path(args.work or Path("work") / hw_slug(args.hw))
    out = Path(args.out or Path("models") / hw_slug(args.hw))
    check_folder_output(out, MODEL, inputs=[work])
    check_model_for(out, hw.name, args.force)
    try:
        template = shlex.split(args.measure_cmd)
    except ValueError as err:
        raise AutotuneError(f"--measure-cmd cannot be read: {err}") from None
    if not template or not any("{export}" in t for t in template) or not any("{profile}" in t for t in template):
        raise AutotuneError("--measure-cmd must name {export} (the folder to measure) and {profile} (the CSV to "
                            "write)")
    graphs = [load_graph(n) for n in _names(args.networks)]

    def run(folder: Path) -> Path:
        profile = folder / "measured.csv"
        cmd = [t.replace("{export}", str(folder)).replace("{profile}", str(profile)) for t in template]
        print(f"measuring {len(read_export(folder)[2])} (group, cores) pairs of {folder}/ with --measure-cmd ...",
              flush=True)
        try:  # its own process group, so that a timeout ends whatever it started too
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        except OSError as err:
            raise AutotuneError(f"--measure-cmd could not run {cmd[0]!r}: {err.strerror or err}") from None
        try:
            out, err_text = proc.communicate(timeout=args.measure_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AutotuneError(f"--measure-cmd did not finish {folder}/ within --measure-timeout "
                                f"{args.measure_timeout:g} s; what it wrote to {profile.name} stays") from None
        except BaseException:  # Ctrl-C: the measuring command stops with us
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        done = subprocess.CompletedProcess(cmd, proc.returncode, out, err_text)
        if done.returncode != 0 or not profile.is_file():
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no message"]
            raise AutotuneError(f"--measure-cmd failed on {folder}/ (exit {done.returncode}"
                                f"{'' if profile.is_file() else ', no ' + profile.name}): {why[0]}")
        return profile

    res = learn_part(hw, run, work, args.budget, graphs, seed=args.seed, threads=args.threads,
                     measured_by=args.measure_cmd,
                     synth_share=SYNTH_SHARE if args.synth_share is None else args.synth_share,
                     network_share=args.network_share,
                     zoo_share=ZOO_SHARE if args.zoo_share is None else args.zoo_share,
                     rounds=ROUNDS if args.rounds is None else args.rounds,
                     log=lambda m: print(m, flush=True))
    files = {p.name: p.read_bytes() for p in res.model_dir.iterdir() if p.is_file()}
    publish_folder(out, files)
    first = {kind: sum(r["labels"] for r in res.rounds if r["round"] == 0 and r["kind"] == kind)
             for kind in ("synthetic", "networks")}
    print(f"{out}/: model from {res.labels} labels ({first['synthetic']} synthetic, {first['networks']} on random "
          f"candidate kernels of these and other built-in networks, {res.labels - sum(first.values())} on the "
          f"plans' kernels, {sum(r['round'] > 0 for r in res.rounds)} rounds); dataset {res.data}/")
    failed = unrunnable_asks(json.loads((res.data / MANIFEST).read_text()))  # the manifest alone, not the shards
    if failed:
        print(f"{failed} of those labels asked for kernels {hw.name} could not run (no timing in their profile): "
              f"listed in {res.data}/, and no plan holds one that never ran")
    print(timer_report(measured_logs(hw, res.data, res.model.featurizer)))
    return 0


def add_parsers(sub, seed_type, budget_type, groups_type, repeats_type, seconds_type) -> None:
    """The three commands' argument parsers."""
    s = sub.add_parser("export-groups", help="write layer groups as ONNX files for a device to measure")
    s.add_argument("--hw", default="mlu100")
    s.add_argument("--groups", type=groups_type, default=None, metavar="N", help="synthetic groups to export")
    s.add_argument("--model", default=None, metavar="NAME_OR_ONNX",
                   help="export this network's candidate groups instead")
    s.add_argument("--seed", type=seed_type, default=0)
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--probes", action="store_true",
                   help="also the device probes (24 rows), which `adapt --data` uses to fingerprint the part")
    s.add_argument("--weights", action="store_true", help="write random weights into the files")
    s.add_argument("--plans", default=None, metavar="NETS",
                   help="export the kernels the part's model plans these networks with (comma-separated zoo names "
                        "or .onnx files) and has not measured: the next round of labels")
    s.add_argument("--limit", type=groups_type, default=None, metavar="N", help="with --plans: at most N pairs, "
                   "the most predicted time first")
    s.add_argument("--explore", type=fraction, default=0.0, metavar="F",
                   help="with --plans: unmeasured pairs count F cheaper, so close rivals are exported too")
    s.add_argument("--models-dir", default="models")
    s.add_argument("--model-dir", default=None, metavar="DIR", help="with --plans: the model folder itself")
    s.add_argument("--force", action="store_true", help="replace a folder that is not an export")
    s.set_defaults(func=cmd_export_groups)

    s = sub.add_parser("measure", help="measure an export folder's groups (simulator or onnxruntime)")
    s.add_argument("folder", metavar="DIR")
    s.add_argument("--backend", choices=["simulator", "onnxruntime"], required=True)
    s.add_argument("--hw", default=None, help="the device the simulator plays (any YAML with a device: section)")
    s.add_argument("--out", default=None, metavar="measured.csv", help="default DIR/measured.csv")
    s.add_argument("--limit", type=budget_type, default=None, metavar="N", help="measure at most N rows")
    s.add_argument("--repeats", type=repeats_type, default=7, help="timed runs per row (onnxruntime)")
    s.add_argument("--timeout", type=seconds_type, default=10.0, metavar="S", help="seconds per row (onnxruntime)")
    s.add_argument("--passes", type=repeats_type, default=1, metavar="N",
                   help="onnxruntime: go over the rows N times, a line per row and pass, so each row is timed "
                        "minutes apart (import with --aggregate fastest)")
    s.add_argument("--seed", type=seed_type, default=0)
    s.set_defaults(func=cmd_measure)

    s = sub.add_parser("import-profile", help="turn a CSV of measured latencies into a training dataset")
    s.add_argument("profile", metavar="measured.csv")
    s.add_argument("--hw", default="mlu100")
    s.add_argument("--groups", default=None, metavar="DIR", help="the export folder (default: the CSV's folder)")
    s.add_argument("--aggregate", default="median", metavar="{median,fastest}",
                   help="a pair's label from its repeats: their median (default), or the fastest (a machine "
                        "shared with others, whose slow spells only slow runs down)")
    s.add_argument("--out", default=None, metavar="DIR", help="dataset folder (default data/<hw>)")
    s.add_argument("--force", action="store_true", help="replace a dataset already there")
    s.add_argument("--append", action="store_true",
                   help="add the rows to the measured dataset already in --out (a later round of labels)")
    s.add_argument("--again", action="store_true",
                   help="with --append: the rows re-measure pairs already in the dataset; both are kept and the "
                        "model answers such a kernel with the median of its measurements")
    s.add_argument("--unrunnable", action="store_true",
                   help="every pair of the export the CSV has no row for is a kernel the part could not run "
                        "(it failed to compile or run): the dataset lists it and no plan uses it")
    s.set_defaults(func=cmd_import_profile)

    s = sub.add_parser("learn", help="label a part through your measuring command: synthetic groups, then rounds "
                                     "on the kernels the plans use; trains the model")
    s.add_argument("--hw", required=True, help="the part's datasheet YAML")
    s.add_argument("--measure-cmd", required=True, metavar="CMD",
                   help="shell-free command that measures an export: {export} is the folder, {profile} the CSV it "
                        "must write (e.g. 'python blackbox.py measure {export} --device X --out {profile}')")
    s.add_argument("--measure-timeout", type=seconds_type, default=None, metavar="S",
                   help="give up on a --measure-cmd call after S seconds (default: wait as long as it runs)")
    s.add_argument("--networks", required=True, metavar="NETS", help="networks to plan (zoo names or .onnx files)")
    s.add_argument("--budget", type=groups_type, required=True, metavar="N", help="labels, (group, cores) pairs")
    s.add_argument("--work", default=None, metavar="DIR", help="rounds' exports and profiles, and the dataset "
                   "(default work/<hw>)")
    s.add_argument("--out", default=None, metavar="DIR", help="the model folder (default models/<hw>)")
    s.add_argument("--force", action="store_true", help="replace a model trained for another part in --out")
    s.add_argument("--seed", type=seed_type, default=0)
    s.add_argument("--threads", type=_ranged_threads, default=1, help="XGBoost threads")
    s.add_argument("--rounds", type=_ranged_rounds, default=None, metavar="N",
                   help="rounds on the plans' kernels after the synthetic one (default 6)")
    s.add_argument("--synth-share", type=fraction, default=None, metavar="F",
                   help="share of the budget spent first, before any plan (default 0.5)")
    s.add_argument("--network-share", type=share, default=None, metavar="F",
                   help="of that first share, the part spent on random candidate kernels of the networks instead "
                        "of synthetic groups (default 0.5, with the synthetic groups at most 500 labels; 0 for "
                        "synthetic groups only; two synthetic groups stay at 1)")
    s.add_argument("--zoo-share", type=share, default=None, metavar="F",
                   help="of the rest of that first share, the part spent on random candidate kernels of the "
                        "built-in networks outside --networks instead of synthetic groups (default 1)")
    s.set_defaults(func=cmd_learn)
