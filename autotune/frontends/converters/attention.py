"""ONNX's fused transformer ops of opset 23: Attention as the layers an exporter spells it out with
(Q @ K^T, scale and mask, softmax, @ V), so a graph plans the same whichever way it was exported;
RotaryEmbedding as one element-wise pass over its input."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.frontends.converters import converter


def _heads(imp, n, t: str, heads_attr: str, suffix: str) -> tuple[str, tuple[int, ...]]:
    """Tensor `t` as (batch, heads, seq, head size): a 4-D input as it is, a 3-D (batch, seq,
    heads * size) one split by the node's head count and transposed."""
    s = imp.ir_shape[imp.src(t)]
    if len(s) == 4:
        return t, s
    heads = int(n.attrs.get(heads_attr, 0))
    if len(s) != 3 or heads < 1 or s[2] % heads:
        raise GraphError(f"a 3-D input {s} needs {heads_attr} dividing its last axis (got {heads or 'none'})")
    b, seq, hidden = s
    split = (b, seq, heads, hidden // heads)
    imp.layout(n, t, f"{n.outputs[0]}/{suffix}", split, suffix=f"/{suffix}")
    out = (b, heads, seq, hidden // heads)
    imp.layout(n, f"{n.outputs[0]}/{suffix}", f"{n.outputs[0]}/{suffix}4", out, kind="transpose",
               suffix=f"/{suffix}4")
    return f"{n.outputs[0]}/{suffix}4", out


@converter("Attention")
def attention(imp, n):
    q, k, v = (n.inputs + ["", "", ""])[:3]
    mask = n.inputs[3] if len(n.inputs) > 3 else ""
    if any(n.inputs[4:6]):
        raise GraphError("an Attention with a KV cache (past_key/past_value inputs) is a decoding step; "
                         "export the model without its cache")
    if len(n.outputs) > 3 and n.outputs[3] and imp.uses(n.outputs[3]):
        raise GraphError("an Attention whose raw scores (qk_matmul_output) are read is not supported; "
                         "export without them")
    if not (q and k and v) or any(t in imp.static for t in (q, k, v)):
        return imp.opaque(n)
    three_d = len(imp.ir_shape[imp.src(q)]) == 3
    q, qs = _heads(imp, n, q, "q_num_heads", "q")
    k, ks = _heads(imp, n, k, "kv_num_heads", "k")
    v, vs = _heads(imp, n, v, "kv_num_heads", "v")
    for present, t in zip(n.outputs[1:3], (k, v)):  # with no past, the cache it starts is K and V
        if present:
            imp.alias[present] = imp.src(t)
    b, hq, sq, d = qs
    if ks[1] != vs[1] or hq % ks[1] or ks[3] != d or ks[2] != vs[2]:
        raise GraphError(f"query {qs}, key {ks} and value {vs} do not fit one attention")
    y = n.outputs[0]
    if ks[1] != hq:  # grouped-query attention: each key/value head serves hq / kv heads
        imp.layout(n, k, f"{y}/kx", (ks[0], hq, *ks[2:]), kind="expand", suffix="/kx")
        imp.layout(n, v, f"{y}/vx", (vs[0], hq, *vs[2:]), kind="expand", suffix="/vx")
        k, v = f"{y}/kx", f"{y}/vx"
    imp.layout(n, k, f"{y}/kT", (ks[0], hq, d, ks[2]), kind="transpose", suffix="/kT")
    imp.emit(n, "matmul", [q, f"{y}/kT"], [f"{y}/qk"], suffix="/qk")
    scores = f"{y}/scaled"
    imp.emit(n, "eltwise", [f"{y}/qk"], [scores], suffix="/scale", mode="mul", act="")
    if float(n.attrs.get("softcap", 0.0) or 0.0) > 0:
        imp.emit(n, "act", [scores], [f"{y}/softcap"], suffix="/softcap", mode="tanh")
        scores = f"{y}/softcap"
    if mask and mask not in imp.static:
        imp.emit(n, "eltwise", [scores, mask], [f"{y}/masked"], suffix="/mask", mode="add", act="")
        scores = f"{y}/masked"
    elif mask or n.attrs.get("is_causal", 0):
        imp.emit(n, "eltwise", [scores], [f"{y}/masked"], suffix="/mask", mode="add", act="")
        scores = f"{y}/masked"
    imp.emit(n, "softmax", [scores], [f"{y}/probs"], suffix="/softmax")
    if not three_d:
        return imp.emit(n, "matmul", [f"{y}/probs", v], [y], suffix="/pv")
    imp.emit(n, "matmul", [f"{y}/probs", v], [f"{y}/pv"], suffix="/pv")
    dv = vs[3]
    imp.layout(n, f"{y}/pv", f"{y}/pvT", (b, sq, hq, dv), kind="transpose", suffix="/pvT")
    imp.layout(n, f"{y}/pvT", y, (b, sq, hq * dv), suffix="/merge")


@converter("RotaryEmbedding")
def rotary_embedding(imp, n):
    """x * cos + rotate(x) * sin over the input: one element-wise pass with tables read by position."""
    x = n.inputs[0]
    if x in imp.static:
        return imp.opaque(n)
    imp.emit(n, "eltwise", [x], mode="mul", act="")
