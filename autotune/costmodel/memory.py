"""The measured memory: a model answers a kernel it has measured with that measurement.

Trees and a roofline smooth over their labels, so a kernel measured on the part still comes back
predicted, a few percent off, and the planner's search can prefer an unmeasured rival whose
prediction errs low (the optimizer's curse). The memory keys every training row by its feature row
(two pairs with the same row are the same kernel to the model) and returns that row's measured
latency, in log ms, wherever a query row matches exactly: a kernel timed more than twice answers
with a Huber mean of its timings once the timer's spread is known (pooled from the kernels timed
twice), else with their median (docs/costmodel.md, "A Huber mean of a kernel's timings"). Rows are
keyed by a 64-bit hash of their float32 bytes, computed with numpy over the whole matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Fixed odd multipliers, one per feature column (drawn once; changing them changes saved keys).
_SEED = 20261203
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
#: Kernels timed twice or more needed before the timer's spread is pooled from them.
MIN_POOL = 8
#: Huber's constant, in timer spreads: a timing further than this from its kernel's estimate counts
#: less, so a slow outlier moves the estimate by at most this much (1.5, as textbooks use: about 96%
#: as efficient as the mean on normal noise, where the median is 64%).
HUBER_K = 1.5


def logs_by_key(X: np.ndarray, logy: np.ndarray) -> dict[int, np.ndarray]:
    """Each kernel's log latencies (rows of X with one key, `row_keys`), in row order."""
    keys = row_keys(X)
    order = np.argsort(keys, kind="stable")
    uniq, start = np.unique(keys[order], return_index=True)
    return {int(k): v for k, v in zip(uniq, np.split(np.asarray(logy)[order], start[1:]))}


def first_differences(logs: dict[int, np.ndarray]) -> np.ndarray:
    """Second timing less first of each kernel timed twice or more (log scale), from `logs_by_key`:
    what the timer alone moves a label by (later timings are left out, so every kernel counts once)."""
    return np.array([v[1] - v[0] for v in logs.values() if len(v) >= 2], dtype=np.float64)


def pooled_spread(logs: dict[int, np.ndarray]) -> float | None:
    """The robust standard deviation of one timing's log latency, pooled over the kernels timed twice
    or more (their first two: a difference has sqrt(2) times the spread); None when fewer than
    MIN_POOL kernels were."""
    diffs = np.abs(first_differences(logs))
    if len(diffs) < MIN_POOL:
        return None
    return 1.4826 * float(np.median(diffs)) / math.sqrt(2)


def huber_location(v: np.ndarray, scale: float | None) -> float:
    """One kernel's log timings `v` as one value: their Huber M-estimate of location with constant
    HUBER_K * `scale` (iteratively reweighted from the median), or their median without a scale or
    with fewer than three timings (two: the median is their mean)."""
    v = np.asarray(v, dtype=np.float64)
    mu = float(np.median(v))
    if scale is None or scale <= 0 or len(v) < 3:
        return mu
    c = HUBER_K * scale
    for _ in range(50):
        r = np.abs(v - mu)
        w = np.minimum(1.0, c / np.maximum(r, 1e-300))
        new = float(np.sum(w * v) / np.sum(w))
        if abs(new - mu) <= 1e-12:
            break
        mu = new
    return mu


def row_keys(X: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of X from its float32 bytes (collisions need ~2^32 distinct rows)."""
    bits = np.ascontiguousarray(np.asarray(X, dtype=np.float32)).view(np.uint32).astype(np.uint64)
    n_cols = bits.shape[1] if bits.ndim == 2 else 0
    mult = np.random.default_rng(_SEED).integers(1, 2**63, size=max(n_cols, 1), dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        mixed = (bits ^ (bits >> np.uint64(7))) * mult[:n_cols]
        h = np.bitwise_xor.reduce(mixed * np.uint64(0x9E3779B97F4A7C15), axis=1) if n_cols else np.zeros(len(bits),
                                                                                                         np.uint64)
        h = h + mixed.sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h & _MASK


@dataclass(frozen=True)
class MeasuredMemory:
    """Sorted row keys and the measured log latency (ms) of each (`huber_location` of its timings);
    +inf for a kernel the part could not run (`block`), so no search ever picks it."""

    keys: np.ndarray
    log_ms: np.ndarray

    @classmethod
    def from_rows(cls, X: np.ndarray, log_ms: np.ndarray) -> MeasuredMemory:
        """The memory of training rows X labelled log_ms: rows with the same key share one value,
        the Huber mean of their timings on the spread pooled over every kernel timed twice."""
        keys = row_keys(X)
        order = np.argsort(keys, kind="stable")
        k, v = keys[order], np.asarray(log_ms, dtype=np.float64)[order]
        uniq, start = np.unique(k, return_index=True)
        timings = np.split(v, start[1:])  # each kernel's, in row order (the order they were measured)
        scale = pooled_spread(dict(enumerate(timings)))
        return cls(uniq, np.array([huber_location(t, scale) for t in timings]))

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of rows measured, their log ms in row order)."""
        q = row_keys(X)
        if not len(self.keys):
            return np.zeros(len(q), dtype=bool), np.zeros(0)
        at = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        hit = self.keys[at] == q
        return hit, self.log_ms[at[hit]]

    def block(self, X: np.ndarray) -> MeasuredMemory:
        """This memory with the kernels of rows X answered +inf (the part could not run them), except
        a kernel it holds a timing of: one that ran once can run."""
        return self._blocked(np.unique(row_keys(X)))

    def _blocked(self, q: np.ndarray) -> MeasuredMemory:
        """This memory with the keys `q` (distinct) answered +inf, but for those it holds a timing of."""
        q = q[~np.isin(q, self.keys[np.isfinite(self.log_ms)])]
        keep = ~np.isin(self.keys, q)
        keys = np.concatenate([self.keys[keep], q])
        vals = np.concatenate([self.log_ms[keep], np.full(len(q), np.inf)])
        order = np.argsort(keys, kind="stable")
        return MeasuredMemory(keys[order], vals[order])

    @property
    def n_unrunnable(self) -> int:
        return int(np.isinf(self.log_ms).sum())

    def to_json(self) -> dict:
        ran = np.isfinite(self.log_ms)
        return {"keys": [format(int(k), "016x") for k in self.keys[ran]],
                "log_ms": [float(v) for v in self.log_ms[ran]],
                "unrunnable": [format(int(k), "016x") for k in self.keys[~ran]]}

    @classmethod
    def from_json(cls, d) -> MeasuredMemory | None:
        """The memory from meta.json, or None when it is absent or malformed."""
        try:
            keys = np.array([int(str(k), 16) for k in d["keys"]], dtype=np.uint64)
            vals = np.asarray(d["log_ms"], dtype=np.float64)
            listed = d.get("unrunnable") or []
            if not isinstance(listed, list):
                return None
            blocked = np.array([int(str(k), 16) for k in listed], dtype=np.uint64)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            return None
        if keys.shape != vals.shape or not np.all(np.isfinite(vals)) or not np.all(keys[1:] > keys[:-1]):
            return None
        if np.isin(blocked, keys).any() or len(np.unique(blocked)) != len(blocked):
            return None
        return cls(keys, vals)._blocked(blocked)
