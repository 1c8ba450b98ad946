"""The layer-sum prior: a kernel's latency as a non-negative sum of textbook terms over its layers.

Per op class (features.LAYER_CLASSES): MAC-array and vector time at the datasheet's peak, split
over the cores and unsplit (a serial share), the layers' bytes at DRAM bandwidth and a fixed cost
per layer; plus the group's boundary bytes and a launch. Each term's constant is fitted to the
labels by non-negative least squares, so the prior knows compute at peak, bytes at bandwidth and a
fixed cost, and learns from measurements how fast each class really runs on the part; it knows
nothing of any device's mechanisms. Shared across layers (as nn-Meter sums kernels), it
generalises from a few group labels to groups of other lengths and mixes; the trees correct the rest.
docs/costmodel.md ("Models that share strength across layers") compares it with the alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from autotune.costmodel.features import LAYER_SUM

#: Reweightings after the first fit on relative error: each weighs a row by 1/sqrt(label * fit),
#: moving the objective toward error in log latency, which is what the trees then correct.
REWEIGHTS = 3
#: Rows the fit reads at most (drawn at random): 51 constants are well determined long before.
MAX_ROWS = 50_000
#: The prior never predicts less than this share of the fastest training label: a kernel made only
#: of terms the labels never priced (all constants zero) still gets a positive latency.
FLOOR_SHARE = 0.5


@dataclass(frozen=True)
class LayerSumFit:
    """Fitted constants, one per LAYER_SUM column (ms per column unit), and the floor (ms). JSON-serialisable."""

    coef: tuple[float, ...]
    floor_ms: float

    def __post_init__(self) -> None:
        c = np.asarray(self.coef, dtype=np.float64)
        if c.shape != (len(LAYER_SUM),) or not np.all(np.isfinite(c)) or np.any(c < 0):
            raise ValueError(f"a layer-sum fit needs {len(LAYER_SUM)} finite, non-negative constants")
        if not (np.isfinite(self.floor_ms) and self.floor_ms > 0):
            raise ValueError("a layer-sum fit needs a positive floor")

    def predict_ms(self, A: np.ndarray) -> np.ndarray:
        """Latency (ms) of rows whose LAYER_SUM columns are `A`."""
        return np.maximum(np.asarray(A, dtype=np.float64) @ np.asarray(self.coef), self.floor_ms)

    def log_ms(self, A: np.ndarray) -> np.ndarray:
        """Natural log of the latency in ms: what a model with this prior starts each row from."""
        return np.log(self.predict_ms(A))

    def to_dict(self) -> dict:
        return {"columns": list(LAYER_SUM), "coef": [float(c) for c in self.coef], "floor_ms": float(self.floor_ms)}

    @classmethod
    def from_dict(cls, d: dict) -> LayerSumFit:
        if list(d["columns"]) != list(LAYER_SUM):
            raise ValueError("the layer-sum fit was made for other columns")
        fit = cls(tuple(float(c) for c in d["coef"]), float(d["floor_ms"]))
        if not all(np.isfinite([*fit.coef, fit.floor_ms])):
            raise ValueError("a layer-sum value is not finite")
        return fit


def fit_layer_sum(A: np.ndarray, y_ms: np.ndarray, seed: int = 0) -> LayerSumFit:
    """Non-negative constants for LAYER_SUM columns `A` that minimise relative error against the
    labels `y_ms`, then REWEIGHTS reweightings toward log error."""
    A, y = np.asarray(A, dtype=np.float64), np.asarray(y_ms, dtype=np.float64)
    if A.shape != (len(y), len(LAYER_SUM)) or not len(y):
        raise ValueError(f"a layer-sum fit needs rows of {len(LAYER_SUM)} columns and one label each")
    if len(y) > MAX_ROWS:
        pick = np.random.default_rng(seed).choice(len(y), MAX_ROWS, replace=False)
        A, y = A[pick], y[pick]
    iters = 10 * A.shape[1] ** 2
    w = 1.0 / y
    coef = nnls(A * w[:, None], y * w, maxiter=iters)[0]
    for _ in range(REWEIGHTS):
        w = 1.0 / np.sqrt(y * np.maximum(A @ coef, 1e-9))
        coef = nnls(A * w[:, None], y * w, maxiter=iters)[0]
    return LayerSumFit(tuple(float(c) for c in coef), FLOOR_SHARE * float(y.min()))
