"""Attribute helpers the converters share."""

from __future__ import annotations

import math
from collections.abc import Sequence

from autotune.errors import GraphError


def text(v, default: str = "") -> str:
    """A string attribute (ONNX gives bytes)."""
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


def window_pads(auto_pad: str, size: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int],
                pads: Sequence[int]) -> tuple[int, ...]:
    """ONNX pads (begins then ends) of a sliding window over len(k) axes, resolving auto_pad SAME_UPPER /
    SAME_LOWER / VALID; windows, strides and dilations must be positive, pads not negative."""
    nd = len(k)
    for name, vals in (("kernel_shape", k), ("strides", s), ("dilations", d)):
        if len(vals) != nd or any(int(v) < 1 for v in vals):
            raise GraphError(f"{name} must be {nd} positive integers, got {list(vals)}")
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER", "VALID") and pads and (
            len(pads) != 2 * nd or any(int(p) < 0 for p in pads)):
        raise GraphError(f"pads must be {2 * nd} non-negative integers, got {list(pads)}")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for x, kk, ss, dd in zip(size, k, s, d):
            total = max((-(-x // ss) - 1) * ss + (kk - 1) * dd + 1 - x, 0)
            lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            begin.append(lo)
            end.append(total - lo)
        return tuple(begin + end)
    if auto_pad == "VALID" or not pads:
        return (0,) * (2 * nd)
    return tuple(int(p) for p in pads)


def same_shape(onnx_shape: tuple, ir_shape: tuple) -> bool:
    """An ONNX tensor's shape is the IR's, which holds a rank-0 scalar as (1, ..., 1)."""
    return onnx_shape == ir_shape or (onnx_shape == () and math.prod(ir_shape) == 1)
