"""`OpSpec`, the interface every op kind implements, and the registry of op kinds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from autotune.errors import GraphError

if TYPE_CHECKING:
    from autotune.frontends.onnx_export import Exporter
    from autotune.ir.graph import Attrs, Layer

Shape = tuple[int, ...]

#: The features' op-mix buckets (`OpSpec.count_as`).
COUNT_BUCKETS = ("conv", "fc", "matmul", "pool", "eltwise", "other")
#: Element operations per output element of an activation function fused as a layer's epilogue, by
#: its textbook formula (a compare, a multiply-add, an exponential, a reciprocal or a log counting one
#: each): what a vector unit does for it after the layer's own work. A name not listed counts one.
ELEMENT_OPS = {"relu": 1, "relu6": 2, "clip": 2, "leaky_relu": 2, "prelu": 2, "thresholded_relu": 2,
               "hsigmoid": 3, "hswish": 4, "softsign": 3, "sigmoid": 4, "elu": 4, "softplus": 3,
               "silu": 5, "tanh": 5, "selu": 5, "celu": 5, "gelu": 8, "mish": 9}


def element_ops(act: str) -> float:
    """Element operations per output element of the activation `act` (ELEMENT_OPS; 0 for none)."""
    return float(ELEMENT_OPS.get(act, 1)) if act else 0.0


class OpSpec:
    """What the tool knows about one op kind. Subclasses override what differs from the defaults
    (no MACs, no weights, no window, fusable, counted as "other", shape kept)."""

    name: ClassVar[str]
    fusable: ClassVar[bool] = True  # may share a kernel with other layers
    channels_first: ClassVar[bool] = False  # channels on axis 1 at any rank (N, C, *spatial), not the last axis
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

    def plane(self, lyr: Layer) -> tuple[int, int]:
        """(rows, columns) of the output that a row split divides: H and W of a 4-D map, the tokens
        of a (B, T, D) sequence, 1 row otherwise."""
        s = lyr.out_shape
        return (s[2], s[3]) if len(s) == 4 else ((s[-2], 1) if len(s) >= 3 else (1, 1))

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
    """Base of ops that slide a window over an (N, C, *spatial) input with 1-3 spatial axes (conv,
    pool): the output's size and the window/stride/halo follow from the same attributes. A row split
    divides the first spatial axis (the length of a 1-D map, the depth of a 3-D one)."""

    windowed: ClassVar[bool] = True
    channels_first: ClassVar[bool] = True

    def window_shape(self, in_shapes: Sequence[Shape], a: Attrs, name: str, channels: int | None = None) -> Shape:
        """(N, channels, *out_spatial) of the window over the first input (channels: the input's when None)."""
        x = tuple(in_shapes[0])
        nd = len(a.kernel)
        if len(x) != 2 + nd or not 1 <= nd <= 3:
            raise GraphError(f"layer {name!r}: {self.name} with a {nd}-D window needs a {2 + nd}-D (N, C, *spatial) "
                             f"input, got {x}")
        if len(a.stride) != nd or len(a.dilation) != nd or len(a.pads) != 2 * nd:
            raise GraphError(f"layer {name!r}: {self.name} needs {nd} strides and dilations and {2 * nd} pads, got "
                             f"stride={a.stride}, dilation={a.dilation}, pads={a.pads}")
        check_window(self.name, a, name)
        out = [window_out(size, a.kernel[i], a.stride[i], a.pads[i], a.pads[nd + i], a.dilation[i], a.ceil_mode)
               for i, size in enumerate(x[2:])]
        return (x[0], x[1] if channels is None else channels, *out)

    def window(self, lyr: Layer) -> tuple[int, int, int, int, int]:
        a = lyr.attrs
        k, s = a.kernel, a.stride
        halo = a.dilation[0] * (k[0] - 1)
        if len(k) == 1:
            return (k[0], 1, s[0], 1, halo)
        # 3-D: rows are depth slices, a row's window is the kh x kw plane
        return (k[0], prod(k[1:]), s[0], prod(s[1:]), halo)

    def plane(self, lyr: Layer) -> tuple[int, int]:
        sp = lyr.out_shape[2:]
        return (sp[0], prod(sp[1:])) if sp else (1, 1)


def prod(shape: Shape) -> int:
    return math.prod(shape)
