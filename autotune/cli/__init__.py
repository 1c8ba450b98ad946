"""The `autotune` command: argument parsing and error handling; the sub-commands are in commands.py.

Errors caused by input (AutotuneError) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autotune.cli.args import (
    ADAPT_BUDGET,
    BATCH,
    BUDGET,
    EXPORT_GROUPS,
    JOBS,
    MEASURE,
    REPEATS,
    SEED,
    THREADS,
    folds,
    ranged,
    seconds,
    share,
)
from autotune.cli.commands import (
    cmd_eval,
    cmd_export_onnx,
    cmd_inspect,
    cmd_study,
    cmd_synth,
    cmd_train,
    cmd_tune,
    cmd_zoo,
)
from autotune.cli.profile_commands import add_parsers as add_profile_parsers
from autotune.cli.universal_commands import add_adapt_parser
from autotune.errors import AutotuneError
from autotune.synth import SAMPLINGS


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line (no usage dump) and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog.split()[0]} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        self._refuse_repeats(sys.argv[1:] if args is None else list(args))
        return super().parse_known_args(args, namespace)

    def _refuse_repeats(self, tokens: list[str]) -> None:
        """A one-value option given twice is an error: argparse would keep the last silently, and
        `--hw a ... --hw b` is more likely a slip than a wish."""
        options = {o: a for a in self._actions for o in a.option_strings}
        seen: dict[argparse.Action, str] = {}
        for i, tok in enumerate(tokens):
            if tok == "--":
                break
            if not tok.startswith("--"):
                continue
            name, eq, value = tok.partition("=")
            action = options.get(name)
            if action is None and self.allow_abbrev:  # argparse takes a unique prefix too
                hits = {a for o, a in options.items() if o.startswith(name)}
                action = hits.pop() if len(hits) == 1 else None
            if action is None or type(action) is not argparse._StoreAction:
                continue
            value = value if eq else (tokens[i + 1] if i + 1 < len(tokens) else "")
            if action in seen:
                self.error(f"{action.option_strings[-1]} is given twice, as {seen[action]} and {value}; "
                           "give it once")
            seen[action] = value


def _add_model_sizes(s: argparse.ArgumentParser) -> None:
    """--batch, --dim and --strict: how a MODEL argument is read (inspect, tune, eval)."""
    s.add_argument("--batch", type=BATCH, default=None)
    s.add_argument("--dim", action="append", default=None, metavar="NAME=VALUE",
                   help="set a symbolic input dimension of an ONNX file, or a zoo network's size (e.g. seq=256); "
                        "repeatable")
    s.add_argument("--strict", action="store_true", help="unknown ONNX ops are an error, not opaque layers")


def _add_model_dirs(s: argparse.ArgumentParser) -> None:
    s.add_argument("--models-dir", default="models",
                   help="where trained models live: <models-dir>/<hw>/, by the --hw argument or the part's name")
    s.add_argument("--model-dir", default=None, metavar="DIR", help="the part's trained model folder itself")


def _add_cost(s: argparse.ArgumentParser) -> None:
    s.add_argument("--cost", choices=["learned", "universal"], default="learned",
                   help="learned: the part's own model (models/<hw>/); universal: models/universal, zero-shot, "
                        "no labels from this part")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autotune", description=(__doc__ or "autotune").splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("zoo", help="list the built-in networks")
    s.add_argument("--batch", type=BATCH, default=1)
    s.add_argument("--json", metavar="FILE")
    s.set_defaults(func=cmd_zoo)

    s = sub.add_parser("inspect", help="layer table of a zoo network or an .onnx file")
    s.add_argument("model", metavar="MODEL")
    _add_model_sizes(s)
    s.add_argument("--json", metavar="FILE")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("export-onnx", help="write a zoo network as an ONNX file (shapes only, no weights)")
    s.add_argument("model", metavar="MODEL")
    s.add_argument("out", metavar="OUT.onnx")
    s.add_argument("--batch", type=BATCH, default=None)
    s.set_defaults(func=cmd_export_onnx)

    s = sub.add_parser("study", help="the synthetic-layer study: plots and CSVs under reports/<hw>/")
    s.add_argument("--hw", default="mlu100")
    s.add_argument("--out", default=None, help="folder (default reports/<hw>)")
    s.set_defaults(func=cmd_study)

    s = sub.add_parser("synth", help="generate and label a synthetic dataset")
    s.add_argument("--hw", default=None, help="preset name or YAML file (default mlu100)")
    s.add_argument("--hw-family", default=None, metavar="FAMILY",
                   help="label devices drawn from a hardware family (preset `family` or a YAML file) instead")
    s.add_argument("--devices", type=ranged(1, 4096), default=None, metavar="D",
                   help="with --hw-family: datasheets to draw (default 256); --budget is then the total over them")
    s.add_argument("--siblings", type=ranged(1, 64), default=None, metavar="S",
                   help="with --hw-family: devices measured per datasheet, device values redrawn (default 4)")
    s.add_argument("--budget", type=BUDGET, default=None, metavar="N",
                   help="labels to measure, one per (group, cores) pair (default 16000 groups x core counts)")
    s.add_argument("--backend", choices=["simulator", "onnxruntime"], default="simulator",
                   help="simulator: label with the simulator (needs a device: section); onnxruntime: measure the "
                        "groups on this CPU (the cpu preset)")
    s.add_argument("--plans", default=None, metavar="NETS",
                   help="with --backend onnxruntime: spend 30%% of the budget on the kernels these networks' plans "
                        "use, in rounds that retrain, and half the rest on their candidate kernels drawn at "
                        "random, the other half on other networks' (comma-separated zoo names or .onnx files)")
    s.add_argument("--zoo-share", type=share, default=None, metavar="F",
                   help="with --backend onnxruntime: of the labels before the rounds, past the plans' own kernels, "
                        "the share drawn from random kernels of the built-in networks outside --plans; the rest "
                        "are synthetic groups (default 1: other networks' kernels taught an unseen network more)")
    s.add_argument("--sampling", choices=SAMPLINGS, default="sobol",
                   help="sobol: space-filling draw of groups, each at every core count; spread: the same draw, "
                        "each group at one core count (core counts times the groups per label); active: rounds "
                        "that measure where the model is unsure")
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--out", default=None, help="folder (default data/<hw>)")
    s.add_argument("--jobs", type=JOBS, default=1)
    s.add_argument("--scheduler", default=None, metavar="ADDR", help="dask scheduler, e.g. tcp://host:8786")
    s.add_argument("--force", action="store_true", help="overwrite a dataset made with other settings")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train the latency model")
    s.add_argument("--hw", default=None, help="preset name or YAML file (default mlu100)")
    s.add_argument("--universal", action="store_true",
                   help="one model over a family dataset (synth --hw-family; default data/universal)")
    s.add_argument("--data", default=None, help="dataset folder (default data/<hw>)")
    s.add_argument("--out", default=None, help="model folder (default models/<hw>)")
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--scheduler", default=None, metavar="ADDR")
    s.add_argument("--threads", type=THREADS, default=None, metavar="N",
                   help="XGBoost threads (default: 1 below 20,000 rows, where threads cost more than they save; "
                        "else every core)")
    s.add_argument("--cv", type=folds, default=None, metavar="K",
                   help="also report accuracy over K group folds, every row held out once, each fold a fit of "
                        "its own (0: none; default: training.CV_FOLDS folds on a part's measurements of at most "
                        "training.CV_AT_MOST rows, else none)")
    s.add_argument("--json", metavar="FILE")
    s.add_argument("--force", action="store_true", help="replace a model trained for another part in --out")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("tune", help="plan fusion groups and core counts for a network")
    s.add_argument("--hw", default="mlu100")
    s.add_argument("--model", required=True, metavar="MODEL")
    _add_model_sizes(s)
    _add_model_dirs(s)
    _add_cost(s)
    s.add_argument("--strategy", default="learned")
    s.add_argument("--out", default=None, metavar="plan.json")
    s.add_argument("--verify", action="store_true",
                   help="add the device's latencies to the plan (the simulator; this CPU for --hw cpu; "
                        "with --measured, the measured table)")
    s.add_argument("--measured", default=None, metavar="DIR",
                   help="an export of this network's candidates with its measured.csv: --verify looks up the "
                        "plan's groups there")
    s.add_argument("--measure-budget", type=MEASURE, default=None, metavar="M",
                   help="refine the learned plan with at most M device measurements (learned+measure)")
    s.add_argument("--plot", default=None, metavar="FILE.png")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("eval", help="planner vs oracle vs baselines on many networks")
    s.add_argument("--hw", default="mlu100")
    s.add_argument("--models", default="all", help="all, or comma-separated zoo names and .onnx paths")
    _add_model_sizes(s)
    _add_model_dirs(s)
    _add_cost(s)
    s.add_argument("--measure-budget", type=MEASURE, default=None, metavar="M",
                   help="also run learned+measure with at most M device measurements per network")
    s.add_argument("--measured", nargs="+", default=None, metavar="DIR",
                   help="score on measurements instead of the simulator: export folders of networks' candidates "
                        "(export-groups --model NET), each with its measured.csv; the networks come from them")
    s.add_argument("--json", metavar="FILE")
    s.add_argument("--plot", default=None, metavar="FILE.png")
    s.set_defaults(func=cmd_eval)
    add_profile_parsers(sub, SEED, BUDGET, EXPORT_GROUPS, REPEATS, seconds)
    add_adapt_parser(sub, SEED, ADAPT_BUDGET)
    return p


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as one line with its message only: no source file, line number or code."""
    return f"autotune: warning: {message}\n"


#: The commands whose `out` is one file (elsewhere it is a folder, which the command checks itself).
_FILE_OUT = ("tune", "export-onnx", "measure")


def check_file_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, a file output (--json, --plot, a file --out) that is one of the
    command's input files, a folder, or a file an artefact folder owns (artefacts.check_file_output)."""
    from autotune.artefacts import check_file_output

    outs = {dest: getattr(args, dest, None) for dest in ("json", "plot")}
    if args.command in _FILE_OUT:
        outs["out"] = getattr(args, "out", None)
    inputs: list[str] = []
    for dest, value in vars(args).items():
        if dest in outs or dest == "func":
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                inputs += [p.strip() for p in v.split(",") if p.strip()] if dest == "models" else [v]
    files = [v for v in inputs if Path(v).is_file()]
    written: dict[Path, str] = {}
    for dest, value in outs.items():
        if value is not None:
            flag = "OUT" if dest == "out" and args.command == "export-onnx" else f"--{dest}"
            check_file_output(value, inputs=files, flag=flag)
            where = Path(value).resolve()
            if where in written:
                raise AutotuneError(f"{written[where]} and {flag} name the same file {value}; give each its own")
            written[where] = flag


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one line on stderr and exit 2, never a traceback. An
    unexpected failure is one line and exit 3 (AUTOTUNE_DEBUG=1 shows the traceback)."""
    import os
    import warnings

    warnings.formatwarning = _warning_line
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        check_file_outputs(args)
        return int(args.func(args) or 0)
    except AutotuneError as err:
        print(f"autotune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autotune: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("autotune: error: out of memory; ask for less (a smaller --budget, --batch or model)", file=sys.stderr)
        return 2
    except OSError as err:  # a file system refusal that no check above foresaw
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"autotune: error: cannot access{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line for the user
        if os.environ.get("AUTOTUNE_DEBUG"):
            raise
        print(f"autotune: internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
              "(rerun with AUTOTUNE_DEBUG=1 and report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
