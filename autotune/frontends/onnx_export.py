"""Graph -> ONNX file (opset 17) with shapes only: weights are graph inputs of the right shape, never data.

The file passes `onnx.checker`, opens in any ONNX tool, and `autotune.frontends.onnx_import.load_onnx` maps it back
to the same layers: metadata lists the weight inputs, fused activations are separate nodes marked in their
doc_string, and IR layers with no standard ONNX form travel as nodes of the `ai.autotune` domain. With
`standard` (what `export-groups` writes) there are none: such layers become the standard nodes that
compute them, or move the same bytes (autotune/frontends/onnx_standard.py), and map back to equivalent layers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from autotune.fileio import atomic_write
from autotune.frontends.onnx_import import BATCH_KEY, DOMAIN, FORMAT_KEY, FUSED_MARK, WEIGHTS_KEY
from autotune.frontends.onnx_standard import write_layer
from autotune.ir.graph import Graph, Layer, layer_to_dict

OPSET = 17
_SIMPLE_ACTS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hswish": "HardSwish", "elu": "Elu",
                "selu": "Selu", "softplus": "Softplus", "celu": "Celu", "softsign": "Softsign"}
_PATTERN_ACTS = {"hsigmoid", "leaky_relu", "relu6", "gelu", "silu", "prelu"}


class Exporter:
    """Writes a graph's layers as ONNX nodes; op specs call its helpers from `to_onnx`."""

    def __init__(self, graph: Graph, weights: bool = False, seed: int = 0, standard: bool = False):
        from onnx import helper

        self.with_data, self.seed, self.standard = weights, seed, standard
        self.h = helper
        self.g = graph
        self.nodes: list = []
        self.consts: list = []
        self.weights: list = []
        self.value_info: list = []
        self.taken = set(graph.inputs) | {t for lyr in graph.layers.values() for t in lyr.outputs}

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], name: str, doc: str = "", **attrs) -> None:
        n = self.h.make_node(op_type, inputs, outputs, name=name, **attrs)
        if doc:
            n.doc_string = doc
        self.nodes.append(n)

    def weight(self, name: str, shape: tuple[int, ...]) -> str:
        from onnx import TensorProto

        name = self.fresh(name)
        self.weights.append(self.h.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(name)
        self.consts.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def info(self, t: str, shape: tuple[int, ...]) -> None:
        from onnx import TensorProto

        self.value_info.append(self.h.make_tensor_value_info(t, TensorProto.FLOAT, list(shape)))

    # -- layers
    def layer(self, lyr: Layer) -> None:
        if self.standard:
            write_layer(self, lyr)
            return
        act = lyr.attrs.act
        standard = len(lyr.outputs) == 1 and (not act or self.can_act(act))
        if standard:
            y = self.fresh(f"{lyr.outputs[0]}/pre_act") if act else lyr.outputs[0]
            if self.main(lyr, y):
                if act:
                    self.info(y, lyr.out_shape)
                    self.act(act, y, lyr.outputs[0], f"{lyr.name}/act", lyr.out_shape, fused=True)
                for t, s in zip(lyr.outputs, lyr.out_shapes):
                    self.info(t, s)
                return
        self.custom(lyr)

    def custom(self, lyr: Layer) -> None:
        attrs = json.dumps(layer_to_dict(lyr)["attrs"], sort_keys=True)
        self.node("Layer", list(lyr.inputs), list(lyr.outputs), lyr.name, domain=DOMAIN, op=lyr.op, attrs=attrs)
        for t, s in zip(lyr.outputs, lyr.out_shapes):
            self.info(t, s)

    def act(self, mode: str, x: str, y: str, name: str, shape: tuple[int, ...], fused: bool = False) -> None:
        doc = FUSED_MARK if fused else ""
        if mode in _SIMPLE_ACTS:
            self.node(_SIMPLE_ACTS[mode], [x], [y], name, doc)
        elif mode == "hsigmoid":
            self.node("HardSigmoid", [x], [y], name, doc, alpha=1 / 6, beta=0.5)
        elif mode == "leaky_relu":
            self.node("LeakyRelu", [x], [y], name, doc, alpha=0.01)
        elif mode == "relu6":
            lo = self.const(f"{name}/min", np.array(0, np.float32))
            hi = self.const(f"{name}/max", np.array(6, np.float32))
            self.node("Clip", [x, lo, hi], [y], name, doc)
        elif mode == "prelu":
            c = shape[1] if len(shape) > 1 else (shape[0] if shape else 1)
            slope = self.weight(f"{name}.slope", (c, 1, 1) if len(shape) == 4 else (c,))
            self.node("PRelu", [x, slope], [y], name, doc)
        elif mode == "silu":
            s = self.fresh(f"{name}/sigmoid")
            self.node("Sigmoid", [x], [s], f"{name}/sigmoid")
            self.node("Mul", [x, s], [y], name, doc)
        elif mode == "gelu":  # x * 0.5 * (1 + erf(x / sqrt 2)), as PyTorch exports nn.GELU at opset < 20
            t = [self.fresh(f"{name}/{k}") for k in ("div", "erf", "add", "mul")]
            self.node("Div", [x, self.const(f"{name}/sqrt2", np.array(math.sqrt(2), np.float32))], [t[0]],
                      f"{name}/div")
            self.node("Erf", [t[0]], [t[1]], f"{name}/erf")
            self.node("Add", [t[1], self.const(f"{name}/one", np.array(1, np.float32))], [t[2]], f"{name}/add")
            self.node("Mul", [x, t[2]], [t[3]], f"{name}/mul")
            self.node("Mul", [t[3], self.const(f"{name}/half", np.array(0.5, np.float32))], [y], name, doc)
        else:
            raise AssertionError(mode)

    def can_act(self, mode: str) -> bool:
        """Whether activation `mode` has a standard ONNX form (`act` can write it)."""
        return mode in _SIMPLE_ACTS or mode in _PATTERN_ACTS

    def main(self, lyr: Layer, y: str) -> bool:
        """Emit the standard ONNX nodes of `lyr` (activation aside) writing `y`, as its op spec
        says (autotune/ir/ops/); False if there are none."""
        return lyr.spec.to_onnx(lyr, self, y)

    def model(self):
        from onnx import TensorProto

        h = self.h
        for lyr in self.g.order:
            self.layer(lyr)
        inputs = [h.make_tensor_value_info(t, TensorProto.FLOAT, list(s)) for t, s in self.g.inputs.items()]
        outputs = [h.make_tensor_value_info(t, TensorProto.FLOAT, list(self.g.shape_of(t))) for t in self.g.outputs]
        out_names = set(self.g.outputs)
        vi = [v for v in self.value_info if v.name not in out_names]
        inits, weights = list(self.consts), list(self.weights)
        if self.with_data:  # weights as initializers with random values, so a runtime can execute the file
            from onnx import numpy_helper

            rng = np.random.default_rng(self.seed)
            for w in weights:
                shape = [d.dim_value for d in w.type.tensor_type.shape.dim]
                inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.02).astype(np.float32), w.name))
            weights = []
        graph = h.make_graph(self.nodes, self.g.name, inputs + weights, outputs, initializer=inits, value_info=vi)
        opsets = [h.make_opsetid("", OPSET)] + ([] if self.standard else [h.make_opsetid(DOMAIN, 1)])
        m = h.make_model(graph, opset_imports=opsets, producer_name="autotune")
        m.ir_version = 8  # the IR version that goes with opset 17
        h.set_model_props(m, {FORMAT_KEY: "1", BATCH_KEY: str(self.g.batch),
                              WEIGHTS_KEY: json.dumps([w.name for w in weights])})
        return m


def graph_to_onnx(graph: Graph, weights: bool = False, seed: int = 0, standard: bool = False):
    """The ONNX ModelProto of a graph: weights as shaped graph inputs listed in metadata, no data; with
    `weights`, as initializers holding random values (seeded), so the file runs as it is; with
    `standard`, standard ONNX ops only (no `ai.autotune` node), so any runtime loads it."""
    return Exporter(graph, weights, seed, standard).model()


def export_onnx(graph: Graph, path: str | Path, weights: bool = False, seed: int = 0) -> None:
    """Write `graph` as an ONNX file (opset 17, shapes only unless `weights`), atomically."""
    data = graph_to_onnx(graph, weights, seed).SerializeToString()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
