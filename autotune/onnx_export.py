"""Graph -> ONNX file (opset 17) with shapes only: weights are graph inputs of the right shape, never data.

The file passes `onnx.checker`, opens in any ONNX tool, and `autotune.onnx_import.load_onnx` maps it back
to the same layers: metadata lists the weight inputs, fused activations are separate nodes marked in their
doc_string, and IR layers with no standard ONNX form travel as nodes of the `ai.autotune` domain.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .fileio import atomic_write
from .graph import Graph, Layer, layer_to_dict
from .onnx_import import DOMAIN, FORMAT_KEY, FUSED_MARK, WEIGHTS_KEY

OPSET = 17
_SIMPLE_ACTS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hswish": "HardSwish", "elu": "Elu",
                "selu": "Selu", "softplus": "Softplus", "celu": "Celu", "softsign": "Softsign"}
_PATTERN_ACTS = {"hsigmoid", "leaky_relu", "relu6", "gelu", "silu", "prelu"}
_ELTWISE_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min",
                   "mean": "Mean"}
_ELTWISE_VARIADIC = {"add": "Sum", "max": "Max", "min": "Min", "mean": "Mean"}
_RESIZE_MODES = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}


def _onnx_ceil_pool(lyr: Layer) -> tuple[int, ...]:
    """Output shape ONNX shape inference gives a ceil-mode pool (no 'last window starts inside' rule)."""
    a, (n, c, h, w) = lyr.attrs, lyr.in_shape
    dims = [-(-(size + p0 + p1 - (k - 1) * d - 1) // s) + 1 for size, k, s, p0, p1, d in
            zip((h, w), a.kernel, a.stride, a.pads[:2], a.pads[2:], a.dilation)]
    return (n, c, *dims)


class _Exporter:
    def __init__(self, graph: Graph):
        from onnx import helper

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
        act = lyr.attrs.act
        standard = (len(lyr.outputs) == 1 and lyr.op not in ("opaque",)
                    and (not act or act in _SIMPLE_ACTS or act in _PATTERN_ACTS))
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
            c = shape[1] if len(shape) > 1 else shape[0]
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

    def main(self, lyr: Layer, y: str) -> bool:
        """Emit the standard ONNX nodes of `l` (activation aside) writing `y`; False if there are none."""
        a, x, n = lyr.attrs, list(lyr.inputs), lyr.name
        xs = lyr.in_shape
        if lyr.op == "conv":
            w = self.weight(f"{n}.weight", (a.out_channels, xs[1] // a.groups, *a.kernel))
            ins = [x[0], w] + ([self.weight(f"{n}.bias", (a.out_channels,))] if a.bias else [])
            self.node("Conv", ins, [y], n, kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads),
                      dilations=list(a.dilation), group=a.groups)
            return True
        if lyr.op == "fc":
            cin = lyr.fc_in_features
            if len(xs) in (2, 4):
                src = x[0]
                if len(xs) == 4:
                    src = self.fresh(f"{x[0]}/flat")
                    self.node("Flatten", [x[0]], [src], f"{n}/flatten", axis=1)
                ins = [src, self.weight(f"{n}.weight", (a.out_channels, cin))]
                if a.bias:
                    ins.append(self.weight(f"{n}.bias", (a.out_channels,)))
                self.node("Gemm", ins, [y], n, transB=1)
                return True
            if len(xs) < 2:
                return False
            w = self.weight(f"{n}.weight", (cin, a.out_channels))
            if not a.bias:
                self.node("MatMul", [x[0], w], [y], n)
                return True
            t = self.fresh(f"{y}/matmul")
            self.node("MatMul", [x[0], w], [t], n)
            self.node("Add", [t, self.weight(f"{n}.bias", (a.out_channels,))], [y], f"{n}/bias")
            return True
        if lyr.op == "matmul":
            self.node("MatMul", x, [y], n)
            return True
        if lyr.op == "pool":
            if a.ceil_mode and _onnx_ceil_pool(lyr) != lyr.out_shape:
                return False  # ONNX's formula lacks the last-window rule: a standard node would lie about shape
            common = dict(kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads),
                          ceil_mode=int(a.ceil_mode))
            if a.mode == "max":
                if a.dilation != (1, 1):
                    common["dilations"] = list(a.dilation)
                self.node("MaxPool", x, [y], n, **common)
                return True
            if a.mode == "avg" and a.dilation == (1, 1):
                self.node("AveragePool", x, [y], n, **common)
                return True
            return False
        if lyr.op == "gpool" and a.mode in ("avg", "max"):
            self.node("GlobalAveragePool" if a.mode == "avg" else "GlobalMaxPool", x, [y], n)
            return True
        if lyr.op == "eltwise":
            if len(x) == 2 and a.mode in _ELTWISE_BINARY:
                self.node(_ELTWISE_BINARY[a.mode], x, [y], n)
                return True
            if len(x) > 2 and a.mode in _ELTWISE_VARIADIC:
                self.node(_ELTWISE_VARIADIC[a.mode], x, [y], n)
                return True
            return False
        if lyr.op == "act":
            if a.mode in _SIMPLE_ACTS or a.mode in _PATTERN_ACTS:
                self.act(a.mode, x[0], y, n, lyr.out_shape)
                return True
            return False
        if lyr.op == "concat":
            self.node("Concat", x, [y], n, axis=a.axis)
            return True
        if lyr.op == "softmax":
            self.node("Softmax", x, [y], n, axis=-1)
            return True
        if lyr.op == "norm":
            if a.mode == "layer":
                ws = [self.weight(f"{n}.{k}", (xs[-1],)) for k in ("weight", "bias")]
                self.node("LayerNormalization", [x[0], *ws], [y], n, axis=-1)
                return True
            if a.mode == "batch" and len(xs) >= 2:
                ws = [self.weight(f"{n}.{k}", (xs[1],)) for k in ("weight", "bias", "mean", "var")]
                self.node("BatchNormalization", [x[0], *ws], [y], n)
                return True
            if a.mode == "instance" and len(xs) >= 3:
                ws = [self.weight(f"{n}.{k}", (xs[1],)) for k in ("weight", "bias")]
                self.node("InstanceNormalization", [x[0], *ws], [y], n)
                return True
            if a.mode == "lrn" and len(xs) == 4:
                self.node("LRN", x, [y], n, size=5)
                return True
            return False
        if lyr.op == "resize" and a.mode in _RESIZE_MODES and len(lyr.out_shape) == len(xs):
            out = lyr.out_shape
            scales = np.array([o / i for o, i in zip(out, xs)], np.float32)
            if all(math.floor(np.float32(i) * s) == o for i, s, o in zip(xs, scales, out)):
                ins = [x[0], "", self.const(f"{n}/scales", scales)]  # scales follow a batch override
            else:
                ins = [x[0], "", "", self.const(f"{n}/sizes", np.array(out, np.int64))]
            self.node("Resize", ins, [y], n, mode=_RESIZE_MODES[a.mode])
            return True
        if lyr.op == "reshape":
            # 0 copies the input dim, so a reshape that keeps the batch follows a batch override
            target = [0 if k == 0 and len(xs) and o == xs[0] else o for k, o in enumerate(lyr.out_shape)]
            self.node("Reshape", [x[0], self.const(f"{n}/shape", np.array(target, np.int64))], [y], n)
            return True
        return False

    def model(self):
        from onnx import TensorProto

        h = self.h
        for lyr in self.g.order:
            self.layer(lyr)
        inputs = [h.make_tensor_value_info(t, TensorProto.FLOAT, list(s)) for t, s in self.g.inputs.items()]
        outputs = [h.make_tensor_value_info(t, TensorProto.FLOAT, list(self.g.shape_of(t))) for t in self.g.outputs]
        out_names = set(self.g.outputs)
        vi = [v for v in self.value_info if v.name not in out_names]
        graph = h.make_graph(self.nodes, self.g.name, inputs + self.weights, outputs, initializer=self.consts,
                             value_info=vi)
        m = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET), h.make_opsetid(DOMAIN, 1)],
                         producer_name="autotune")
        m.ir_version = 8  # the IR version that goes with opset 17
        h.set_model_props(m, {FORMAT_KEY: "1", WEIGHTS_KEY: json.dumps([w.name for w in self.weights])})
        return m


def graph_to_onnx(graph: Graph):
    """The ONNX ModelProto of a graph: weights as shaped graph inputs listed in metadata, no data."""
    return _Exporter(graph).model()


def export_onnx(graph: Graph, path: str | Path) -> None:
    """Write `graph` as an ONNX file (opset 17, shapes only), atomically."""
    data = graph_to_onnx(graph).SerializeToString()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
