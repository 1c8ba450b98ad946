"""Commands for real measurements: export-groups, measure, import-profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..artefacts import check_file_output
from ..errors import AutotuneError
from ..hardware import hw_slug, load_hardware


def cmd_export_groups(args: argparse.Namespace) -> int:
    from synth.profiles import export_groups, skipped_note

    if args.groups is not None and args.model is not None:
        raise AutotuneError("give --groups N (synthetic groups) or --model NET (a network's candidates), not both")
    hw = load_hardware(args.hw)
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


def cmd_measure(args: argparse.Namespace) -> int:
    from synth.measure import measure
    from synth.profiles import read_export, write_profile

    out = args.out or str(Path(args.folder) / "measured.csv")
    read_export(args.folder)
    check_file_output(out, flag="--out")
    hw = load_hardware(args.hw) if args.hw else None
    as_you_go = args.backend == "onnxruntime"  # appended row by row, resumed by a rerun
    frame, notes = measure(args.folder, args.backend, hw, args.limit, args.seed, args.repeats,
                           timeout_s=args.timeout, progress=True, out=out if as_you_go else None)
    if not as_you_go:
        _refuse_other_measurements(out, args.backend)
        write_profile(out, frame)
    for n in notes:
        print(f"note: {n}")
    print(f"{out}: {len(frame)} measurements ({args.backend})")
    return 0


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
    from synth.profiles import import_profile

    hw = load_hardware(args.hw)
    out = args.out or str(Path("data") / hw_slug(args.hw))
    m = import_profile(args.profile, hw, out, args.groups, args.force)
    print(f"{out}/: {m['rows']} labels (group x cores) from {m['measurements']} measurements, marked measured")
    if m["ignored_columns"]:
        print(f"note: columns not used (kept out of the dataset): {', '.join(m['ignored_columns'])}")
    if m["outliers"]:
        print(f"{len(m['outliers'])} outlier repeat(s) (over 5 robust spreads, pooled over all pairs, from their "
              "pair's median; the median is kept):")
        for line in m["outliers"][:10]:
            print(f"  {line}")
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
    s.add_argument("--seed", type=seed_type, default=0)
    s.set_defaults(func=cmd_measure)

    s = sub.add_parser("import-profile", help="turn a CSV of measured latencies into a training dataset")
    s.add_argument("profile", metavar="measured.csv")
    s.add_argument("--hw", default="mlu100")
    s.add_argument("--groups", default=None, metavar="DIR", help="the export folder (default: the CSV's folder)")
    s.add_argument("--out", default=None, metavar="DIR", help="dataset folder (default data/<hw>)")
    s.add_argument("--force", action="store_true", help="replace a dataset already there")
    s.set_defaults(func=cmd_import_profile)
