"""A roofline with fixed costs whose constants are fitted to measurements: the learned model's prior.

The structure is the textbook one for a kernel on k cores (docs/architecture.md, "The device
boundary": features may be datasheet estimates; the device is a black box):

    T = launch_k + n_layers * layer_k + reload * R(P) + max(C', D) + overlap * min(C', D)
    P = program . (distinct dense convs, other distinct MAC layers, other distinct layers, repeats)
    R(P) = step * (ceil(P) - 1, smoothed) + (1 - step) * max(0, P - 1)    whole reloads, or a ramp
    C' = C * max(1, (k * M / max(C, D) / (power_share * cores)) ** power_exp)   a power-limited clock
    M = compute_k * mix_k(M_rows, M_chan)                                the MAC-array part of C
    C = compute_k * (mix_k(C_rows, C_chan) + sum_c stride_c * mix_k(W_c_rows, W_c_chan) + pad * mix_k(P_rows, P_chan))
        + tile_us * mix_k(N_rows, N_chan)
    D = bandwidth_k * (mix_k(B_rows, B_chan) + reread * mix_k(R_rows, R_chan) + spill * mix_k(S_rows, S_chan))
    mix_k(a, b) = b + split_k * (a - b)

C, M, B, R, S are the features' datasheet estimates (analytic.split_what_ifs) of compute (halo
included) and its MAC part, DRAM time of boundary activations and weights, of re-reads and of
spills; W_c is the compute of windowed layers whose channel stride falls in class c, under the
two natural splits (by channels; feature maps by rows); N is the on-chip tiles the busiest core
works through and P the compute of the last tiles' unused parts (analytic.tile_counts). Every
constant that depends on the device (launch, per-layer and per-tile costs, how much of the padding
is paid, the bandwidth k cores really reach, the clock they really run at and
how it drops when many cores are busy with MACs, how much slower each channel-stride class runs
(banked memories), which split the compiler picks, how much DMA
hides under compute, how its tiling re-reads and spills compare with the estimate) is fitted
from the labels, one set per core count and a few shared, by robust least squares on log latency.
Nothing is read from the hardware's `device:` section. What the roofline cannot express is left
to the gradient-boosted trees on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotune.hardware.analytic import STRIDE_CLASSES

_STRIDES = tuple(f"stride{c}" for c in STRIDE_CLASSES)
_PARTS = ("compute", "halo", "bytes", "reread", "spill", "mac", "pad") + _STRIDES
#: Feature columns the fit reads (all log10(x + 1), of microseconds or of tiles, except n_layers and cores).
COLUMNS = tuple(f"log_{part}_{policy}_us" for policy in ("rows", "chan") for part in _PARTS) + (
    "n_layers", "cores", "n_distinct", "n_distinct_conv", "n_distinct_lite", "log_tiles_rows", "log_tiles_chan",
    "hw_cores")


@dataclass(frozen=True)
class _Param:
    """One fitted constant (or list of them) of the roofline: how many numbers it holds (PER_CORE:
    one per core count), how least squares sees it (`log`: positive; `logit`: a share in (0, 1);
    `logit4`: in (0, 4)) and where a fit without a prior starts."""

    name: str
    size: int
    space: str
    start: float | tuple[float, ...]


PER_CORE = -1
#: The roofline's constants in the order of the parameter vector `fit_roofline` solves for: the one
#: place that lays them out (packing, unpacking, the start, the JSON all follow it). The start: an
#: even split mix, the datasheet's bandwidth and clock, a 10 us launch, 1 us per layer, half of the
#: shorter of compute and DMA hidden, re-reads and spills as estimated, a power budget for half the
#: cores, small stride slowdowns and programs, half a microsecond per tile, half the padding paid.
_TABLE = (
    _Param("split", PER_CORE, "logit", 0.5), _Param("bandwidth", PER_CORE, "log", 1.0),
    _Param("compute", PER_CORE, "log", 1.0), _Param("launch", PER_CORE, "log", 10.0),
    _Param("layer", PER_CORE, "log", 1.0), _Param("overlap", 1, "logit", 0.5), _Param("reread", 1, "log", 1.0),
    _Param("spill", 1, "log", 1.0), _Param("power_share", 1, "log", 0.5), _Param("power_exp", 1, "logit4", 0.5),
    _Param("stride", len(_STRIDES), "log", 0.02), _Param("program", 4, "log", (0.1, 0.07, 0.04, 0.01)),
    _Param("reload_us", 1, "log", 5.0), _Param("tile_us", 1, "log", 0.5), _Param("pad", 1, "log", 0.5),
    _Param("reload_step", 1, "logit", 0.5),
)
_PER_CORE = tuple(q.name for q in _TABLE if q.size == PER_CORE)
#: Width (in capacities) of the smoothed steps of whole program reloads: narrow, yet wide enough
#: that least squares sees a slope near each step.
STEP_WIDTH = 0.05
_STEPS_LOGIT = float(np.log(0.98 / 0.02))  # reloads in whole steps, 98%
_SCALE_SCAN = np.log(np.geomspace(0.25, 4.0, 25))  # program scales tried around the first fit
_MAX_STEPS = 64
_SCAN_REFITS = 3  # the best scales of the scan, each refined
_REFIT_NFEV = 100  # evaluations per refinement: they start close and most converge in 40
_EPS_2POINT = float(np.finfo(np.float64).eps) ** 0.5  # scipy's relative step for '2-point' differences
_BATCH_VALUES = 1 << 12  # rows x parameter vectors in one batch of a Jacobian
_PASS_ROWS = 10_000  # a numpy pass's fixed cost, in rows evaluated (see `_difference_cost`)
#: How `fit_roofline` takes its Jacobian's forward differences: "fast" picks the cheaper of "whole"
#: (every constant moved on every row) and "split" (each core count's constants on its rows alone),
#: both in batches of perturbed vectors; "plain" is "whole" one vector a numpy pass, as scipy's own
#: '2-point' differences are (the reference the faster ways are checked and timed against).
DIFFERENCES = ("fast", "whole", "split", "plain")


@dataclass
class RooflineFit:
    """Fitted constants per core count (`cores`), plus the overlap share. JSON-serialisable."""

    cores: list[float]
    split: list[float]  # 0 = channel split, 1 = feature maps by rows
    bandwidth: list[float]  # multiplies the datasheet DRAM estimate
    compute: list[float]  # multiplies the datasheet compute estimate
    launch: list[float]  # us per kernel
    layer: list[float]  # us per layer in a kernel
    overlap: float  # share of the shorter of compute and DMA that is not hidden
    reread: float  # multiplies the re-read estimate
    spill: float  # multiplies the spill estimate
    power_share: float  # busy cores the power budget sustains at full clock, as a share of the part's cores
    power_exp: float  # how fast the clock drops beyond it
    tile_us: float  # setup per on-chip tile of the busiest core
    pad: float  # share of the last tiles' unused compute that is paid
    reload_step: float  # 1: a program reloads in whole capacities (steps); 0: in proportion to its excess
    stride: list[float]  # extra compute share of windowed layers per channel-stride class
    program: list[float]  # program size per distinct dense conv, other MAC layer, other layer, repeat (in capacities)
    reload_us: float  # cost per capacity of program beyond the first

    def __post_init__(self) -> None:
        if len(self.stride) != len(_STRIDES) or len(self.program) != 4:
            raise ValueError("calibration lists have the wrong length")

    def to_dict(self) -> dict:
        return {"cores": self.cores, **{q.name: getattr(self, q.name) for q in _TABLE}}

    @classmethod
    def from_dict(cls, d: dict) -> RooflineFit:
        K = len(d["cores"])
        d = dict(d)
        # models saved before reload_step existed reloaded in proportion to the excess; before
        # power_share, the budget was in cores (a one-part fit's largest core count is the part's)
        d.setdefault("reload_step", 0.0)
        if "power_share" not in d:
            d["power_share"] = float(d["power_cores"]) / max(float(c) for c in d["cores"])
        kw: dict[str, Any] = {"cores": [float(v) for v in d["cores"]]}
        for q in _TABLE:
            kw[q.name] = float(d[q.name]) if q.size == 1 else [float(v) for v in d[q.name]]
            if q.size == PER_CORE and len(kw[q.name]) != K:
                raise ValueError("calibration lists differ in length")
        if not all(math.isfinite(v) for x in kw.values() for v in (x if isinstance(x, list) else [x])):
            raise ValueError("a calibration value is not finite")
        return cls(**kw)

    def log_ms(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Natural log of the latency in ms: what a model with this prior starts each row from."""
        return np.log(np.maximum(self.predict_us(parts), 1e-9) / 1e3)

    def predict_us(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Latency (us) of rows given their `parts` (see `columns_to_parts`)."""
        ks = np.log2(np.asarray(self.cores))
        # a core count never measured takes the constants of the nearest one measured
        j = np.abs(np.log2(parts["k"])[:, None] - ks[None, :]).argmin(1)
        c = {q.name: np.asarray(getattr(self, q.name))[j] if q.size == PER_CORE else np.asarray(getattr(self, q.name))
             for q in _TABLE}
        return _roofline(parts, c)


def _roofline(parts: dict[str, np.ndarray], c: dict[str, np.ndarray]) -> np.ndarray:
    """The module docstring's T (us) of each row; `c` holds every constant of _TABLE, the
    per-core ones already picked for each row."""
    def mix(name: str) -> np.ndarray:
        a, b = parts[name + "_rows"], parts[name + "_chan"]
        return b + c["split"] * (a - b)

    slow = sum(s * mix(name) for s, name in zip(c["stride"], _STRIDES))  # stride-class slowdowns
    C = c["compute"] * (mix("compute") + mix("halo") + slow + c["pad"] * mix("pad")) + c["tile_us"] * mix("tiles")
    D = c["bandwidth"] * (mix("bytes") + c["reread"] * mix("reread") + c["spill"] * mix("spill"))
    busy_cores = parts["k"] * c["compute"] * (mix("mac") + slow) / np.maximum(np.maximum(C, D), 1e-12)
    C = C * np.clip(busy_cores / (c["power_share"] * parts["hw_cores"]), 1.0, 1e3) ** c["power_exp"]
    # a kernel's program (descriptors, instructions) beyond what its memory holds is reloaded
    program = c["program"]
    size = (program[0] * parts["dconv"] + program[1] * parts["dlite"] + program[2] * parts["dother"]
            + program[3] * (parts["n"] - parts["dconv"] - parts["dlite"] - parts["dother"]))
    step = c["reload_step"]
    reload = c["reload_us"] * ((1.0 - step) * np.maximum(size - 1.0, 0.0) + step * steps(size))
    return c["launch"] + parts["n"] * c["layer"] + reload + np.maximum(C, D) + c["overlap"] * np.minimum(C, D)


def steps(size: np.ndarray) -> np.ndarray:
    """Whole reloads of a program of `size` capacities (any shape), max(ceil(size) - 1, 0), with
    each step smoothed over STEP_WIDTH so the fit can move the capacity; past _MAX_STEPS, a ramp."""
    top = min(int(np.ceil(np.max(size, initial=1.0))) + 1, _MAX_STEPS)
    m = np.arange(1, top + 1, dtype=np.float64)
    z = np.clip((np.minimum(size, top)[..., None] - m) / STEP_WIDTH, -50.0, 50.0)
    return (1.0 / (1.0 + np.exp(-z))).sum(-1) + np.maximum(size - top, 0.0)


def _passes(n_vectors: int, n_rows: int, batch_values: int = _BATCH_VALUES) -> int:
    """Numpy passes that evaluate `n_vectors` parameter vectors on `n_rows` rows, in batches of at
    most `batch_values` values (one vector a pass past that)."""
    return max(1, min(n_vectors, -(-n_vectors * n_rows // batch_values)))


def _difference_cost(blocks: list[tuple[np.ndarray, np.ndarray]]) -> int:
    """What a Jacobian by `blocks` (constants moved, rows evaluated) costs, in row evaluations:
    each numpy pass costs about _PASS_ROWS of them besides its rows (measured: 0.6 ms a pass)."""
    return sum(_passes(len(c), len(r)) * _PASS_ROWS + len(c) * len(r) for c, r in blocks)


def columns_to_parts(X: np.ndarray, index: dict[str, int]) -> dict[str, np.ndarray]:
    """The roofline's inputs from feature rows; `index` maps each of COLUMNS to its column in X."""
    logs = [f"log_{part}_{policy}_us" for policy in ("rows", "chan") for part in _PARTS]
    plain = ["n_layers", "cores", "n_distinct_conv", "n_distinct_lite", "n_distinct", "log_tiles_rows",
             "log_tiles_chan", "hw_cores"]
    # one gather of the needed columns, transposed: each column is then contiguous
    sub = np.ascontiguousarray(X[:, [index[c] for c in logs + plain]].astype(np.float64).T)
    out = {name[4:-3]: 10.0 ** sub[i] - 1.0 for i, name in enumerate(logs)}
    n, k, dconv, dlite, dall, tiles_rows, tiles_chan, hw_cores = sub[len(logs):]
    out.update(n=n, k=k, dconv=dconv, dlite=dlite, dother=dall - dconv - dlite, tiles_rows=10.0 ** tiles_rows - 1.0,
               tiles_chan=10.0 ** tiles_chan - 1.0, hw_cores=np.maximum(hw_cores, 1.0))
    return out


def _slots(K: int) -> dict[str, slice]:
    """Where each constant of _TABLE sits in a parameter vector for K core counts."""
    out, at = {}, 0
    for q in _TABLE:
        n = K if q.size == PER_CORE else q.size
        out[q.name] = slice(at, at + n)
        at += n
    return out


def _to_space(q: _Param, v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if q.space == "log":
        return np.log(v)
    share = np.clip(v / 4.0 if q.space == "logit4" else v, 1e-6, 1 - 1e-6)
    return np.log(share / (1 - share))


def _from_space(q: _Param, th: np.ndarray) -> np.ndarray:
    if q.space == "log":
        return np.exp(th)
    sig = 1.0 / (1.0 + np.exp(-np.clip(th, -50.0, 50.0)))
    return 4.0 * sig if q.space == "logit4" else sig


def _start(K: int) -> np.ndarray:
    """The parameter vector a fit without a prior starts from (_TABLE's starts)."""
    sl = _slots(K).values()
    return np.concatenate([np.resize(_to_space(q, q.start), s.stop - s.start) for q, s in zip(_TABLE, sl)])


def _pack(fit: RooflineFit, ks: np.ndarray) -> np.ndarray:
    """`fit`'s constants as the parameter vector `fit_roofline` solves for, at core counts `ks`
    (each takes the constants of the nearest core count `fit` has)."""
    j = np.abs(np.log2(ks)[:, None] - np.log2(np.asarray(fit.cores))[None, :]).argmin(1)
    return np.concatenate([np.atleast_1d(_to_space(q, np.asarray(getattr(fit, q.name))[j] if q.size == PER_CORE
                                                   else getattr(fit, q.name))) for q in _TABLE])


def fit_roofline(parts: dict[str, np.ndarray], y_us: np.ndarray, max_rows: int = 30000, seed: int = 0,
                 f_scale: float = 0.05, prior: RooflineFit | None = None, prior_weight: float = 0.05,
                 differences: str = "fast") -> RooflineFit:
    """Robust least squares (soft L1 on log latency, so timing outliers barely pull) of the
    roofline's constants, on at most `max_rows` rows drawn at random. With `prior` (e.g. a fit over
    a family of parts), a maximum a posteriori fit: it starts there and each constant pays
    `prior_weight` per e-fold it moves away, so a few labels refine it without running wild (the
    program's scale, steps and reload cost excepted). The program's scale is scanned after the
    first fit: whole reloads make the objective a staircase that local search cannot climb.
    `differences` is how its Jacobian is taken (DIFFERENCES)."""
    from threadpoolctl import threadpool_limits

    if differences not in DIFFERENCES:
        raise ValueError(f"differences {differences!r}: expected one of {', '.join(DIFFERENCES)}")
    # its SVDs have a few dozen columns: one BLAS thread is several times faster than many
    with threadpool_limits(1):
        return _fit_roofline(parts, y_us, max_rows, seed, f_scale, prior, prior_weight, differences)


def _fit_roofline(parts: dict[str, np.ndarray], y_us: np.ndarray, max_rows: int, seed: int, f_scale: float,
                  prior: RooflineFit | None, prior_weight: float, differences: str) -> RooflineFit:
    from scipy.optimize import least_squares

    n = len(y_us)
    if n > max_rows:
        sub = np.random.default_rng(seed).choice(n, max_rows, replace=False)
        parts = {key: v[sub] for key, v in parts.items()}
        y_us = y_us[sub]
    ks = np.unique(parts["k"])
    K = len(ks)
    j = np.searchsorted(ks, parts["k"])
    log_y = np.log(y_us)

    th_prior = None if prior is None else _pack(prior, ks)
    sl = _slots(K)
    prog, reload, step = sl["program"], sl["reload_us"], sl["reload_step"]

    def on_labels(th: np.ndarray, parts: dict[str, np.ndarray], j: np.ndarray, log_y: np.ndarray) -> np.ndarray:
        """The label residuals of parameter vector `th`, or of each row of a matrix of them."""
        c = _unpack(th, K)
        t = _roofline(parts, {q.name: _per_row(q, c[q.name], j, batched=th.ndim > 1) for q in _TABLE})
        return np.log(np.maximum(t, 1e-9)) - log_y

    def on_prior(th: np.ndarray) -> np.ndarray:
        # how much program a part's memory holds, and whether it reloads in whole steps, are device
        # facts no datasheet tells: the prior holds the program's shape, not its scale, its steps or
        # what a reload costs
        d = th - th_prior
        d[..., prog] -= d[..., prog].mean(-1, keepdims=True)
        d[..., step] = d[..., reload] = 0.0
        return prior_weight * d

    last: list[np.ndarray] = []  # the last vector `residual` saw and its label residuals: a Jacobian's base

    def residual(th: np.ndarray) -> np.ndarray:
        r = on_labels(th, parts, j, log_y)
        last[:] = [th.copy(), r]
        return r if th_prior is None else np.concatenate([r, on_prior(th)])

    # Forward differences with scipy's '2-point' steps, faster than its own two ways: a constant
    # of one core count moves only that core count's rows, so on many rows only they are
    # evaluated again; and perturbed vectors go in batches, a few numpy passes rather than a
    # Python call per constant (which is what costs on few rows). The numbers are scipy's up to
    # the last bit of numpy's vectorised exp and log (a row's place in the array can pick the
    # SIMD or the scalar path).
    owner = np.full(max(x.stop for x in sl.values()), -1)  # each constant's core count (index), or -1
    for q in _TABLE:
        if q.size == PER_CORE:
            owner[sl[q.name]] = np.arange(K)
    whole = [(np.arange(len(owner)), np.arange(len(log_y)))]
    split = [(np.flatnonzero(owner < 0), whole[0][1])]
    split += [(np.flatnonzero(owner == k), np.flatnonzero(j == k)) for k in range(K)]
    blocks = {"fast": min(whole, split, key=_difference_cost), "split": split}.get(differences, whole)
    batch_values = 1 if differences == "plain" else _BATCH_VALUES
    args = [({key: v[rows] for key, v in parts.items()}, j[rows], log_y[rows]) for _, rows in blocks]

    def jacobian(th: np.ndarray) -> np.ndarray:
        h = _EPS_2POINT * np.where(th >= 0, 1.0, -1.0) * np.maximum(1.0, np.abs(th))
        dx = (th + h) - th
        TH = th + np.diag(dx)
        # least_squares evaluates the residuals at a point before its Jacobian there
        f0 = last[1] if last and np.array_equal(last[0], th) else on_labels(th, parts, j, log_y)
        J = np.zeros((len(f0) + (0 if th_prior is None else len(th)), len(th)))
        for (cols, rows), block_args in zip(blocks, args):
            for c in np.array_split(cols, _passes(len(cols), len(rows), batch_values)):
                J[rows[:, None], c] = ((on_labels(TH[c], *block_args) - f0[rows]) / dx[c, None]).T
        if th_prior is not None:
            J[len(f0):] = ((on_prior(TH) - on_prior(th)) / dx[:, None]).T
        return J

    def cost(th: np.ndarray) -> float:  # least_squares' soft-L1 objective
        z = (residual(th) / f_scale) ** 2
        return float(np.sum(np.sqrt(1.0 + z) - 1.0))

    th0 = _start(K) if th_prior is None else th_prior
    res = least_squares(residual, th0, jac=jacobian, loss="soft_l1", f_scale=f_scale, max_nfev=400)
    # whole reloads make the cost a staircase in the program's scale, flat between steps: local
    # search stalls on a wrong stair, so scan the scale (and steps against a ramp), then refine
    scan = []
    for h in (res.x[step], _STEPS_LOGIT):
        for ds in _SCALE_SCAN:
            th = res.x.copy()
            th[prog] += ds
            th[step] = h
            scan.append(th)
    for th in sorted(scan, key=cost)[:_SCAN_REFITS]:
        other = least_squares(residual, th, jac=jacobian, loss="soft_l1", f_scale=f_scale, max_nfev=_REFIT_NFEV)
        if other.cost < res.cost:
            res = other
    return roofline_at(res.x, ks)


def _per_row(q: _Param, values: np.ndarray, j: np.ndarray, batched: bool) -> np.ndarray:
    """A constant's values as `_roofline` reads them for rows of core-count index `j`: a per-core
    one picked for each row; a list's items one by one (the list's axis first, then a row axis)
    when `values` holds one vector per parameter vector of a batch; any other as it is."""
    if q.size == PER_CORE:
        return values[..., j]
    if q.size > 1 and batched:
        return np.moveaxis(values, -1, 0)[..., None]
    return values


def _unpack(th: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """The constants in a parameter vector for K core counts (the inverse of `_pack`); for a matrix
    of vectors (one per row), each constant's values in rows too."""
    return {q.name: _from_space(q, th[..., s]) for q, s in zip(_TABLE, _slots(K).values())}


def roofline_at(th: np.ndarray, ks: np.ndarray) -> RooflineFit:
    """The RooflineFit of parameter vector `th` at core counts `ks`."""
    c = _unpack(th, len(ks))
    kw: dict[str, Any] = {"cores": [float(k) for k in ks]}
    kw.update({q.name: float(c[q.name][0]) if q.size == 1 else c[q.name].tolist() for q in _TABLE})
    return RooflineFit(**kw)
