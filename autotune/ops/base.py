"""`OpSpec`, the interface every op kind implements, and the registry of op kinds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import GraphError

if TYPE_CHECKING:
    from ..graph import Attrs, Layer
    from ..onnx_export import Exporter

Shape = tuple[int, ...]

#: The features' op-mix buckets (`OpSpec.count_as`).
COUNT_BUCKETS = ("conv", "fc", "matmul", "pool", "eltwise", "other")


class OpSpec:
    """What the tool knows about one op kind. Subclasses override what differs from the defaults
    (no MACs, no weights, no window, fusable, counted as "other", shape kept)."""

    name: ClassVar[str]
    fusable: ClassVar[bool] = True  # may share a kernel with other layers
    windowed: ClassVar[bool] = False  # reads a window of neighbouring pixels (halos, bank strides)
    count_as: ClassVar[str] = "other"  # bucket of the features' op mix (COUNT_BUCKETS)
    vector_ops_per_elem: ClassVar[float] = 0.0  # vector-unit ops per output element
    #: share of the synthetic generator's single-layer graphs that are this op (0: the generator's
    #: own built-in mix only); an op the training data never shows is an op the model cannot cost
    synth_weight: ClassVar[float] = 0.0

    # -- shapes -----------------------------------------------------------------------------
    def infer(self, in_shapes: Sequence[Shape], a: Attrs, name: str) -> tuple[Shape, ...]:
        """Output shape(s) from input shapes and attributes (inputs already checked positive)."""
        return (tuple(in_shapes[0]),)

    # -- costs ------------------------------------------------------------------------------
    def macs(self, lyr: Layer) -> int:
        """Multiply-accumulates on the MAC array."""
        return 0

    def vector_ops(self, lyr: Layer) -> int:
        """Element operations on the vector unit."""
        return int(self.vector_ops_per_elem * lyr.out_elems)

    def weight_elems(self, lyr: Layer) -> int:
        """Parameters (weights and biases; batch norms already folded)."""
        return 0

    # -- how work is laid out ---------------------------------------------------------------
    def window(self, lyr: Layer) -> tuple[int, int, int, int, int]:
        """(kh, kw, sh, sw, halo): the window, the stride and the input rows a row-split output
        needs beyond its own (dilation * (kh - 1))."""
        return (1, 1, 1, 1, 0)

    def groups(self, lyr: Layer) -> int:
        """Convolution groups (1 for other ops)."""
        return 1

    def reduction_channels(self, lyr: Layer) -> int:
        """Channels one output reduces over, before grouping (the MAC array's ci lanes)."""
        return lyr.in_channels

    # -- synthetic data --------------------------------------------------------------------------
    def synth(self, b, x: str, rng: np.random.Generator, channels: int) -> str:
        """Add one layer of this op after NCHW tensor `x` to GraphBuilder `b` (when synth_weight > 0):
        `channels` is the generator's channel draw, `rng` its random stream. Returns the output."""
        return b.add(self.name, [x])

    # -- ONNX --------------------------------------------------------------------------------
    def to_onnx(self, lyr: Layer, ex: Exporter, y: str) -> bool:
        """Emit the standard ONNX nodes of `lyr` (its fused activation aside) writing `y`; False if
        there are none, and the layer travels as an `ai.autotune` node."""
        return False


_REGISTRY: dict[str, OpSpec] = {}
_CODES: dict[str, int] = {}


def register(cls: type[OpSpec]) -> type[OpSpec]:
    """Class decorator: make an op kind known to the IR (its code is its registration order)."""
    if cls.name in _REGISTRY:
        raise ValueError(f"op {cls.name!r} is registered twice")
    if cls.count_as not in COUNT_BUCKETS:
        raise ValueError(f"op {cls.name!r}: count_as must be one of {COUNT_BUCKETS}")
    _REGISTRY[cls.name] = cls()
    _CODES[cls.name] = len(_CODES)
    return cls


def unregister(name: str) -> None:
    """Forget an op kind (for tests that add one for a while); later codes shift down."""
    del _REGISTRY[name]
    _CODES.clear()
    _CODES.update({n: k for k, n in enumerate(_REGISTRY)})


def registry() -> dict[str, OpSpec]:
    """Op name -> spec, in registration order."""
    return _REGISTRY


def code(op: str) -> int:
    """The op's code: its position in the registry (valid within one run; nothing stores it)."""
    return _CODES[op]


def flag_array(attr: str) -> np.ndarray:
    """A per-op-code array of a spec attribute (e.g. "windowed"), for vectorised lookups."""
    return np.array([getattr(sp, attr) for sp in _REGISTRY.values()])


def bucket_array() -> np.ndarray:
    """Per op code: the index of its bucket in COUNT_BUCKETS."""
    return np.array([COUNT_BUCKETS.index(sp.count_as) for sp in _REGISTRY.values()], dtype=np.int64)


def spec(op: str, name: str = "?") -> OpSpec:
    """The spec of op kind `op`, or a GraphError naming the layer."""
    try:
        return _REGISTRY[op]
    except KeyError:
        raise GraphError(f"layer {name!r}: unknown op kind {op!r}") from None


# -- shared shape helpers -----------------------------------------------------------------------
def window_out(size: int, k: int, s: int, p0: int, p1: int, d: int, ceil: bool) -> int:
    """Output length of a sliding window (PyTorch's rule, ceil mode's last window inside the input)."""
    span = size + p0 + p1 - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p0:
        out -= 1
    return out


def broadcast(shapes: Sequence[Shape], name: str) -> Shape:
    """numpy broadcasting of shapes, or a GraphError naming the layer."""
    rank = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (rank - len(s)) + tuple(s) for s in shapes]):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            raise GraphError(f"layer {name!r}: shapes {list(shapes)} do not broadcast")
        out.append(big.pop() if big else 1)
    return tuple(out)


def check_window(op: str, a: Attrs, name: str) -> None:
    """Windows, strides and dilations positive, pads not negative."""
    bad = [f"{k}={v}" for k, v in (("kernel", a.kernel), ("stride", a.stride), ("dilation", a.dilation))
           if min(v) < 1] + ([f"pads={a.pads}"] if min(a.pads) < 0 else [])
    if bad:
        raise GraphError(f"layer {name!r}: {op} needs positive windows, strides and dilations and non-negative "
                         f"pads, got {', '.join(bad)}")


class SlidingWindow(OpSpec):
    """Base of ops that slide a kh x kw window over a 4-D NCHW input (conv, pool): the output's
    spatial size and the window/stride/halo follow from the same attributes."""

    windowed: ClassVar[bool] = True

    def window_shape(self, in_shapes: Sequence[Shape], a: Attrs, name: str, channels: int | None = None) -> Shape:
        """(N, channels, OH, OW) of the window over the first input, which must be 4-D (channels:
        the input's when None)."""
        x = tuple(in_shapes[0])
        if len(x) != 4:
            raise GraphError(f"layer {name!r}: {self.name} needs a 4-D NCHW input, got {x}")
        check_window(self.name, a, name)
        n, c, h, w = x
        oh = window_out(h, a.kernel[0], a.stride[0], a.pads[0], a.pads[2], a.dilation[0], a.ceil_mode)
        ow = window_out(w, a.kernel[1], a.stride[1], a.pads[1], a.pads[3], a.dilation[1], a.ceil_mode)
        return (n, c if channels is None else channels, oh, ow)

    def window(self, lyr: Layer) -> tuple[int, int, int, int, int]:
        a = lyr.attrs
        return (a.kernel[0], a.kernel[1], a.stride[0], a.stride[1], a.dilation[0] * (a.kernel[0] - 1))


def prod(shape: Shape) -> int:
    return math.prod(shape)
