"""Plan-focused labels: spend a part's label budget on the kernels its plans choose.

A cost model trained on synthetic groups mispredicts some of a network's kernels, and the planner's
search finds exactly those it underrates (the optimizer's curse). So after a first round of
synthetic labels, each round plans the target networks on the current model, measures the kernels
the plans use that the model has not measured, and retrains. A trained model answers a measured
kernel with its measurement (autotune/costmodel/memory.py), so a plan made of measured kernels is what it
costs on the part, and the search moves on to the next kernel it may underrate. In the later half
of the rounds unmeasured pairs count `explore` cheaper than predicted, so close rivals the model
overrates get measured too (as in autotune/planning/refine.py, at training time and counted as labels).
A round whose plans are measured already fills its share from plans on Thompson draws of the
model's error, so a kernel the model overrates still gets its chance to be measured.

`learn_part` runs the whole loop through any `measure(export folder) -> profile CSV` callable: a
device's own tool, a user's script (`autotune learn --measure-cmd`) or a black box.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autotune.costmodel.features import featurize_batch
from autotune.costmodel.memory import row_keys
from autotune.costmodel.model import ONE_FIT, LatencyModel, fit_repeats
from autotune.costmodel.training import fit_params, remember, train
from autotune.data.dataset import read_dataset
from autotune.errors import AutotuneError
from autotune.fileio import atomic_write_text
from autotune.frontends import zoo
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.ir.tables import GroupBatch
from autotune.planning.planner import candidate_id, dp_from_table, spans
from autotune.synth.plan_errors import error_text, record_plan_errors
from autotune.synth.plan_tables import (
    RIVALS,
    Pick,
    as_pairs,
    error_scales,
    kernel_tables,
    name_order,
    network_seed,
    plan_bound,
    plan_cells,
    rival_cells,
)
from autotune.synth.profiles import export_groups, import_profile, labels_spent, read_export, synthetic_export_of
from autotune.synth.settle import measured_logs, settle_picks

#: Share of the budget spent before the first plans: synthetic groups and random candidate kernels.
SYNTH_SHARE = 0.5
#: Of that first share, the part spent on candidate kernels of the target networks drawn at random
#: (`network_picks`) instead of synthetic groups: a network's kernels tell more about its other
#: kernels than random shapes do (docs/costmodel.md, "The networks' own kernels in the first round").
NETWORK_SHARE = 0.5
#: The networks' random kernels are drawn evenly over the networks (`quotas`) up to this many labels
#: in all, a floor of coverage for every network's stem, head and one-off kernels; past it, in
#: proportion to each kernel's uses, as the planner queries them and accuracy counts them (a
#: transformer's repeated layer once per layer). At 16,000 labels on dataflow16, 2,000 even and
#: 5,500 by uses put 85.9% of the zoo's pairs within ±10% where 7,500 even put 77.0% (docs/costmodel.md,
#: "Random kernels past an even floor, by their uses").
EVEN_AT_MOST = 2_000
#: Within a network's even share, this many (kernel, core count) pairs are drawn first from each
#: group of its kernels that end in the same op (the op that writes the kernel's output), the rest
#: plainly: a rare ending, such as an attention kernel cut after its softmax (12 of Whisper's 320
#: distinct kernels), gets about one label a network from a plain draw of ~24 pairs, too few for a
#: tree to learn that a part treats it differently (docs/costmodel.md, "A floor for every kernel
#: ending").
STRATUM_FLOOR = 2
#: Synthetic groups take what the first share leaves (all of the rest when every built-in network is
#: planned), but by default at most this many labels: they are a coverage sample of shapes outside
#: the networks, and past it the networks' own kernels teach more (16,000 labels on the three black
#: boxes: more accurate on all three with all of the first share on the networks; at 2,000 labels,
#: where this is half the first share, the synthetic half kept Whisper's plan closer to its optimum;
#: docs/costmodel.md, "The activation math of a layer, and synthetic groups at most 500 labels").
SYNTH_AT_MOST = 500
#: Share of the labels before any plan, past the plans' own random kernels, that goes to random
#: kernels of the built-in networks outside the plans; the rest goes to synthetic groups. On the
#: CPU an unseen network's kernels were learnt better from other networks' kernels than from as
#: many synthetic groups (docs/costmodel.md, "Other networks' kernels instead of synthetic groups").
ZOO_SHARE = 1.0
#: Rounds of plan-focused labels after the synthetic round.
ROUNDS = 6
#: Rounds when measuring this machine's CPU (`synth --backend onnxruntime --plans`): each retrains.
CPU_ROUNDS = 3
#: In the later half of the rounds, unmeasured pairs count this much cheaper than predicted.
EXPLORE = 0.1
#: A round whose plans hold fewer unmeasured kernels than its share of the budget fills the rest, up
#: to this many times, from the plans of a Thompson draw: every unmeasured kernel's prediction times
#: exp(sigma z), sigma the model's validation error, a fresh z per draw. A kernel the model overrates
#: never enters a plan on its mean, so it would never be measured; a draw gives every kernel that
#: could be in the optimum, within the model's error, a chance (docs/costmodel.md, "Thompson draws").
DRAWS = 8
#: Share of the budget kept for after the last retrain: the plans `tune` will make (sure_plan) and
#: the rivals that could still beat them get their unmeasured kernels measured, into the model's
#: memory only (the trees stay, so the plans do not move again).
CONFIRM_SHARE = 0.15
#: The confirm stage settles the calls between the final plans and the baselines' (settle.py,
#: `settle_picks`): a measured kernel is measured again (a single timing can be an outlier, and the
#: search picks the kernels measured low as it picks those predicted low) and an unmeasured one
#: measured, by how much of a call's expected loss it removes, until no call's expected loss
#: reaches settle.SETTLE_LOSS of its network's time, in up to SETTLE_PASSES passes, each of at most
#: half of what is left and at least SETTLE_AT_LEAST labels (so the last few are not spent one a pass).
SETTLE_PASSES = 8
SETTLE_AT_LEAST = 10


def plan_picks(hw: HardwareConfig, model: LatencyModel, graphs: list[Graph], limit: int,
               explore: float = 0.0, rivals: tuple[str, ...] = RIVALS, sure: bool = False,
               draw: int | None = None, tables: list | None = None) -> list[Pick]:
    """The pairs the model's plans of `graphs` use that the model has not measured, at most `limit`:
    the learned plan's first, then the `rivals`' plans', each by its share of its plan's predicted
    time first (every use counted: a repeated block's kernel weighs as all its copies; a share, so
    a small network's plan weighs as much as a big one's); a kernel met in several plans or
    blocks is picked once, with its highest share. The learned plan is the DP with
    unmeasured pairs `explore` cheaper. With `sure` it is the plan `tune` makes (planner.sure_plan)
    and the rivals that could beat it come before the others (tier 2): those whose plan, its
    unmeasured kernels one mean validation error cheaper, costs less than the learned plan with its
    own one dearer (a sum of kernels errs less than its worst kernel). Without `sure` every rival
    is tier 1: a fusion the model overrates by far is measured only that way. With a `draw` (a seed)
    the learned plan is made on a Thompson draw instead (DRAWS). `tables` are the networks' `kernel_tables`
    on this model, when the caller has them already (several draws on one model)."""

    ks = np.asarray(hw.core_counts, dtype=np.int64)
    doubt, typical, sigma = error_scales(model)
    picks: dict[int, Pick] = {}
    for n in name_order(graphs):
        g = graphs[n]
        net = tables[n] if tables is not None else kernel_tables(g, hw, model)
        if net is None:
            continue
        si, sj, inverse, pred, keys, measured, at = net
        if draw is None:
            factor = (1.0 + doubt) if sure else (1.0 - explore)
        else:
            factor = np.exp(sigma * np.random.default_rng([draw, network_seed(g)]).standard_normal(pred.shape))
        table = np.where(measured, pred, pred * factor)[inverse]

        mine = plan_cells(dp_from_table(g, hw, si, sj, table, "learned"), inverse, at, ks)
        worst = plan_bound(mine, pred, measured, 1.0 + typical)
        plans = [(0, mine)]
        for cs in rival_cells(g, hw, model, net, rivals):
            plans.append((1 if not sure or plan_bound(cs, pred, measured, 1.0 / (1.0 + typical)) < worst else 2, cs))
        for tier, cs in plans:
            uses = Counter((d, c) for d, c, _, _ in cs)
            total = max(plan_bound(cs, pred, measured, 1.0), 1e-12)
            for d, c, i, j in cs:
                key = int(keys[d, c])
                if measured[d, c]:
                    continue
                share = float(pred[d, c]) * uses[d, c] / total
                old = picks.get(key)
                if old is None:
                    picks[key] = Pick(g, i, j, int(ks[c]), float(pred[d, c]), key, tier, share)
                elif (tier, -share) < (old.tier, -old.share):
                    old.tier, old.share = tier, share
    return sorted(picks.values(), key=lambda p: (p.tier, -p.share, p.key))[:limit]


def network_picks(hw: HardwareConfig, graphs: list[Graph], limit: int, seed: int = 0,
                  even_at_most: int = EVEN_AT_MOST, floor: int = STRATUM_FLOOR) -> list[Pick]:
    """At most `limit` (candidate group, core count) pairs of `graphs` drawn at random from their
    distinct kernels (a repeated block's, or one shared by two networks, counted once, for the
    first network by name that has it) times the part's core counts: up to `even_at_most` of them the same
    number from each network where it has that many (`quotas`), so a network of few distinct
    kernels weighs as much as one of thousands, within a network `floor` of them (STRATUM_FLOOR)
    from the kernels ending in each op first; the rest in proportion to each kernel's uses (its
    spans in all of `graphs`), where the plans and the predictions are."""
    ks = np.asarray(hw.core_counts, dtype=np.int64)
    graphs = [graphs[n] for n in name_order(graphs)]
    number: dict[int, int] = {}  # a distinct kernel's row key -> its number, in the order first met
    where: list[tuple[Graph, int, int]] = []
    key_of: list[int] = []
    uses: list[int] = []
    owned: list[list[int]] = []
    ends: list[str] = []  # each distinct kernel's last op: what writes its output
    for g in graphs:
        si, sj = spans(g, hw)
        mine: list[int] = []
        if len(si):
            first, inverse = GroupBatch.from_ranges(g, si, sj).distinct()
            sub = GroupBatch.from_ranges(g, si[first], sj[first])
            keys = row_keys(featurize_batch(sub, np.arange(len(first)), np.full(len(first), ks[0]), hw))
            for key, f, n in zip(keys, first, np.bincount(inverse, minlength=len(first))):
                k = number.setdefault(int(key), len(where))
                if k == len(where):
                    where.append((g, int(si[f]), int(sj[f])))
                    key_of.append(int(key))
                    uses.append(0)
                    ends.append(g.order[int(sj[f]) - 1].op)
                    mine.append(k)
                uses[k] += int(n)
        owned.append(mine)
    if not where or limit <= 0:
        return []
    rng = np.random.default_rng([seed, len(where)])
    cells: list[int] = []  # kernel number * len(ks) + core column
    for mine, quota in zip(owned, quotas([len(m) * len(ks) for m in owned], min(limit, even_at_most))):
        if not quota:
            continue
        strata = np.repeat(np.asarray([ends[k] for k in mine]), len(ks))
        cells += [mine[c // len(ks)] * len(ks) + c % len(ks) for c in _floor_draw(rng, strata, quota, floor)]
    rest = min(limit, len(where) * len(ks)) - len(cells)
    if rest > 0:
        free = np.ones(len(where) * len(ks), dtype=bool)
        free[cells] = False
        left = np.flatnonzero(free)
        weight = np.asarray(uses, dtype=np.float64)[left // len(ks)]
        cells += [int(n) for n in np.sort(rng.choice(left, size=rest, replace=False, p=weight / weight.sum()))]
    out = []
    for cell in cells:
        g, i, j = where[cell // len(ks)]
        out.append(Pick(g, i, j, int(ks[cell % len(ks)]), 0.0, key_of[cell // len(ks)] * len(ks) + cell % len(ks)))
    return out


def _floor_draw(rng: np.random.Generator, strata: np.ndarray, size: int, floor: int) -> list[int]:
    """`size` distinct indices of `strata` at random, `floor` of them (or all it has) from each
    stratum first, the rest plain; sorted."""
    first = [int(c) for s in rng.permutation(np.unique(strata))
             for c in rng.permutation(np.flatnonzero(strata == s))[:floor]] if floor > 0 else []
    if len(first) >= size:
        return sorted(first[:size])
    free = np.ones(len(strata), dtype=bool)
    free[first] = False
    rest = rng.choice(np.flatnonzero(free), size=size - len(first), replace=False)
    return sorted(first + [int(c) for c in rest])


def first_share(hw: HardwareConfig, graphs: list[Graph], first: int, network_share: float, zoo_share: float,
                seed: int, keep: int = 0, synth_at_most: int | None = None) -> tuple[list[Pick], list[Pick]]:
    """How the `first` labels before any plan are drawn: (random candidate kernels of `graphs`,
    `network_share` of them; random kernels of the built-in networks outside `graphs`, `zoo_share`
    of the rest but never the last `keep`, none the first list holds). What is left goes to
    synthetic groups, at most `synth_at_most` of it (the networks' kernels take the excess; a kernel
    the other networks' draw held too counts once, so the cap may be passed by that few)."""
    n_net = int(round(first * network_share))
    kernels = network_picks(hw, graphs, n_net, seed)
    rest = first - len(kernels)
    limit = min(int(round(rest * zoo_share)), rest - keep)
    drawn = network_picks(hw, zoo_outside(graphs), limit, seed)

    def outside(kernels: list[Pick]) -> list[Pick]:  # a kernel both draws hold counts once
        mine = {p.key for p in kernels}
        return [p for p in drawn if p.key not in mine]

    others = outside(kernels)
    if synth_at_most is not None and len(kernels) == n_net:  # not short of kernels: one draw with the excess
        excess = first - len(kernels) - len(others) - max(synth_at_most, keep)
        if excess > 0:
            kernels = network_picks(hw, graphs, n_net + excess, seed)
            others = outside(kernels)
    return kernels, others


def zoo_outside(graphs: list[Graph]) -> list[Graph]:
    """The built-in networks (batch 1, default sizes) that are not among `graphs`, by name."""
    taken = {g.name for g in graphs}
    return [zoo.build(name) for name in zoo.names() if name not in taken]


def quotas(sizes: list[int], limit: int) -> list[int]:
    """Split `limit` as evenly as it goes over bins holding `sizes` items (water-filling: a bin
    smaller than its even share gives the rest to the others); the sum is min(limit, sum(sizes))."""
    out = [0] * len(sizes)
    left, open_ = min(limit, sum(sizes)), [n for n, s in enumerate(sizes) if s > 0]
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for n in list(open_):
            take = min(share, sizes[n] - out[n], left)
            out[n] += take
            left -= take
            if out[n] == sizes[n]:
                open_.remove(n)
            if left == 0:
                break
    return out


@dataclass
class LearnResult:
    """What `learn_part` made: the final model, its dataset folder, and the labels of each round."""

    model: LatencyModel
    data: Path
    model_dir: Path
    rounds: list[dict]

    @property
    def labels(self) -> int:
        return sum(r["labels"] for r in self.rounds)


def learn_part(hw: HardwareConfig, measure: Callable[[Path], Path], work: str | Path, budget: int,
               graphs: list[Graph], seed: int = 0, synth_share: float = SYNTH_SHARE, rounds: int = ROUNDS,
               explore: float = EXPLORE, threads: int | None = None, params: dict | None = None,
               log: Callable[[str], None] | None = None, network_share: float | None = None,
               zoo_share: float = ZOO_SHARE, measured_by: str | None = None) -> LearnResult:
    """Label a part within `budget` (group, cores) pairs: first `synth_share` of it on random
    candidate kernels of `graphs` (`network_share` of that; None: NETWORK_SHARE, with the synthetic
    groups at most SYNTH_AT_MOST labels), of the other built-in networks (`zoo_share` of the rest)
    and synthetic groups (what is left), then the kernels the
    plans of `graphs` use, round by round; returns the model trained on everything. `measure`
    is given an export folder and returns the profile CSV it wrote; `work` keeps every round's
    export, profile, the dataset (`work/data`) and the model (`work/model`); `measured_by` names
    the measuring command, so that a rerun never mixes in another device's profiles (`_claim`).
    The order of `graphs` does not matter: every choice visits them by name (`name_order`), and a
    random draw seeds each network by its name (`network_seed`)."""

    work = Path(work)
    say = log or (lambda _m: None)
    n_cores = len(hw.core_counts)
    if budget < 2 * n_cores:
        raise AutotuneError(f"--budget must be at least {2 * n_cores} labels (two groups at each of "
                            f"{n_cores} core counts), got {budget}")
    if not 0 < synth_share <= 1:
        raise AutotuneError(f"the synthetic share must be in (0, 1], got {synth_share}")
    if network_share is not None and not 0 <= network_share <= 1:
        raise AutotuneError(f"the network share must be in [0, 1], got {network_share}")
    if not 0 <= zoo_share <= 1:
        raise AutotuneError(f"the zoo share must be in [0, 1], got {zoo_share}")
    _claim(work, measured_by)
    # a rerun keeps the last run's dataset and model until its own first import replaces them: a
    # measure command that fails loses nothing already measured
    data, model_dir = work / "data", work / "model"
    first = budget * synth_share
    # two synthetic groups at least: the first import is theirs
    share, cap = (NETWORK_SHARE, SYNTH_AT_MOST) if network_share is None else (network_share, None)
    kernels, others = first_share(hw, graphs, int(round(first)), share, zoo_share, seed, keep=2 * n_cores,
                                  synth_at_most=cap)
    folder = work / "labels-00"
    export_synthetic(hw, folder, max(2, math.ceil((first - len(kernels) - len(others)) / n_cores)), seed)
    made = import_profile(measure(folder), hw, data, folder, force=True, unrunnable=True)
    log_rows = [{"round": 0, "kind": "synthetic", "labels": labels_spent(made), "explore": 0.0}]
    said = f"round 0: {labels_spent(made)} synthetic labels{failed_text(made)}"
    if kernels or others:
        folder = work / "labels-00-networks"
        drawn = measure_picks(hw, measure, folder, data, kernels + others, seed)
        added = labels_spent(drawn) - labels_spent(made)
        log_rows.append({"round": 0, "kind": "networks", "labels": added, "explore": 0.0})
        said += (f" and {added} on random candidate kernels of the networks"
                 + (f" ({len(others)} pairs of other built-in networks)" if others else "") + failed_text(drawn))
    say(said)
    train_kw = {"seed": seed, "n_jobs": threads, **(params or {})}
    model, more = plan_rounds(hw, measure, work, data, model_dir, budget, graphs, seed, rounds, explore, train_kw,
                              say)
    return LearnResult(model, data, model_dir, log_rows + more)


#: The file that marks a folder as `learn_part`'s own: only such a folder is cleared and reused.
WORK_MARK = "learn.json"


def _claim(work: Path, measured_by: str | None = None) -> None:
    """Make `work` learn_part's folder: a new or empty one, or one it made before (marked); anything
    else is refused in one line, so a mistyped --work never clears a user's data. With
    `measured_by` (the measuring command), a folder another command measured is refused too: its
    profiles are kept and reused by a rerun, and another device's labels must not be."""
    import json

    if work.exists() and (not work.is_dir() or (any(work.iterdir()) and not (work / WORK_MARK).is_file())):
        raise AutotuneError(f"{work}/ is not empty and not a learn work folder (no {WORK_MARK}); give a new "
                            "or empty --work")
    try:
        before = json.loads((work / WORK_MARK).read_text()).get("measured_by")
    except (OSError, ValueError, AttributeError):
        before = None
    if measured_by is not None and before is not None and before != measured_by:
        raise AutotuneError(f"{work}/ holds labels another measuring command made ({before!r}); give a new "
                            "--work for this one")
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / WORK_MARK, json.dumps({"made_by": "autotune learn",
                                                    "measured_by": measured_by or before}) + "\n")


def plan_rounds(hw: HardwareConfig, measure: Callable[[Path], Path], work: Path, data: Path, model_dir: Path,
                budget: int, graphs: list[Graph], seed: int = 0, rounds: int = ROUNDS, explore: float = EXPLORE,
                train_kw: dict | None = None, say: Callable[[str], None] = lambda _m: None,
                confirm: float = CONFIRM_SHARE, how: str = "median") -> tuple[LatencyModel, list[dict]]:
    """Rounds on the plans' kernels, adding to the measured dataset `data` until it holds `budget`
    labels: train (into `model_dir`), pick, export to `work/labels-NN`, measure, append; the later
    half of the rounds explore. The rounds plan on one fit; the model after the last round is what
    `train_kw` asks for (on few measured labels the mean of REPEATS fits, model.py). The last
    `confirm` share of the budget is spent after the last retrain, on the unmeasured kernels of the
    plans `tune` makes and of the rivals that could beat them, into the model's memory only
    (`confirm_stage`). A round's export that already holds exactly its picks is measured again in place
    (a killed run resumes). Each profile's repeats are aggregated by `how` (profiles.AGGREGATES).
    Returns the final model and a line per round."""

    kw = train_kw or {}

    def fit(last: bool) -> LatencyModel:
        # the rounds plan on one fit, whose own errors vary from kernel to kernel as a draw would, so
        # its plans try what the mean of several fits overrates; the last model is the mean (REPEATS;
        # docs/costmodel.md, "Four fits, not one")
        return train(hw, data, model_dir, **(kw if last else {**kw, "repeats": 1})).model

    start = read_dataset(data, hw)
    used = labels_spent(start.manifest)
    # after rounds that stop early, the last fit is refitted only where `train_kw` makes more than one fit
    repeats = int(fit_params(start.manifest.get("source") == "measured", kw).get("repeats", ONE_FIT))
    reserve = int(round((budget - used) * confirm)) if budget > used else 0
    last = budget - reserve - used <= 0
    model = fit(last)
    out: list[dict] = []
    t0 = time.perf_counter()
    for r in range(1, rounds + 1):
        left = budget - reserve - used
        if left <= 0:
            break
        size = math.ceil(left / (rounds - r + 1))
        rate = explore if r > rounds // 2 else 0.0
        nets = [kernel_tables(g, hw, model) for g in graphs]  # one model for the whole round
        picks = plan_picks(hw, model, graphs, size, rate, tables=nets)
        draws = 0
        while len(picks) < size and draws < DRAWS:  # the plans are measured: draw where they could go
            have = {p.key for p in picks}
            picks += [p for p in plan_picks(hw, model, graphs, size, rivals=(), tables=nets,
                                            draw=seed * 1000 + r * DRAWS + draws)
                      if p.key not in have][:size - len(picks)]
            draws += 1
        if not picks:
            say(f"round {r}: every pair the plans use is measured; stopping at {used} labels")
            break
        folder = work / f"labels-{r:02d}"
        made = measure_picks(hw, measure, folder, data, picks, seed, how)
        added, used = labels_spent(made) - used, labels_spent(made)
        out.append({"round": r, "kind": "plans", "labels": added, "explore": rate, "draws": draws})
        say(f"round {r}: {added} labels on the plans' kernels (explore {rate:.0%}, {draws} draws){failed_text(made)}, "
            f"{used} in all, {time.perf_counter() - t0:.0f} s{error_text(folder)}")
        last = r == rounds or budget - reserve - used <= 0
        model = fit(last)
    if not last and fit_repeats(repeats, used) > 1:
        model = fit(True)
    if confirm > 0:
        model, more = confirm_stage(hw, measure, work, data, model_dir, used, budget - used, graphs, seed, say, how)
        out += more
    return model, out


def confirm_stage(hw: HardwareConfig, measure: Callable[[Path], Path], work: Path, data: Path, model_dir: Path,
                  rows: int, left: int, graphs: list[Graph], seed: int, say: Callable[[str], None],
                  how: str = "median") -> tuple[LatencyModel, list[dict]]:
    """Passes within `left` labels on the dataset of `rows` rows, each remembered
    (training.remember: the trees stay, so a pass moves a plan only where a measurement says so):
    settle passes (`settle_picks`), each on at most half of what is left so that the next sees what
    it moved, until nothing is worth measuring; then, if labels are left, one pass on the other
    rivals' kernels (the model may overrate them) with at most half of them, and settle passes on
    what that moved; then, if labels are still left, up to DRAWS passes on the kernels of plans on
    Thompson draws with half of them, and settle passes with the rest."""

    model = LatencyModel.load(model_dir, hw)
    out: list[dict] = []

    def run(picks: list[Pick], kind: str, what: str) -> None:
        nonlocal left, model, rows
        n = len(out) + 1
        folder = work / f"{kind}-{n:02d}"
        made = measure_picks(hw, measure, folder, data, picks, seed, how, again=kind == "settle")
        added, rows = labels_spent(made) - rows, labels_spent(made)
        left -= added
        model = remember(hw, data, model_dir)
        out.append({"round": n, "kind": kind, "labels": added, "explore": 0.0})
        say(f"{kind} {n}: {added} labels {what}{failed_text(made)}, {rows} in all{error_text(folder)}")

    def settle(moves: bool = False) -> None:
        for _ in range(SETTLE_PASSES):
            if left <= 0:
                return
            picks = settle_picks(hw, model, graphs, measured_logs(hw, data, model.featurizer),
                                 max(left // 2, min(left, SETTLE_AT_LEAST)), moves=moves)
            if not picks:
                return
            run(picks, "settle", "on the final plans' unmeasured kernels and what decides their calls"
                + (" and their local moves" if moves else ""))

    settle(moves=True)
    if left > 0:
        others = [p for p in plan_picks(hw, model, graphs, 10**9, sure=True) if p.tier == 2][:max(left // 2, 1)]
        if others:
            run(others, "confirm", "on the kernels of the other rivals' plans")
            settle()
    keep = left - left // 2  # half of what is left settles what the draws measure
    drawn = False
    for t in range(DRAWS):  # labels still left: kernels of plans on Thompson draws, then settle again
        if left - keep <= 0:
            break
        picks = plan_picks(hw, model, graphs, left - keep, rivals=(), draw=seed * 1000 + 997 + t)
        if picks:
            run(picks, "confirm", "on the kernels of plans on Thompson draws")
            drawn = True
    if drawn:
        settle()
    return model, out


def failed_text(made: dict) -> str:
    """A round's note on the pairs its profile left out (the part could not run them), or nothing."""
    n = int(made.get("new_unrunnable", 0))
    return f" ({n} of them the part could not run)" if n else ""


def measure_picks(hw: HardwareConfig, measure: Callable[[Path], Path], folder: Path, data: Path, picks: list[Pick],
                  seed: int, how: str = "median", again: bool = False, settings: dict | None = None) -> dict:
    """Export the picks to `folder` (export_picks), measure them and append them to the dataset
    `data` as one more shard (with `settings`: make `data` from them, its manifest holding those
    settings); returns import_profile's manifest."""
    export_picks(hw, folder, picks, seed)
    profile = measure(folder)
    if settings is not None:
        made = import_profile(profile, hw, data, folder, force=True, settings=settings, how=how, unrunnable=True)
    else:
        made = import_profile(profile, hw, data, folder, append=True, again=again, how=how, unrunnable=True)
    record_plan_errors(hw, folder, profile, picks, how)
    return made


def export_synthetic(hw: HardwareConfig, folder: Path, n_groups: int, seed: int) -> None:
    """Export `n_groups` synthetic groups to `folder`, unless it already holds that export (its
    profile is kept, so a rerun measures only what is missing)."""
    if synthetic_export_of(folder, hw, n_groups, seed) is None:
        export_groups(hw, folder, n_groups, seed=seed, force=True)


def export_picks(hw: HardwareConfig, folder: Path, picks: list[Pick], seed: int) -> None:
    """Export the picks to `folder`, unless it already holds exactly them (its profile is kept)."""

    pairs = as_pairs(picks)
    want = {(candidate_id(g.name, i, j), int(k)) for g, i, j, ks in pairs for k in ks}
    try:
        _, _, man = read_export(folder)
        if set(zip(man["group_id"].astype(str), man["cores"].astype(int))) == want:
            return
    except AutotuneError:
        pass
    export_groups(hw, folder, pairs=pairs, seed=seed, force=True)
