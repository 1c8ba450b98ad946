"""A recurrent layer (ONNX LSTM, GRU, RNN) as one layer: X (seq, batch, input) -> the final hidden state
(dirs, batch, hidden), every step's hidden state Y (seq, dirs, batch, hidden) and, for an LSTM, the
final cell state (dirs, batch, hidden). `mode` is the cell (lstm, gru, rnn), `out_channels` the hidden
size, `groups` the directions (2: bidirectional, each with its own weights over the whole sequence).
The final state is the first output, so the layer's channels are the hidden size."""

from __future__ import annotations

from autotune.errors import GraphError
from autotune.ir.ops.base import OpSpec, register

#: Gate matrices per cell: each step multiplies (input + hidden) by gates * hidden weights.
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
#: Vector ops per hidden unit and step: a bias add and an activation per gate, then the state update
#: (LSTM: c = f*c + i*g, h = o*tanh(c); GRU: r*h and h = (1-z)*n + z*h).
_VECTOR = {"lstm": 8 + 5, "gru": 6 + 4, "rnn": 2}


@register
class Recurrent(OpSpec):
    name = "rnn"
    count_as = "fc"

    def infer(self, in_shapes, a, name):
        x = tuple(in_shapes[0])
        if a.mode not in GATES or a.out_channels < 1 or a.groups not in (1, 2):
            raise GraphError(f"layer {name!r}: rnn needs mode lstm|gru|rnn, a hidden size and 1 or 2 directions, "
                             f"got mode={a.mode!r}, out_channels={a.out_channels}, groups={a.groups}")
        if len(x) != 3:
            raise GraphError(f"layer {name!r}: rnn needs a (seq, batch, input) input, got {x}")
        seq, b, d, h = x[0], x[1], a.groups, a.out_channels
        state = (d, b, h)
        return (state, (seq, d, b, h)) + ((state,) if a.mode == "lstm" else ())

    def macs(self, lyr):
        seq, b, i = lyr.in_shape
        a = lyr.attrs
        return a.groups * seq * b * GATES[a.mode] * a.out_channels * (i + a.out_channels)

    def vector_ops(self, lyr):
        seq, b, _ = lyr.in_shape
        a = lyr.attrs
        return a.groups * seq * b * a.out_channels * _VECTOR[a.mode]

    def weight_elems(self, lyr):
        a, i = lyr.attrs, lyr.in_shape[-1]
        gh = GATES[a.mode] * a.out_channels
        return a.groups * (gh * (i + a.out_channels) + (2 * gh if a.bias else 0))

    def reduction_channels(self, lyr):
        return lyr.in_shape[-1] + lyr.attrs.out_channels
