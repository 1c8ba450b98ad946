"""LSTM, GRU and RNN: one `rnn` layer each (MACs: seq * batch * gates * hidden * (input + hidden) per
direction), with transposes around it for layout=1 (batch first)."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.frontends.converters import converter
from autotune.frontends.converters.common import text

CELLS = {"LSTM": ("lstm", 4), "GRU": ("gru", 3), "RNN": ("rnn", 1)}


@converter("LSTM", "GRU", "RNN")
def recurrent(imp, n):
    """X, W (dirs, gates * hidden, input), R, B, sequence_lens, initial_h[, initial_c, P] -> Y, Y_h[, Y_c]."""
    mode, gates = CELLS[n.op]
    a = n.attrs
    x = n.inputs[0]
    xs = imp.ir_shape[imp.src(x)]
    w = imp.shape_of(n.inputs[1])
    direction = text(a.get("direction"), "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise GraphError(f"direction must be forward, reverse or bidirectional, got {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    hidden = int(a.get("hidden_size", w[1] // gates if len(w) == 3 else 0))
    if len(xs) != 3 or len(w) != 3 or tuple(w) != (dirs, gates * hidden, xs[-1]) or hidden < 1:
        raise GraphError(f"input {tuple(xs)} and weight {tuple(w)} do not fit {direction} {n.op} with "
                         f"hidden_size={hidden} (W must be (directions, {gates} * hidden, input))")
    batch_first = bool(a.get("layout", 0))
    outs = dict(zip("yhc", n.outputs))
    base = next(t for t in n.outputs if t)
    names = {k: outs.get(k) or f"{base}/Y{'' if k == 'y' else '_' + k}" for k in "yhc"}
    if batch_first:  # (batch, seq, input): the layer runs on (seq, batch, input), its results move back
        x = base + "/X_seq_first"
        imp.layout(n, n.inputs[0], x, (xs[1], xs[0], xs[2]), kind="transpose")
        final = dict(names)
        names = {k: v + "/seq_first" for k, v in names.items()}
    keys = ["h", "y"] + (["c"] if mode == "lstm" else [])
    extra = [t for t in imp.dyn(n) if t != n.inputs[0]]  # initial states, sequence lengths, weights as inputs
    bias = len(n.inputs) > 3 and bool(n.inputs[3])
    p = imp.emit(n, "rnn", [x, *extra], [names[k] for k in keys], mode=mode, out_channels=hidden, groups=dirs,
                 bias=bias)
    for k, shape in zip(keys, p.out_shapes):
        want = imp.shapes.get(names[k])
        if want is not None and want != shape and not batch_first:
            raise GraphError(f"ONNX gives output {names[k]!r} the shape {want}, the rnn rule {shape}")
    if batch_first:  # Y (seq, dirs, batch, hidden) -> (batch, seq, dirs, hidden); states -> (batch, dirs, hidden)
        for k, shape in zip(keys, p.out_shapes):
            if not outs.get(k):
                continue  # an output the node does not name: nothing reads it
            moved = (shape[2], shape[0], shape[1], shape[3]) if k == "y" else (shape[1], shape[0], shape[2])
            imp.layout(n, names[k], final[k], moved, kind="transpose")
