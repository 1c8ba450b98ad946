"""The confirm stage's settle passes: which timing most reduces the expected loss of a call.

After the last retrain the plan `tune` makes is set against each baseline's plan and each plan one
local move away (a call); where the two differ, a kernel's estimate errs by the timer's spread
(measured) or the model's error (unmeasured), and one more timing of the kernel that takes most off
a call's expected loss comes first (docs/costmodel.md, "Settling the final plans' calls by
expected loss", "Local moves as calls, and a shared model error"). autotune/synth/plan_labels.py
runs the passes; this module ranks the timings and reads the timer's spread from the kernels
timed again (`timer_spread`, `timer_report`).
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np

from autotune.costmodel.feature_cache import dataset_features
from autotune.costmodel.memory import MIN_POOL, logs_by_key, pooled_spread
from autotune.costmodel.model import LatencyModel
from autotune.data.dataset import read_dataset
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.planning.planner import best_covers, dp_from_table
from autotune.synth.plan_tables import (
    RIVALS,
    Cell,
    Pick,
    error_scales,
    kernel_tables,
    name_order,
    plan_bound,
    plan_cells,
    rival_cells,
)
from autotune.synth.profiles import MIN_SPREAD

#: A kernel is timed at most this many times (the memory answers with a Huber mean of its timings).
#: Ten timings left a near-tie 0.61% behind greedy at 16,000 labels, the chosen kernel's median 2%
#: low; the expected loss stops the timings of a settled call long before thirty (docs/costmodel.md,
#: "The losses to a baseline").
MEASURE_AT_MOST = 30
#: A call whose expected loss is below this share of its network's time picks nothing.
SETTLE_LOSS = 1e-5
#: How much of the model's error two unmeasured kernels share (its correlation): a model that
#: overrates one single eltwise layer overrates them all, so a plan of many unmeasured kernels errs
#: nearly as much as its total, not as the root of their squares.
ERROR_CORRELATION = 0.5
#: The timer's spread (log latency) assumed until MIN_POOL kernels are timed twice: a few percent,
#: as timers on accelerators and CPUs go; replaced by the pooled spread as soon as it is measured.
PROVISIONAL_SPREAD = 0.03
#: A repeat this many spreads slower than its kernel's fastest timing counts as a slow reading in
#: `timer_report` (the spread is 2% on the black boxes, their slow outliers +22% to +31%).
SLOW_SPREADS = 5


def measured_logs(hw: HardwareConfig, data: Path, featurizer: str = "datasheet") -> dict[int, np.ndarray]:
    """Every measured kernel's log latencies (ms) in the dataset, by its memory key (a row measured
    again in a later shard adds to its kernel's list)."""

    ds = read_dataset(data, hw)
    X, _ = dataset_features(ds, hw, featurizer)
    return logs_by_key(X, np.log(ds.rows["latency_ms"].to_numpy(np.float64)))


def timer_spread(logs: dict[int, np.ndarray]) -> float | None:
    """The timer's spread as the settle passes weigh it: `memory.pooled_spread` (the one the memory's
    Huber mean uses), at least MIN_SPREAD; None when fewer than MIN_POOL kernels were timed twice."""
    spread = pooled_spread(logs)
    return None if spread is None else max(spread, MIN_SPREAD)


def timer_report(logs: dict[int, np.ndarray]) -> str:
    """One line on the part's timer from the kernels timed more than once: its spread (what
    `timer_spread` pools) and how many repeats read far slower than their kernel's fastest (slow
    outliers: interference only slows a run down; docs/costmodel.md, "The timer's noise")."""
    repeated = [v for v in logs.values() if len(v) >= 2]
    spread = timer_spread(logs)
    if spread is None:
        return (f"timer: {len(repeated)} kernel(s) timed twice or more, fewer than {MIN_POOL}: spread not "
                f"measured ({PROVISIONAL_SPREAD:.0%} assumed)")
    excess = np.concatenate([v - v.min() for v in repeated])
    slow = int(np.sum(excess > SLOW_SPREADS * spread))
    chances = len(excess) - len(repeated)
    return (f"timer: spread {spread:.1%} a timing (from {len(repeated)} kernels timed twice or more); {slow} of "
            f"{chances} repeats read over {SLOW_SPREADS:.0f} spreads slower than their kernel's fastest")


def expected_loss(gap: float, sd: float) -> float:
    """What sticking with a plan costs in expectation when a rival is `gap` dearer on the estimates
    and the true difference is normal around it with standard deviation `sd`: E[max(0, -diff)],
    the normal loss function sd * (phi(z) - z * Q(z)), z = gap / sd."""
    if sd <= 0:
        return max(-gap, 0.0)
    z = gap / sd
    return sd * (math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) - z * 0.5 * math.erfc(z / math.sqrt(2)))


def kernel_variance(logs: np.ndarray | None, spread: float, guess: float, more: int = 0) -> float:
    """Variance (log scale) of what the model answers for a kernel after `more` timings: a measured
    one's Huber mean (memory.huber_location), by the timer's spread or the kernel's own timings
    where they disagree more, over how often it is timed; an unmeasured one's prediction by `guess`
    (the model's error) until timed."""
    n = 0 if logs is None else len(logs)
    if n + more == 0:
        return guess * guess
    own = float(np.var(logs, ddof=1)) if logs is not None and n >= 2 else 0.0
    return max(spread * spread, own) / (n + more)


def call_variance(times: np.ndarray, var: np.ndarray, sign: np.ndarray, new: np.ndarray, guess: float) -> float:
    """Variance of a call's difference (ms squared): kernels whose times (every use counted) are
    `times`, log variances `var`, on the final plan's side (`sign` +1) or the rival's (-1); the
    unmeasured ones (`new`) share ERROR_CORRELATION of the model's error `guess`, so their errors
    add up on one side and cancel across the two."""
    t = np.asarray(times, dtype=np.float64)
    shared = float(np.sum((sign * t)[new])) ** 2 - float(np.sum(t[new] ** 2))
    return float(np.sum(t * t * var)) + ERROR_CORRELATION * guess * guess * shared


def variance_drops(times: np.ndarray, var: np.ndarray, after: np.ndarray, sign: np.ndarray, new: np.ndarray,
                   guess: float) -> np.ndarray:
    """How much one more timing of each kernel takes off `call_variance`: its own variance falls to
    `after`, and an unmeasured one no longer shares the model's error with the others."""
    t = np.asarray(times, dtype=np.float64)
    total = float(np.sum((sign * t)[new]))
    shared = 2.0 * sign * t * (total - sign * t)  # call_variance's shared term, before less after
    return t * t * (var - after) + np.where(new, ERROR_CORRELATION * guess * guess * shared, 0.0)


def settle_picks(hw: HardwareConfig, model: LatencyModel, graphs: list[Graph], logs: dict[int, np.ndarray],
                 limit: int, rivals: tuple[str, ...] = RIVALS, moves: bool = False) -> list[Pick]:
    """What to measure next, at most `limit`: first the unmeasured kernels of the plan `tune`
    makes (planner.sure_plan), by their share of its time; then, for each call between that plan
    and one of the `rivals`' (or, with `moves`, a plan one `local_moves` move away, or the best
    plan `avoiding` one of its measured kernels), the kernels
    where the two differ, unmeasured or measured (fewer than
    MEASURE_AT_MOST times), by how much of the call's expected loss one more measurement of each
    removes (`expected_loss` of the gap over the call's spread, as a share of the network's time,
    times the kernel's share of that spread's variance it takes away; a kernel in several calls
    counts by its largest). A measured kernel errs by the timer's spread (pooled from kernels timed
    twice, PROVISIONAL_SPREAD before MIN_POOL of them are), an unmeasured one by the model's error,
    ERROR_CORRELATION of it shared (`call_variance`); every use of a kernel counts. Calls whose
    loss is below SETTLE_LOSS pick nothing. When every call against a baseline looks settled
    before the spread is pooled, the final plans' largest kernels timed once are picked after
    their unmeasured ones, as many as pooling needs: a part whose calls look clear on the
    provisional spread may have a noisier timer."""

    ks = np.asarray(hw.core_counts, dtype=np.int64)
    doubt, _, guess = error_scales(model)
    pooled = timer_spread(logs)
    spread = pooled or PROVISIONAL_SPREAD
    first: dict[int, Pick] = {}
    once: dict[int, Pick] = {}  # the final plans' kernels timed once: what calibrates the timer
    scores: dict[int, tuple[float, Pick]] = {}
    open_calls = 0  # calls against a baseline still worth a timing (a move's never looks settled for long)
    for g in (graphs[n] for n in name_order(graphs)):
        net = kernel_tables(g, hw, model)
        if net is None:
            continue
        si, sj, inverse, pred, keys, measured, at = net
        everything = np.ones(pred.shape, bool)
        mine = plan_cells(dp_from_table(g, hw, si, sj, np.where(measured, pred, pred * (1.0 + doubt))[inverse],
                                    "learned"), inverse, at, ks)
        cost = max(plan_bound(mine, pred, everything, 1.0), 1e-12)
        a = Counter(c[:2] for c in mine)
        for d, c, i, j in mine:
            key = int(keys[d, c])
            pick = Pick(g, i, j, int(ks[c]), float(pred[d, c]), key, 0, float(pred[d, c]) * a[d, c] / cost)
            if not measured[d, c]:
                if key not in first or pick.share > first[key].share:
                    first[key] = pick
            elif len(logs.get(key, ())) == 1 and (key not in once or pick.share >= once[key].share):
                pick.timed = 1
                once[key] = pick
        calls = rival_cells(g, hw, model, net, rivals)
        others: list[list[Cell]] = []
        if moves:  # an unmeasured kernel of `mine` is picked first anyway: only the measured ones get an avoiding call
            timed = [x for x in mine if measured[x[0], x[1]]]
            others = list({tuple(mv): mv for mv in local_moves(mine, si, sj, inverse, pred, at)
                           + avoiding(timed, si, sj, inverse, pred, at)}.values())
        for which, theirs in enumerate(calls + others):
            if not np.isfinite(plan_bound(theirs, pred, everything, 1.0)):
                continue  # it holds a kernel the part could not run: no plan to weigh against
            b = Counter(c[:2] for c in theirs)
            differ = {x[:2]: x for x in mine + theirs if (x[:2] in a) != (x[:2] in b)}
            if not differ:
                continue
            cells = list(differ.values())
            times = np.array([float(pred[d, c]) * (a[d, c] + b[d, c]) for d, c, _, _ in cells])
            own = [logs.get(int(keys[d, c])) if measured[d, c] else None for d, c, _, _ in cells]
            var = np.array([kernel_variance(v, spread, guess) for v in own])
            after = np.array([kernel_variance(v, spread, guess, more=1) for v in own])
            sign = np.array([1.0 if (d, c) in a else -1.0 for d, c, _, _ in cells])
            new = np.array([v is None for v in own])
            spread2 = call_variance(times, var, sign, new, guess)
            loss = expected_loss(plan_bound(theirs, pred, everything, 1.0) - cost, math.sqrt(spread2)) / cost
            if loss < SETTLE_LOSS:
                continue
            open_calls += which < len(calls)
            drops = variance_drops(times, var, after, sign, new, guess)
            for (d, c, i, j), t, n, drop in zip(cells, times, own, drops):
                if n is not None and len(n) >= MEASURE_AT_MOST:
                    continue
                gain = loss * max(float(drop), 0.0) / spread2
                key = int(keys[d, c])
                if gain > scores.get(key, (0.0,))[0]:
                    scores[key] = (gain, Pick(g, i, j, int(ks[c]), float(pred[d, c]), key, 1, t / cost,
                                              0 if n is None else len(n)))
    picks = sorted(first.values(), key=lambda p: (-p.share, p.key))
    if pooled is None and not open_calls:  # every baseline's call looks settled on the provisional spread: check it
        need = MIN_POOL - sum(len(v) >= 2 for v in logs.values())
        picks += sorted(once.values(), key=lambda p: (-p.share, p.key))[:max(need, 0)]
    have = {p.key for p in picks}
    picks += [p for _, p in sorted(scores.values(), key=lambda s: (-s[0], s[1].key)) if p.key not in have]
    return picks[:limit]


def avoiding(mine: list[Cell], si: np.ndarray, sj: np.ndarray, inverse: np.ndarray, pred: np.ndarray,
             at: dict[tuple[int, int], int]) -> list[list[Cell]]:
    """For each distinct kernel of `mine` (as `plan_cells` gives them), the DP's best plan on the
    predictions that never uses it, at any core count or place: the call a kernel the whole plan
    leans on gets, however far from `mine` its best alternative lies (a repeated block cut four
    layers later is many local moves away). Kernels nothing can replace raise no call."""
    best, low = pred.argmin(1), pred.min(1)
    n = int(sj.max()) if len(sj) else 0
    out: list[list[Cell]] = []
    for d in dict.fromkeys(x[0] for x in mine):
        cost = np.where(inverse == d, np.inf, low[inverse])
        total, arg = best_covers(si, sj, cost, 0, n)
        if not np.isfinite(total[n]):
            continue
        out.append(_cover_cells(si, arg, inverse, at, best, 0, n))
    return out


def _cover_cells(si: np.ndarray, arg: np.ndarray, inverse: np.ndarray, at: dict[tuple[int, int], int],
                 best: np.ndarray, start: int, stop: int) -> list[Cell]:
    """The cells of the cover of layers [start, stop) that `best_covers`' `arg` traces back, each
    kernel at its `best` core column."""
    plan, j = [], stop
    while j > start:
        i = int(si[arg[j]])
        e = int(inverse[at[(i, j)]])
        plan.append((e, int(best[e]), i, j))
        j = i
    return plan[::-1]


def local_moves(mine: list[Cell], si: np.ndarray, sj: np.ndarray, inverse: np.ndarray,
                pred: np.ndarray, at: dict[tuple[int, int], int]) -> list[list[Cell]]:
    """The plans one move away from `mine` (as `plan_cells` gives them), each move made at every
    place where the same kernel (or pair of kernels) occurs, as a repeated block would be planned:
    a kernel at its best other core count; a kernel cut at each layer inside it, each side planned
    by the DP on the predictions; two neighbouring kernels merged into one span (where it is legal)
    at its best core count. The calls a baseline's plan does not raise: a split the model overrates
    is never in any plan made on its predictions, so only such a call measures it."""
    best, low = pred.argmin(1), pred.min(1)
    cost = low[inverse]
    # the spans mirrored ([a, b) as [n - b, n - a)), so that best_covers' forward pass plans each
    # suffix [m, j); within an end, the latest mirrored start first: a tie goes to the shorter kernel
    n = int(sj.max()) if len(sj) else 0
    order = np.lexsort((sj, n - si))  # by mirrored end, then mirrored start descending
    rsi, rsj, rcost = (n - sj)[order], (n - si)[order], cost[order]

    def cell(i: int, j: int) -> Cell:
        d = int(inverse[at[(i, j)]])
        return (d, int(best[d]), i, j)

    @cache
    def splits(i: int, j: int) -> list[list[Cell]]:
        """For each cut m inside [i, j): the DP's best plan of [i, m) then of [m, j)."""
        _, fa = best_covers(si, sj, cost, i, j - 1)
        _, ba = best_covers(rsi, rsj, rcost, n - j, n - i - 1)
        out = []
        for m in range(i + 1, j):
            left = _cover_cells(si, fa, inverse, at, best, i, m)
            right, q = [], n - m
            while q > n - j:
                r = int(rsi[ba[q]])
                right.append(cell(n - q, n - r))
                q = r
            out.append(left + right)
        return out

    def replaced(sig: tuple, width: int, make) -> list[Cell]:
        out, p = [], 0
        while p < len(mine):
            window = mine[p:p + width]
            if len(window) == width and tuple(x[:2] for x in window) == sig:
                out += make(window)
                p += width
            else:
                out.append(mine[p])
                p += 1
        return out

    moves: list[list[Cell]] = []
    seen: set[tuple] = set()
    for p, (d, c, i, j) in enumerate(mine):
        if ("one", d, c) not in seen:
            seen.add(("one", d, c))
            others = [k for k in np.argsort(pred[d]) if k != c]
            if others:
                moves.append(replaced(((d, c),), 1, lambda w, k=int(others[0]): [(w[0][0], k, w[0][2], w[0][3])]))
            for m in range(1, j - i):
                moves.append(replaced(((d, c),), 1, lambda w, m=m: splits(w[0][2], w[0][3])[m - 1]))
        if p + 1 < len(mine):
            nxt = mine[p + 1]
            sig = ((d, c), nxt[:2])
            if nxt[2] == j and (i, nxt[3]) in at and ("two", sig) not in seen:
                seen.add(("two", sig))
                moves.append(replaced(sig, 2, lambda w: [cell(w[0][2], w[1][3])]))
    unique = {tuple(mv): mv for mv in moves if mv != mine}
    return list(unique.values())
