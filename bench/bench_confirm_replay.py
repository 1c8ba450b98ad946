"""Replay the confirm stage of a finished black-box learn run, to A/B a change to it in a minute.

`bench_blackbox.py` takes 13-15 minutes a seed for three devices at 2,000 labels, and most of that is
the rounds' fits, which a change to the confirm stage (`plan_labels.confirm_stage`: settle passes,
rival kernels, Thompson draws) does not touch. This rebuilds a run's dataset as it stood before that
stage from its round folders (`labels-*`, measured already), gives the run's final trees that
memory (the stage never refits them), runs the stage again with the timer noise the run drew (the
same seed and call numbers) and scores every strategy as `bench_blackbox.py` does. With the code
unchanged it reproduces the run's numbers exactly; `--budget` above the run's gives the stage more
labels without changing the rounds.

    python bench/bench_blackbox.py --budgets 2000 --seed 1 --work W      # once: W/<device>/plans-2000-s1
    python bench/bench_confirm_replay.py W/dataflow16/plans-2000-s1       # about a minute
    python bench/bench_confirm_replay.py W/dataflow16/plans-2000-s1 --budget 2150 --out R
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_blackbox import NETWORKS_FILE, blackbox, noisy_measure, scored, summary_line  # noqa: E402

from autotune.costmodel.training import remember  # noqa: E402
from autotune.data.dataset import read_dataset  # noqa: E402
from autotune.frontends import zoo  # noqa: E402
from autotune.frontends.loader import load_graph  # noqa: E402
from autotune.hardware.config import load_hardware  # noqa: E402
from autotune.synth.plan_labels import confirm_stage  # noqa: E402
from autotune.synth.profiles import import_profile, measured_table  # noqa: E402


def planned_networks(run: Path) -> list[str]:
    """The networks the run planned (their order no longer matters: plan_tables.name_order). For a
    run that did not record them (NETWORKS_FILE, written since session 32): the networks measured
    in <work>/<device>/zoo, as a run with every built-in network planned them (a work folder
    shared by several network sets does not replay exactly). A run made before session 33 drew
    its Thompson draws by each network's place in the list, so its replay is the current confirm
    stage on its rounds, not the run itself."""
    if (run / NETWORKS_FILE).is_file():
        return [n for n in (run / NETWORKS_FILE).read_text().splitlines() if n]
    zoo_dir = run.parent / "zoo"
    if not zoo_dir.is_dir():
        raise SystemExit(f"{run}: no {NETWORKS_FILE} and no {zoo_dir}/: which networks were planned is unknown")
    have = {p.name for p in zoo_dir.iterdir() if (p / "measured.csv").is_file()}
    print(f"{run}: no {NETWORKS_FILE}; replaying the networks measured in {zoo_dir}/",
          file=sys.stderr)
    return [n for n in zoo.names() if n in have] + sorted(have - set(zoo.names()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a finished run's folder, <work>/<device>/plans-<budget>-s<seed>")
    ap.add_argument("--budget", type=int, help="labels in all (default: the run's)")
    ap.add_argument("--out", default="/tmp/bench_confirm_replay", help="the replay's folder (replaced)")
    a = ap.parse_args(argv)
    run = Path(a.run)
    name = re.fullmatch(r"plans-(\d+)-s(\d+)", run.name)
    device = run.parent.name
    if name is None or not (run / "model").is_dir() or not (run.parent / f"{device}.yaml").is_file():
        raise SystemExit(f"{run}: not a bench_blackbox.py run folder (<work>/<device>/plans-<budget>-s<seed>)")
    budget, seed = a.budget or int(name.group(1)), int(name.group(2))
    hw = load_hardware(str(run.parent / f"{device}.yaml"))
    rounds = sorted(p for p in run.iterdir() if p.name.startswith("labels-"))
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    data = out / "data"
    for k, folder in enumerate(rounds):  # the rounds' profiles, in the order the run imported them
        import_profile(folder / "measured.csv", hw, data, folder, force=k == 0, append=k > 0)
    shutil.copytree(run / "model", out / "model")
    remember(hw, data, out / "model")
    rows = len(read_dataset(data, hw).rows)
    if budget < rows:
        raise SystemExit(f"--budget {budget} is below the {rows} labels the rounds measured before the confirm stage")
    nets = planned_networks(run)
    bb = blackbox()
    model, _ = confirm_stage(hw, noisy_measure(bb, bb.load_device(device), seed, calls_before=len(rounds)), out,
                             data, out / "model", rows, budget - rows, [load_graph(n) for n in nets], seed,
                             lambda m: print(f"  {device} {budget}: {m}", flush=True))
    tables = [measured_table(run.parent / "zoo" / n, hw)[1] for n in nets]
    res = {"device": device, "budget": budget, "labels_used": len(read_dataset(data, hw).rows), "replay_of": str(run),
           "fit_s": round(time.perf_counter() - t0, 1), **scored(hw, model, nets, tables)}
    (out / "replay.json").write_text(json.dumps(res, indent=1) + "\n")
    print(summary_line(res))
    print(f"json: {out / 'replay.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
