"""Synthetic layer groups spanning where real networks live, each a small standalone validated Graph.

The generator is a mixture of three sources, because each covers what the others miss:

- ``layer`` (20%): one operator. Gives the most direct control over the two characteristics
  DLFusion found decisive (op count, channel size), so the (op count, channels) plane is filled
  evenly out to its corners, with network-style, array-aligned and unaligned channels, every
  kernel and stride.
- ``block`` (30%): one whole building block (conv chain, conv-pool, bottleneck, inverted residual,
  inception, squeeze-excite, fc chain, attention): the canonical fusion patterns, residuals closed.
- ``slice`` (50%): a random contiguous run of the topological order of a random *stack* of blocks.
  This is what the planner actually asks about: nearly all of a network's candidate groups start
  and end mid-block (the tail of one bottleneck plus the head of the next), so residual inputs
  arrive as boundary tensors and several tensors leave the group. Whole blocks alone would leave
  the model extrapolating on exactly the groups it is queried on most.

Numeric knobs (op count, channel width, group length, source, structure, alignment, kernel/stride,
batch) come from one scrambled Sobol sequence (scipy.stats.qmc), seeded; the remaining discrete
choices come from a per-index RNG, so graph `index` is the same however the range is split.
The spatial size is solved from the target op count (build at a reference size, scale by
sqrt(target/actual)); where that hits 1 or 448 the channels give way instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import qmc

from autotune.frontends import zoo_transformers as zt
from autotune.hardware.config import HardwareConfig, is_host_cpu
from autotune.hardware.host import group_byte_cap
from autotune.ir import ops
from autotune.ir.graph import Graph, GraphBuilder

#: Bump when the generated groups change for a given (n, hw, seed): datasets record it.
#: v4: transformer blocks as the zoo and the importer lay them out (heads by reshape + transpose,
#: grouped-query attention, rotary positions, SwiGLU, RMSNorm, pre/post norm), 1-D conv stacks,
#: U-Net decoder stages (transposed conv + skip concat), layout and deconv single layers, and
#: batches above 1 for a third of the groups (v3: a quarter). v5: token sequences up to 4,096 (v4
#: stopped at 448, short of Whisper's 1,500 frames and LLM contexts).
GENERATOR_VERSION = 5

ALIGNS = ("pow2", "array", "free")
#: v3: network-style widths (powers of two and 3 x them), which real networks' layers mostly have
#: and where power-of-two strides alias memory banks; v2 had only array multiples and free widths.
ALIGN_WEIGHTS = (0.4, 0.25, 0.35)
SOURCES = ("layer", "block", "slice")
SOURCE_WEIGHTS = (0.1, 0.3, 0.6)
CNN_BLOCKS = ("conv_chain", "conv_pool", "bottleneck", "inverted_residual", "inception", "squeeze_excite",
              "up_block")
TOKEN_BLOCKS = ("attention", "fc_chain", "conv1d")
#: Structure kinds recorded per group: the blocks above plus single layers.
STRUCTURES = CNN_BLOCKS + TOKEN_BLOCKS + ("layer",)

OPS_RANGE = (1e4, 1e11)  # target op count (MACs, or vector ops for MAC-free groups), log-uniform
#: ... capped at what the whole chip does at peak in this long (a CPU's groups stay measurable).
HORIZON_S = 0.02


def ops_range(hw: HardwareConfig) -> tuple[float, float]:
    """The op counts groups are drawn from: OPS_RANGE, its top capped at HORIZON_S of peak MACs
    (mlu100 and npu16 reach 1e11 within it, edge4 stops near 3e10, a 2-core CPU near 3e9)."""
    return OPS_RANGE[0], max(OPS_RANGE[0] * 10, min(OPS_RANGE[1], hw.datasheet.peak_macs_per_s * HORIZON_S))
MAX_CH = 4096
MAX_HW = 448
#: Longest token sequence (attention, MLP and matmul inputs): LLM contexts and Whisper's 1,500 frames.
MAX_TOKENS = 4096
_REF_HW = 32  # reference spatial size for solving the spatial size from the op count
_DIMS = 8  # Sobol dimensions: ops, width, length, source, structure, alignment, kernel/stride, batch


@dataclass(frozen=True)
class Knobs:
    """One sample's knobs: the Sobol part decoded, plus hardware limits."""

    ops: float  # target op count of the group
    width: float  # channel width before alignment (1..4096)
    length: int  # group length for slices (1..max_fusion)
    source: str
    structure: str
    align: str  # channel counts: "pow2" (network-style), "array" (multiples of the MAC array) or "free"
    kernel: int
    stride: int
    batch: int


def _pick(u: float, items: tuple, weights: tuple | None = None):
    w = np.asarray(weights if weights is not None else [1.0] * len(items), dtype=float)
    return items[min(int(np.searchsorted(np.cumsum(w / w.sum()), u, side="right")), len(items) - 1)]


def decode(u: np.ndarray, hw: HardwareConfig) -> Knobs:
    """Map one point of the unit cube to knobs: log-uniform op count and width (4..4096; narrower
    channels still come from squeezes and inputs); slice lengths lean long (u^0.6) because single
    layers and whole blocks already supply the short groups. Weights lean to slices and to wider
    channels, towards what real networks' candidate groups look like (see the coverage plot)."""
    lo, hi = np.log10(ops_range(hw))
    source = _pick(u[3], SOURCES, SOURCE_WEIGHTS)
    structure = "layer" if source == "layer" else _pick(u[4], CNN_BLOCKS + TOKEN_BLOCKS)
    ks = _pick(u[6], ((1, 1), (3, 1), (3, 2), (5, 1), (5, 2), (7, 1), (7, 2), (1, 2)),
               (0.25, 0.3, 0.12, 0.08, 0.07, 0.07, 0.06, 0.05))
    batch = _pick(u[7], (1, 2, 4, 8, 16), (0.66, 0.07, 0.09, 0.1, 0.08))
    return Knobs(ops=10 ** (lo + (hi - lo) * u[0]), width=2 ** (2 + 10 * u[1]),
                 length=1 + min(int(u[2] ** 0.6 * hw.max_fusion), hw.max_fusion - 1), source=source,
                 structure=structure, align=_pick(u[5], ALIGNS, ALIGN_WEIGHTS), kernel=ks[0], stride=ks[1], batch=batch)


def _align(c: float, a: int, align: str, rng: np.random.Generator) -> int:
    """A channel count near c: as networks choose them (a power of two, or 3 x one, like 192 or
    768), a multiple of the MAC-array width `a`, or deliberately neither."""
    c = int(min(max(round(c), 1), MAX_CH))
    if align == "pow2":
        nice = [m * 2**e for e in range(13) for m in (1, 3) if m * 2**e <= MAX_CH]
        return min(nice, key=lambda v: (abs(math.log(v / c)), v))
    if align == "array":
        return int(min(max(a, round(c / a) * a), MAX_CH))
    if a > 1 and c > a and c % a == 0:  # every count is a multiple of a width of 1
        c += int(rng.integers(1, a)) * (1 if c + a <= MAX_CH else -1)
    return c


def _divisor(c: int, choices: tuple[int, ...], rng: np.random.Generator) -> int:
    u = rng.random()  # drawn whatever `ok` is, so later draws do not depend on the sizes
    ok = [g for g in choices if c % g == 0]
    return ok[int(u * len(ok))] if ok else 1


# -- blocks: (builder, input tensor, width, knobs, rng) -> output tensor --------------------------
class _Ctx:
    """Per-graph build state: builder, knobs, rng, MAC-array widths and a width scale for solving."""

    def __init__(self, b: GraphBuilder, kn: Knobs, rng: np.random.Generator, hw: HardwareConfig, cscale: float):
        self.b, self.kn, self.rng, self.hw, self.cscale = b, kn, rng, hw, cscale
        self.layer_kind = "conv"  # single-layer graphs: the op; tokens/flat: the input's layout
        self.tokens = self.flat = False
        self.blocks = 0  # blocks built so far (unique layer-name prefixes)

    def ch(self, c: float) -> int:
        return _align(c * self.cscale, self.hw.mac_array.co, self.kn.align, self.rng)

    def hgt(self, x: str) -> int:
        return self.b.shape(x)[2]


def _stride_ok(ctx: _Ctx, x: str, s: int) -> int:
    return s if ctx.hgt(x) >= 2 else 1


def conv_chain(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """1-3 convs: plain, ResNeXt-style grouped, or MobileNet-v1 depthwise + pointwise pairs."""
    b, rng, k = ctx.b, ctx.rng, ctx.kn.kernel
    style = rng.choice(["plain", "grouped", "dw"], p=[0.6, 0.15, 0.25])
    for n in range(int(rng.integers(1, 4))):
        s_n = _stride_ok(ctx, x, s) if n == 0 else 1
        if style == "dw":
            x = b.dwconv(x, max(k, 3), s_n, act=str(rng.choice(["relu", "relu6"])))
            x = b.conv(x, ctx.ch(c), 1)
        else:
            co = ctx.ch(c)
            g = _divisor(math.gcd(b.shape(x)[1], co), (2, 4, 8, 16, 32), rng) if style == "grouped" else 1
            x = b.conv(x, co, k, s_n, groups=g)
    return x


def conv_pool(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """conv (+conv) then a max/avg pool (AlexNet, VGG stages, stems)."""
    b, rng = ctx.b, ctx.rng
    for _ in range(int(rng.integers(1, 3))):
        x = b.conv(x, ctx.ch(c), ctx.kn.kernel, _stride_ok(ctx, x, s) if ctx.kn.kernel >= 5 else 1)
        s = 1
    mode, r = str(rng.choice(["max", "avg"], p=[0.8, 0.2])), rng.random()
    if ctx.hgt(x) >= 2 and r < 0.5:
        return b.pool(x, 2, 2, mode=mode)
    return b.pool(x, 3, 2, pad=1, mode=mode)


def bottleneck(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """ResNet v1.5 bottleneck: 1x1 - 3x3 (stride) - 1x1, projection shortcut if needed, add."""
    b = ctx.b
    s = _stride_ok(ctx, x, s)
    w = ctx.ch(c / 4) if c >= 4 else ctx.ch(c)
    cout = ctx.ch(c)
    y = b.conv(x, w, 1)
    y = b.conv(y, w, 3, s)
    y = b.conv(y, cout, 1, act="")
    idn = b.conv(x, cout, 1, s, act="") if (s != 1 or b.shape(x)[1] != cout) else x
    return b.eltwise([y, idn], act="relu")


def inverted_residual(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """MobileNet-v2 block: expand 1x1 - depthwise kxk (stride) - project 1x1, add when shapes agree."""
    b, rng = ctx.b, ctx.rng
    s = _stride_ok(ctx, x, s)
    cin = b.shape(x)[1]
    t = int(rng.choice([1, 3, 4, 6]))
    y = b.conv(x, min(cin * t, MAX_CH), 1, act="relu6") if t != 1 else x
    y = b.dwconv(y, 5 if ctx.kn.kernel >= 5 else 3, s, act="relu6")
    keep = rng.random() < 0.6
    cout = cin if (s == 1 and keep) else ctx.ch(c)
    y = b.conv(y, cout, 1, act="")
    return b.eltwise([x, y]) if (s == 1 and cout == cin) else y


def inception(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """GoogLeNet-style branches (1x1; 1x1-3x3; 1x1-5x5 or 3x3-3x3; pool-1x1) and a concat."""
    b, rng = ctx.b, ctx.rng
    q = min(max(c / 4, 1), MAX_CH / 4 / max(ctx.cscale, 1e-9))
    br1 = b.conv(x, ctx.ch(q), 1)
    br2 = b.conv(b.conv(x, ctx.ch(q / 2), 1), ctx.ch(q), 3)
    r = b.conv(x, ctx.ch(q / 4), 1)
    br3 = b.conv(b.conv(r, ctx.ch(q / 2), 3), ctx.ch(q / 2), 3) if rng.random() < 0.5 else b.conv(r, ctx.ch(q / 2), 5)
    br4 = b.conv(b.pool(x, 3, 1, pad=1), ctx.ch(q / 2), 1)
    return b.concat([br1, br2, br3, br4])


def squeeze_excite(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """conv, then SE (global pool - 1x1 reduce - 1x1 expand sigmoid - channel scale), maybe residual add."""
    b, rng = ctx.b, ctx.rng
    y = b.conv(x, ctx.ch(c), ctx.kn.kernel, 1)
    cy = b.shape(y)[1]
    z = b.gpool(y)
    z = b.conv(z, max(1, cy // int(rng.choice([4, 8, 16]))), 1)
    z = b.conv(z, cy, 1, act="sigmoid")
    y = b.eltwise([y, z], mode="mul")
    res = rng.random() < 0.5
    return b.eltwise([x, y]) if res and b.shape(x) == b.shape(y) else y


def _norm(ctx: _Ctx, x: str, mode: str) -> str:
    return ctx.b.add("norm", [x], mode=mode)


def attention(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """A transformer attention sub-layer on (B, T, D) as the zoo builds it (zoo_transformers.attention):
    multi-head or grouped-query, optional rotary positions and mask, pre- or post-norm (layer or RMS)."""
    b, rng = ctx.b, ctx.rng
    D = b.shape(x)[-1]
    h = _divisor(D, (16, 12, 8, 4, 2), rng)
    kvh = _divisor(h, (4, 2, 1), rng) if rng.random() < 0.3 else h
    rope, masked, bias = bool(rng.random() < 0.3), bool(rng.random() < 0.5), bool(rng.random() < 0.7)
    pre, mode = bool(rng.random() < 0.6), str(rng.choice(["layer", "rms"], p=[0.7, 0.3]))
    ctx.blocks += 1
    y = _norm(ctx, x, mode) if pre else x
    o = zt.attention(b, y, f"att{ctx.blocks}", h, kvh, rope=rope, bias=bias, masked=masked)
    x = b.eltwise([x, o])
    return x if pre else _norm(ctx, x, mode)


def fc_chain(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """Dense layers: a transformer MLP on tokens (GELU D - rD - D, or SwiGLU; pre/post norm; residual),
    else an fc stack."""
    b, rng = ctx.b, ctx.rng
    if len(b.shape(x)) == 3:
        D = b.shape(x)[-1]
        hidden = min(int(D * float(rng.choice([2, 8 / 3, 4]))), MAX_CH)
        pre, mode = bool(rng.random() < 0.6), str(rng.choice(["layer", "rms"], p=[0.7, 0.3]))
        ctx.blocks += 1
        y = _norm(ctx, x, mode) if pre else x
        y = zt.swiglu(b, y, f"mlp{ctx.blocks}", hidden) if rng.random() < 0.35 else \
            zt.mlp(b, y, f"mlp{ctx.blocks}", hidden)
        x = b.eltwise([x, y])
        return x if pre else _norm(ctx, x, mode)
    for _ in range(int(rng.integers(1, 4))):
        x = b.fc(x, ctx.ch(c), act=str(rng.choice(["relu", ""], p=[0.7, 0.3])))
    return x


def conv1d(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """1-D convolutions over (B, C, L) (audio front ends, temporal convs): 1-3 of them with GELU/ReLU,
    the first may stride; sometimes turned to (B, L, C) tokens at the end."""
    b, rng, k = ctx.b, ctx.rng, max(ctx.kn.kernel, 3)
    for n in range(int(rng.integers(1, 4))):
        x = b.conv(x, ctx.ch(c), k, s if n == 0 and b.shape(x)[2] >= 2 else 1,
                   act=str(rng.choice(["gelu", "relu", ""], p=[0.5, 0.3, 0.2])))
    if rng.random() < 0.4:
        B, C, L = b.shape(x)
        x = b.add("layout", [x], shape=(B, L, C), mode="transpose")
    return x


def up_block(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """A U-Net decoder stage: 2x2 stride-2 transposed conv, concat with an encoder skip, two 3x3 convs."""
    b, rng = ctx.b, ctx.rng
    B, C, H, W = b.shape(x)
    co = ctx.ch(c / 2) if c >= 2 else ctx.ch(c)
    act = str(rng.choice(["", "relu"]))
    # at the size limit the stage keeps its size (a 3x3 stride-1 transposed conv)
    up = b.deconv(x, co, 2, 2, act=act) if 2 * H <= MAX_HW else b.deconv(x, co, 3, 1, pad=1, act=act)
    ctx.blocks += 1
    skip = b.input(f"skip{ctx.blocks}", b.shape(up))
    y = b.concat([up, skip])
    y = b.conv(y, co, 3)
    return b.conv(y, co, 3)


def single_layer(ctx: _Ctx, x: str, c: float, s: int) -> str:
    """One operator of the kind chosen when the input was made (see `_input`)."""
    b, rng, kn = ctx.b, ctx.rng, ctx.kn
    kind = ctx.layer_kind
    if kind == "conv":
        s = _stride_ok(ctx, x, s)
        return b.conv(x, ctx.ch(c), kn.kernel, s, act=str(rng.choice(["relu", "", "relu6"])))
    if kind == "dwconv":
        return b.dwconv(x, max(kn.kernel, 3), _stride_ok(ctx, x, s))
    if kind == "gconv":
        co = ctx.ch(c)
        g = _divisor(math.gcd(b.shape(x)[1], co), (2, 4, 8, 32), rng)
        return b.conv(x, co, kn.kernel, _stride_ok(ctx, x, s), groups=g)
    if kind == "pool":
        return b.pool(x, 3, 2, pad=1, mode=str(rng.choice(["max", "avg"])))
    if kind == "gpool":
        return b.gpool(x)
    if kind == "eltwise":
        return b.eltwise([x, b.input("x2", b.shape(x))], act=str(rng.choice(["", "relu"])))
    if kind == "fc":
        return b.fc(x, ctx.ch(c), act=str(rng.choice(["", "relu"])))
    if kind != "matmul":  # an op registered with a synth_weight (autotune/ops)
        return ops.spec(kind).synth(b, x, rng, ctx.ch(c))
    # batched matmul of two activations (B*heads, M, K) @ (B*heads, K, N)
    B, M, K = b.shape(x)
    return b.add("matmul", [x, b.input("x2", (B, K, int(min(max(1, c * ctx.cscale), MAX_CH))))])


BLOCKS: dict[str, Callable[[_Ctx, str, float, int], str]] = {
    "conv_chain": conv_chain, "conv_pool": conv_pool, "bottleneck": bottleneck,
    "inverted_residual": inverted_residual, "inception": inception, "squeeze_excite": squeeze_excite,
    "attention": attention, "fc_chain": fc_chain, "conv1d": conv1d, "up_block": up_block, "layer": single_layer,
}
_LAYER_KINDS = ("conv", "dwconv", "gconv", "pool", "gpool", "eltwise", "fc", "matmul")
_LAYER_WEIGHTS = (0.35, 0.12, 0.08, 0.08, 0.04, 0.1, 0.13, 0.1)


def layer_mix() -> tuple[tuple[str, ...], np.ndarray]:
    """Single-layer kinds and their probabilities: the built-in mix plus every registered op with a
    `synth_weight` (unchanged, and so the same samples, when no op has one)."""
    extra = [(n, sp.synth_weight) for n, sp in ops.registry().items() if sp.synth_weight > 0]
    kinds = _LAYER_KINDS + tuple(n for n, _ in extra)
    weights = _LAYER_WEIGHTS + tuple(w for _, w in extra)
    return kinds, np.asarray(weights) / sum(weights)


def _input(ctx: _Ctx, size: int) -> str:
    """The graph input: NCHW for conv blocks, (B, T, D) tokens for attention/MLP/matmul, (N, C) for fc."""
    kn, b, rng = ctx.kn, ctx.b, ctx.rng
    cin = ctx.ch(kn.width * float(rng.choice([0.5, 1.0, 1.0, 2.0])))
    kind = kn.structure if kn.structure != "layer" else ctx.layer_kind
    if kind in ("attention", "matmul") or (kind == "fc_chain" and ctx.tokens):
        return b.input("x", (kn.batch, size, cin))
    if kind in ("fc",) or (kind == "fc_chain" and ctx.flat):
        return b.input("x", (kn.batch * size, cin))
    if kind == "fc_chain":  # a classifier on a small feature map, flattened (AlexNet/VGG fc6)
        return b.input("x", (kn.batch, cin, min(size, 7), min(size, 7)))
    if kind == "dwconv":
        return b.input("x", (kn.batch, ctx.ch(kn.width), size, size))
    if kind == "conv1d":  # a sequence of frames: length grows with the size knob (ops ~ length)
        return b.input("x", (kn.batch, cin, min(size * 16, MAX_CH)))
    return b.input("x", (kn.batch, cin, size, size))


def _stack(kn: Knobs, rng: np.random.Generator, hw: HardwareConfig, size: int, cscale: float, n_blocks: int,
           name: str, layer_kind: str, tokens: bool, flat: bool) -> Graph:
    b = GraphBuilder(name, kn.batch)
    ctx = _Ctx(b, kn, rng, hw, cscale)
    ctx.layer_kind, ctx.tokens, ctx.flat = layer_kind, tokens, flat
    x = _input(ctx, size)
    c = kn.width
    widen = int(rng.integers(0, n_blocks)) if n_blocks > 1 and rng.random() < 0.5 else -1
    for n in range(n_blocks):
        s = kn.stride if (n == 0 or n == widen) else 1
        if n == widen:
            c = min(c * 2, MAX_CH)
        x = BLOCKS[kn.structure](ctx, x, c, s)
    return b.build([x])


def _ops(g: Graph, i: int, j: int) -> float:
    ls = g.order[i:j]
    m = sum(lyr.macs for lyr in ls)
    return float(m if m > 0 else sum(lyr.vector_ops for lyr in ls))


def extract(g: Graph, i: int, j: int, name: str | None = None) -> Graph:
    """The group g.order[i:j] as a standalone graph (`Group.as_graph`)."""
    return g.group(i, j).as_graph(name)


def _sample(index: int, u: np.ndarray, hw: HardwareConfig, seed: int) -> Graph:
    """Graph `index` of the sequence: build at a reference size, then solve the size (and, where the
    size is pinned at 1 or 448, the width) for the target op count of the chosen slice."""
    kn = decode(u, hw)
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION])
    kinds, p = layer_mix()
    layer_kind = str(rng.choice(kinds, p=p))
    tokens, flat = bool(rng.random() < 0.6), bool(rng.random() < 0.5)
    u_off, extra = rng.random(), int(rng.integers(0, 6))
    name = f"{seed}-{index}:{kn.source}:{kn.structure}"
    state = rng.bit_generator.state

    def build(size: int, cscale: float, n_blocks: int) -> tuple[Graph, int, int]:
        rng.bit_generator.state = state  # the same discrete choices at every trial size
        g = _stack(kn, rng, hw, size, cscale, n_blocks, name, layer_kind, tokens, flat)
        n = len(g)
        L = min(kn.length if kn.source == "slice" else n, n, hw.max_fusion)
        i = int(u_off * (n - L + 1))
        return g, i, i + L

    size, cscale, n_blocks = _REF_HW, 1.0, (2 if kn.source == "slice" else 1)
    g, i, j = build(size, cscale, n_blocks)
    while kn.source == "slice" and len(g) < kn.length + extra and n_blocks < 32:
        n_blocks += 1
        g, i, j = build(size, cscale, n_blocks)
    spatial = len(next(iter(g.inputs.values()))) == 4
    for it in range(6):  # ops ~ size^2 (feature maps) or ~ size (rows, tokens), ~ width^2
        ops = _ops(g, i, j)
        ratio = kn.ops / ops if ops > 0 else 1.0
        if 0.7 < ratio < 1.4:
            break
        top = MAX_HW if spatial else MAX_TOKENS
        new = int(min(max(round(size * (math.sqrt(ratio) if spatial else ratio)), 1), top))
        if it < 3 and new != size:
            size = new
        else:
            cscale = float(min(max(cscale * math.sqrt(ratio), 1 / MAX_CH), MAX_CH))
        g, i, j = build(size, cscale, n_blocks)
    return g if (i, j) == (0, len(g)) else extract(g, i, j)


def _points(n: int, seed: int) -> np.ndarray:
    m = max(0, math.ceil(math.log2(max(n, 1))))
    return qmc.Sobol(_DIMS, scramble=True, seed=seed).random_base2(m)[:n]


def generate_range(n: int, hw: HardwareConfig, seed: int, start: int, stop: int) -> list[Graph]:
    """Graphs start..stop-1 of `generate(n, hw, seed)`: lets shards be built anywhere, independently."""
    u = _points(n, seed)
    return [_sample(k, u[k], hw, seed) for k in range(start, min(stop, n))]


def generate(n: int, hw: HardwareConfig, seed: int) -> list[Graph]:
    """`n` synthetic single-group graphs (deterministic in `seed`); the group is graph.group(0, len(graph))."""
    return generate_range(n, hw, seed, 0, n)


def group_bytes(g: Graph, dtype_bytes: int) -> int:
    """Bytes a group holds when run whole: its inputs, every tensor its layers produce, and its weights."""
    acts = sum(math.prod(s) for s in g.inputs.values()) + sum(lyr.out_elems for lyr in g.order)
    return acts * dtype_bytes + sum(lyr.weight_bytes(dtype_bytes) for lyr in g.order)


def byte_cap(hw: HardwareConfig) -> int | None:
    """The most bytes a group generated for `hw` may hold: for this host's CPU (where the groups are
    run) a share of its available memory (autotune.hardware.host.group_byte_cap); no cap for other parts, whose
    datasheet gives no memory size."""

    return group_byte_cap() if is_host_cpu(hw) else None


def generate_within(n: int, hw: HardwareConfig, seed: int, cap: int | None
                    ) -> tuple[list[tuple[int, Graph]], list[tuple[int, int]]]:
    """([(index, graph)] of `generate(n, hw, seed)` holding at most `cap` bytes, [(index, bytes)] of those
    skipped for holding more); every graph is kept when `cap` is None."""
    kept: list[tuple[int, Graph]] = []
    skipped: list[tuple[int, int]] = []
    for k, g in enumerate(generate(n, hw, seed)):
        size = group_bytes(g, hw.dtype_bytes) if cap is not None else 0
        if cap is not None and size > cap:
            skipped.append((k, size))
        else:
            kept.append((k, g))
    return kept, skipped


def describe(g: Graph) -> tuple[str, str]:
    """(source, structure) of a generated graph, read from its name."""
    _, source, structure = g.name.split(":")
    return source, structure
