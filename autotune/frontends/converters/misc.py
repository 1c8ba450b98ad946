"""Softmax, Resize and GridSample."""

from __future__ import annotations

from autotune.frontends.converters import converter
from autotune.frontends.converters.common import text

RESIZE_MODES = {"nearest": "nearest", "linear": "bilinear", "cubic": "bicubic"}


@converter("Softmax", "LogSoftmax")
def softmax(imp, n):
    imp.emit(n, "softmax", [n.inputs[0]])


@converter("Resize", "Upsample")
def resize(imp, n):
    mode = text(n.attrs.get("mode"), "nearest")
    imp.emit(n, "resize", [n.inputs[0]], shape=imp.shape_of(n.outputs[0]), mode=RESIZE_MODES.get(mode, mode))


@converter("GridSample")
def grid_sample(imp, n):
    """The input sampled at positions an activation gives (optical flow's warps, deformable attention):
    a resize to the grid's size with the same taps, that also reads the grid."""
    mode = text(n.attrs.get("mode"), "bilinear")  # opset 16 names its modes as the IR does, opset 20 as Resize
    imp.emit(n, "resize", imp.dyn(n), shape=imp.shape_of(n.outputs[0]), mode=RESIZE_MODES.get(mode, mode))
