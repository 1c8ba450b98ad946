"""A roofline with fixed costs whose constants are fitted to measurements: the learned model's prior.

The structure is the textbook one for a kernel on k cores (DESIGN.md: features may be datasheet
estimates; the device is a black box):

    T = launch_k + n_layers * layer_k + max(C, D) + overlap * min(C, D)
    C = compute_scale_k * (C_chan + split_k * (C_rows - C_chan))
    D = bandwidth_scale_k * (D_chan + split_k * (D_rows - D_chan))

C_* and D_* are the features' datasheet estimates of compute and DRAM time under the two natural
splits (by channels; feature maps by rows). Every constant that depends on the device (launch and
per-layer costs, the bandwidth k cores really reach, the clock they really run at, which split the
compiler picks, how much DMA hides under compute) is fitted from the labels, one set per core
count, by robust least squares on log latency. Nothing is read from the hardware's `device:`
section. What the roofline cannot express is left to the gradient-boosted trees on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Feature columns the fit reads (all log10(x + 1) of microseconds, except n_layers and cores).
COLUMNS = ("log_compute_rows_us", "log_halo_rows_us", "log_compute_chan_us", "log_dram_rows_us",
           "log_dram_chan_us", "n_layers", "cores")
_PER_CORE = ("split", "bandwidth", "compute", "launch", "layer")


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

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in ("cores",) + _PER_CORE + ("overlap",)}

    @classmethod
    def from_dict(cls, d: dict) -> RooflineFit:
        K = len(d["cores"])
        vals = {name: [float(v) for v in d[name]] for name in ("cores",) + _PER_CORE}
        if any(len(v) != K for v in vals.values()):
            raise ValueError("calibration lists differ in length")
        return cls(**vals, overlap=float(d["overlap"]))

    def predict_us(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Latency (us) of rows given their `parts` (see `columns_to_parts`)."""
        ks = np.log2(np.asarray(self.cores))
        # a core count never measured takes the constants of the nearest one measured
        j = np.abs(np.log2(parts["k"])[:, None] - ks[None, :]).argmin(1)
        p = {name: np.asarray(getattr(self, name))[j] for name in _PER_CORE}
        return _roofline(parts, p, self.overlap)


def _roofline(parts: dict[str, np.ndarray], p: dict[str, np.ndarray], overlap: float) -> np.ndarray:
    C = p["compute"] * (parts["Cc"] + p["split"] * (parts["Cr"] - parts["Cc"]))
    D = p["bandwidth"] * (parts["Dc"] + p["split"] * (parts["Dr"] - parts["Dc"]))
    return p["launch"] + parts["n"] * p["layer"] + np.maximum(C, D) + overlap * np.minimum(C, D)


def columns_to_parts(X: np.ndarray, index: dict[str, int]) -> dict[str, np.ndarray]:
    """The roofline's inputs from feature rows; `index` maps each of COLUMNS to its column in X."""
    def us(name: str) -> np.ndarray:
        return 10.0 ** X[:, index[name]].astype(np.float64) - 1.0

    return {"Cr": us("log_compute_rows_us") + us("log_halo_rows_us"), "Cc": us("log_compute_chan_us"),
            "Dr": us("log_dram_rows_us"), "Dc": us("log_dram_chan_us"),
            "n": X[:, index["n_layers"]].astype(np.float64), "k": X[:, index["cores"]].astype(np.float64)}


def fit_roofline(parts: dict[str, np.ndarray], y_us: np.ndarray, max_rows: int = 30000, seed: int = 0,
                 f_scale: float = 0.05) -> RooflineFit:
    """Robust least squares (soft L1 on log latency, so timing outliers barely pull) of the
    roofline's constants, on at most `max_rows` rows drawn at random."""
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

    def unpack(th: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        sig = 1.0 / (1.0 + np.exp(-th[0:K]))
        p = {"split": sig, "bandwidth": np.exp(th[K:2 * K]), "compute": np.exp(th[2 * K:3 * K]),
             "launch": np.exp(th[3 * K:4 * K]), "layer": np.exp(th[4 * K:5 * K])}
        return p, float(1.0 / (1.0 + np.exp(-th[5 * K])))

    def residual(th: np.ndarray) -> np.ndarray:
        p, ov = unpack(th)
        return np.log(np.maximum(_roofline(parts, {k_: v[j] for k_, v in p.items()}, ov), 1e-9)) - log_y

    # start: even split mix, datasheet bandwidth and clock, 10 us launch, 1 us per layer, half hidden
    th0 = np.r_[np.zeros(K), np.zeros(K), np.zeros(K), np.full(K, np.log(10.0)), np.zeros(K), 0.0]
    res = least_squares(residual, th0, loss="soft_l1", f_scale=f_scale, max_nfev=400)
    p, ov = unpack(res.x)
    return RooflineFit([float(k) for k in ks], *(p[name].tolist() for name in _PER_CORE), overlap=ov)
