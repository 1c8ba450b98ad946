"""ONNX file -> Graph, reading shapes only: weight bytes are never loaded and external data is never followed.

The file is memory-mapped and its protobuf wire format walked by hand to build a small copy without the
large tensor payloads, so a 500 MB model imports in the time a small one does. ONNX shape inference then
gives every tensor's shape, and each node (or known multi-node pattern such as the Erf form of GELU) maps
to one IR layer, with activations, batch norms and biases folded into their producer where possible.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import AutotuneError, GraphError
from .graph import Attrs, Graph, Layer, Shape, make_layer

#: Metadata keys and node marks written by `autotune.onnx_export` so its files map back 1:1.
FORMAT_KEY = "autotune.format"
WEIGHTS_KEY = "autotune.weights"
FUSED_MARK = "autotune:fused"  # doc_string of the node that ends a fused epilogue activation
DOMAIN = "ai.autotune"  # custom op domain for IR layers with no standard ONNX form

#: Tensor payloads up to this size are kept (shape targets, scales, axes); larger ones are dropped unread.
SMALL_PAYLOAD = 4096


class OnnxImportWarning(UserWarning):
    """Some ONNX ops had no IR mapping and became opaque layers (no MACs counted)."""


# -- protobuf wire format ------------------------------------------------------------------------
class _Corrupt(Exception):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("varint too long")


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field number, wire type, field start, value start, value end) of one message."""
    pos = start
    while pos < end:
        fstart = pos
        tag, pos = _varint(buf, pos, end)
        fno, wt = tag >> 3, tag & 7
        if fno == 0:
            raise _Corrupt("field number 0")
        if wt == 0:
            vstart = pos
            _, pos = _varint(buf, pos, end)
        elif wt == 1:
            vstart, pos = pos, pos + 8
        elif wt == 2:
            n, vstart = _varint(buf, pos, end)
            pos = vstart + n
        elif wt == 5:
            vstart, pos = pos, pos + 4
        else:
            raise _Corrupt(f"unsupported wire type {wt}")
        if pos > end:
            raise _Corrupt("field runs past the end of its message")
        yield fno, wt, fstart, vstart, pos


def _enc_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(fno: int, payload: bytes) -> bytes:
    return _enc_varint((fno << 3) | 2) + _enc_varint(len(payload)) + payload


# TensorProto: 1 dims, 2 data_type, 8 name are kept; payloads 4-7, 9-11; 13 external_data, 14 data_location.
_TENSOR_KEEP = {1, 2, 8}
_TENSOR_PAYLOAD = {4, 5, 6, 7, 9, 10, 11}


def _strip_tensor(buf, s: int, e: int) -> bytes:
    """A TensorProto without its payload unless small and stored inline."""
    payload, external = 0, False
    for fno, wt, _, vs, ve in _fields(buf, s, e):
        if fno in _TENSOR_PAYLOAD:
            payload += ve - vs
        elif fno == 13:
            external = True
        elif fno == 14 and wt == 0:
            external = external or _varint(buf, vs, ve)[0] == 1
    if not external and payload <= SMALL_PAYLOAD:
        return bytes(buf[s:e])
    return b"".join(bytes(buf[fs:ve]) for fno, _, fs, _, ve in _fields(buf, s, e) if fno in _TENSOR_KEEP)


def _strip_sparse(buf, s: int, e: int) -> bytes:
    out = []
    for fno, wt, fs, vs, ve in _fields(buf, s, e):
        out.append(_len_field(fno, _strip_tensor(buf, vs, ve)) if fno in (1, 2) and wt == 2 else bytes(buf[fs:ve]))
    return b"".join(out)


def _strip_attribute(buf, s: int, e: int) -> bytes:
    # AttributeProto: 5 t, 10 tensors, 6 g, 11 graphs, 22 sparse_tensor, 23 sparse_tensors
    out = []
    for fno, wt, fs, vs, ve in _fields(buf, s, e):
        if wt == 2 and fno in (5, 10):
            out.append(_len_field(fno, _strip_tensor(buf, vs, ve)))
        elif wt == 2 and fno in (6, 11):
            out.append(_len_field(fno, _strip_graph(buf, vs, ve)))
        elif wt == 2 and fno in (22, 23):
            out.append(_len_field(fno, _strip_sparse(buf, vs, ve)))
        else:
            out.append(bytes(buf[fs:ve]))
    return b"".join(out)


def _strip_node(buf, s: int, e: int) -> bytes:
    if e - s <= SMALL_PAYLOAD:
        return bytes(buf[s:e])
    out = []
    for fno, wt, fs, vs, ve in _fields(buf, s, e):
        out.append(_len_field(fno, _strip_attribute(buf, vs, ve)) if fno == 5 and wt == 2 else bytes(buf[fs:ve]))
    return b"".join(out)


def _strip_graph(buf, s: int, e: int) -> bytes:
    # GraphProto: 1 node, 5 initializer, 15 sparse_initializer
    out = []
    for fno, wt, fs, vs, ve in _fields(buf, s, e):
        if wt == 2 and fno == 1:
            out.append(_len_field(1, _strip_node(buf, vs, ve)))
        elif wt == 2 and fno == 5:
            out.append(_len_field(5, _strip_tensor(buf, vs, ve)))
        elif wt == 2 and fno == 15:
            out.append(_len_field(15, _strip_sparse(buf, vs, ve)))
        else:
            out.append(bytes(buf[fs:ve]))
    return b"".join(out)


def _strip_model(buf, n: int) -> bytes:
    # ModelProto: 7 graph; 20 training_info (dropped: holds training-only graphs and their tensors)
    out = []
    for fno, wt, fs, vs, ve in _fields(buf, 0, n):
        if wt == 2 and fno == 7:
            out.append(_len_field(7, _strip_graph(buf, vs, ve)))
        elif fno != 20:
            out.append(bytes(buf[fs:ve]))
    return b"".join(out)


def read_model_shapes_only(path: str):
    """The file's ModelProto with large tensor payloads and external-data references removed."""
    import onnx
    from google.protobuf.message import DecodeError

    if not os.path.exists(path):
        raise GraphError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise GraphError(f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise GraphError(f"{path}: empty file, not an ONNX model")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                small = _strip_model(mm, size)
    except _Corrupt as err:
        raise GraphError(f"{path}: not a valid ONNX file (truncated or corrupt: {err})") from None
    except OSError as err:
        raise GraphError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        model = onnx.ModelProto.FromString(small)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise GraphError(f"{path}: not a valid ONNX file ({type(err).__name__})") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise GraphError(f"{path}: not an ONNX model (no graph or IR version)")
    if not model.graph.node:
        raise GraphError(f"{path}: the ONNX graph is empty (no nodes)")
    return model


# -- helpers ----------------------------------------------------------------------------------------
@dataclass
class _Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    name: str
    attrs: dict
    domain: str = ""
    doc: str = ""
    index: int = 0


def _tensor_value(t) -> np.ndarray | None:
    """A TensorProto's value, or None when its payload was stripped or lives in external data."""
    from onnx import TensorProto, numpy_helper

    if t.data_location == TensorProto.EXTERNAL or t.external_data:
        return None
    n = math.prod(t.dims)
    has = bool(t.raw_data) or any(len(getattr(t, f)) for f in (
        "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"))
    if n and not has:
        return None
    try:
        return numpy_helper.to_array(t)
    except Exception:  # unusual dtypes: the value is only ever a convenience
        return None


def _pads_for(auto_pad: str, size: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int],
              pads: Sequence[int]) -> tuple[int, int, int, int]:
    """ONNX pads (top, left, bottom, right), resolving auto_pad SAME_UPPER / SAME_LOWER / VALID;
    windows, strides and dilations must be positive, pads not negative."""
    for name, vals in (("kernel_shape", k), ("strides", s), ("dilations", d)):
        if len(vals) != 2 or any(int(v) < 1 for v in vals):
            raise GraphError(f"{name} must be two positive integers, got {list(vals)}")
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER", "VALID") and pads and (
            len(pads) != 4 or any(int(p) < 0 for p in pads)):
        raise GraphError(f"pads must be four non-negative integers, got {list(pads)}")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for x, kk, ss, dd in zip(size, k, s, d):
            total = max((-(-x // ss) - 1) * ss + (kk - 1) * dd + 1 - x, 0)
            lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            begin.append(lo)
            end.append(total - lo)
        return (begin[0], begin[1], end[0], end[1])
    if auto_pad == "VALID" or not pads:
        return (0, 0, 0, 0)
    return tuple(int(p) for p in pads)  # type: ignore[return-value]


_ACTS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hswish",
         "HardSigmoid": "hsigmoid", "Gelu": "gelu", "Silu": "silu", "Elu": "elu", "Selu": "selu",
         "Softplus": "softplus", "PRelu": "prelu", "Mish": "mish", "Celu": "celu", "Softsign": "softsign",
         "ThresholdedRelu": "thresholded_relu"}
_ELTWISE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min", "Sum": "add",
            "Mean": "mean"}
_NORMS = {"LayerNormalization": "layer", "InstanceNormalization": "instance", "LRN": "lrn",
          "GroupNormalization": "group", "BatchNormalization": "batch", "MeanVarianceNormalization": "instance"}
_ALIAS = {"Identity", "Dropout", "Cast", "CastLike"}
_LAYOUT = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Gather", "Split", "Expand", "Tile",
           "Pad", "DepthToSpace", "SpaceToDepth", "GatherElements", "GatherND"}
_RESIZE_MODES = {"nearest": "nearest", "linear": "bilinear", "cubic": "bicubic"}


# -- constant folding of shape subgraphs -------------------------------------------------------------
_FOLD_UNARY = {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Floor": np.floor, "Ceil": np.ceil,
               "Not": np.logical_not, "Reciprocal": np.reciprocal}
_FOLD_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Mod": np.mod,
                "Pow": np.power, "Max": np.maximum, "Min": np.minimum, "Equal": np.equal, "Less": np.less,
                "Greater": np.greater, "And": np.logical_and, "Or": np.logical_or}
def _fold(n: _Node, vals: list, shapes: dict[str, Shape | None]) -> list | None:
    """Values of a static node's outputs from its inputs' values (numpy), or None if not computable."""
    a = n.attrs
    op = n.op
    if op == "Constant":
        if "value" in a:
            return [_tensor_value(a["value"])]
        for k in ("value_int", "value_float"):
            if k in a:
                return [np.array(a[k])]
        for k in ("value_ints", "value_floats"):
            if k in a:
                return [np.array(a[k])]
        return None
    if op in ("Shape", "Size"):
        s = shapes.get(n.inputs[0])
        if s is None:
            return None
        if op == "Size":
            return [np.array(math.prod(s), dtype=np.int64)]
        start, end = a.get("start", 0), a.get("end", None)
        return [np.array(s[start:end], dtype=np.int64)]
    if not vals or vals[0] is None:
        return None
    x = vals[0]
    try:
        if op in ("Identity", "Cast"):
            if op == "Cast":
                from onnx import helper

                return [x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
            return [x]
        if op == "Gather" and vals[1] is not None:
            return [np.take(x, vals[1], axis=a.get("axis", 0))]
        if op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes", vals[1].tolist() if len(vals) > 1 and vals[1] is not None else None)
            if op == "Unsqueeze":
                if axes is None:
                    return None
                out = x
                for ax in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
                    out = np.expand_dims(out, ax)
                return [out]
            return [np.squeeze(x, axis=tuple(axes) if axes is not None else None)]
        if op == "Concat" and all(v is not None for v in vals):
            return [np.concatenate([np.atleast_1d(v) for v in vals], axis=a.get("axis", 0))]
        if op in _FOLD_UNARY:
            return [_FOLD_UNARY[op](x)]
        if op in _FOLD_BINARY and len(vals) == 2 and vals[1] is not None:
            y = vals[1]
            if op == "Div" and np.issubdtype(x.dtype, np.integer):
                return [np.trunc(x / y).astype(x.dtype)]  # ONNX integer Div truncates
            if op == "Mod":
                return [np.fmod(x, y) if a.get("fmod", 0) else np.mod(x, y)]
            return [_FOLD_BINARY[op](x, y)]
        if op == "Slice" and vals[1] is not None and vals[2] is not None:
            starts, ends = vals[1].tolist(), vals[2].tolist()
            axes = vals[3].tolist() if len(vals) > 3 and vals[3] is not None else list(range(len(starts)))
            steps = vals[4].tolist() if len(vals) > 4 and vals[4] is not None else [1] * len(starts)
            sl = [slice(None)] * x.ndim
            for st, en, ax, sp in zip(starts, ends, axes, steps):
                sl[ax] = slice(st, en, sp)
            return [x[tuple(sl)]]
        if op == "Reshape" and vals[1] is not None:
            target = [d if d != 0 else x.shape[i] for i, d in enumerate(vals[1].tolist())]
            return [x.reshape(target)]
        if op == "ConstantOfShape":
            dims = [int(d) for d in x.tolist()]
            if math.prod(dims) > 65536:
                return None
            fill = _tensor_value(a["value"]) if "value" in a else np.zeros(1, np.float32)
            if fill is None:
                return None
            return [np.full(dims, fill.reshape(-1)[0], dtype=fill.dtype)]
        if op == "Range" and all(v is not None for v in vals):
            return [np.arange(vals[0], vals[1], vals[2])]
        if op == "Where" and all(v is not None for v in vals):
            return [np.where(x, vals[1], vals[2])]
    except Exception:  # a shape computation we cannot reproduce: its shape still comes from inference
        return None
    return None


# -- the importer ------------------------------------------------------------------------------------
@dataclass
class _Pending:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    out_shapes: list[Shape] = field(default_factory=list)


class _Importer:
    def __init__(self, path: str, model, batch: int | None, strict: bool):
        self.path, self.model, self.strict = path, model, strict
        meta = {p.key: p.value for p in model.metadata_props}
        if model.producer_name == "autotune" and (FORMAT_KEY not in meta or WEIGHTS_KEY not in meta):
            # a file written by export_onnx ends with these keys: without them it was cut short
            raise GraphError(f"written by autotune but its {FORMAT_KEY!r}/{WEIGHTS_KEY!r} metadata is missing "
                             "(truncated?)")
        self.explicit = FORMAT_KEY in meta
        try:
            self.weight_inputs = set(json.loads(meta.get(WEIGHTS_KEY, "[]")))
        except (ValueError, TypeError):
            raise GraphError(f"metadata {WEIGHTS_KEY!r} is not a JSON list of names") from None
        self.batch_override = batch
        self.unsupported: Counter[str] = Counter()
        self.layers: list[_Pending] = []
        self.producer: dict[str, _Pending] = {}
        self.alias: dict[str, str] = {}
        self.ir_shape: dict[str, Shape] = {}
        self.names: set[str] = set()

    # ---- setup
    def run(self) -> Graph:
        self._check_opsets()
        g = self.model.graph
        self.static: set[str] = {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
        self.static |= self.weight_inputs
        self.inputs = [vi for vi in g.input if vi.name not in self.static]
        if not self.inputs:
            raise GraphError("the graph has no activation inputs (every input is a weight)")
        changed = self._fix_inputs()
        self._toposort()
        if changed:  # recorded shapes carry the old batch: let inference redo them (custom ops excepted)
            self._forget_shapes()
        for _ in range(5):  # folded shape values let inference reach further (e.g. Reshape targets)
            self._infer()
            self._collect_shapes()
            self._fold_static()
            if self._fix_ceil_pools():
                continue  # values folded from the old pool sizes are stale: infer again before inlining
            if not self._inline_constants():
                break
        self._count_uses()
        self._rewrite_patterns()
        for n in self.nodes:
            if all(o in self.static or not o for o in n.outputs):
                continue
            try:
                self._map(n)
            except AutotuneError as err:
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): {err}") from None
            except (ValueError, KeyError, IndexError, TypeError) as err:
                raise GraphError(f"node {n.name or n.op!r} ({n.op}): cannot map it: {err}") from None
        if self.unsupported:
            ops = ", ".join(f"{op} x{k}" for op, k in sorted((str(o), k) for o, k in self.unsupported.items()))
            if self.strict:
                raise GraphError(f"unsupported ONNX ops (strict mode): {ops}")
            warnings.warn(f"{self.path}: unsupported ONNX ops mapped to opaque layers with no MACs: {ops}",
                          OnnxImportWarning, stacklevel=3)
        return self._graph()

    def _check_opsets(self) -> None:
        """Refuse an opset of the default ONNX domain that this onnx package does not know."""
        import onnx

        newest = onnx.defs.onnx_opset_version()
        default = [op for op in self.model.opset_import if op.domain in ("", "ai.onnx")]
        if not default:
            raise GraphError("the model declares no opset for the ONNX domain (a valid file always does; "
                             "truncated?)")
        for op in default:
            if not 1 <= op.version <= newest:
                raise GraphError(f"the model uses opset {op.version} of the ONNX domain; this autotune reads "
                                 f"opsets 1..{newest} (export with an older opset or upgrade onnx)")
        used = {n.domain for n in self.model.graph.node} - {"", "ai.onnx"}
        declared = {op.domain for op in self.model.opset_import}
        if used - declared:
            raise GraphError(f"nodes use domain {sorted(used - declared)[0]!r}, which the model does not declare "
                             "in its opset imports (truncated?)")

    def _fix_inputs(self) -> bool:
        """Pin symbolic dims (first dim to the batch, others to 1); True if any shape changed."""
        changed = False
        self.file_batch = None
        pinned = []
        for k, vi in enumerate(self.inputs):
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                raise GraphError(f"graph input {vi.name!r} has no shape")
            for i, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value <= 0:
                    raise GraphError(f"graph input {vi.name!r} has dimension {i} = {d.dim_value}; "
                                     "dimensions must be positive")
                known = d.HasField("dim_value") and d.dim_value > 0
                if k == 0 and i == 0:
                    self.file_batch = d.dim_value if known else None
                want = self.batch_override if i == 0 and self.batch_override else (d.dim_value if known else 1)
                if not known and i > 0:
                    pinned.append(f"{vi.name}[{i}]" + (f"={d.dim_param}" if d.dim_param else ""))
                if not known or want != d.dim_value:
                    d.Clear()
                    d.dim_value = want
                    changed = True
        if pinned:
            warnings.warn(f"{self.path}: symbolic input dims pinned to 1 (export with fixed sizes to plan real "
                          f"shapes): {', '.join(pinned)}", OnnxImportWarning, stacklevel=4)
        first = self.inputs[0].type.tensor_type.shape.dim
        self.batch = first[0].dim_value if len(first) else 1
        return changed

    def _toposort(self) -> None:
        import heapq

        from onnx import helper

        g = self.model.graph
        nodes: list[_Node] = []
        for i, p in enumerate(g.node):
            attrs = {a.name: helper.get_attribute_value(a) for a in p.attribute}
            nodes.append(_Node(p.op_type, list(p.input), list(p.output), p.name, attrs, p.domain, p.doc_string, i))
        avail = {vi.name for vi in g.input} | self.static | {""}
        prod: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for t in n.outputs:
                if t in prod or t in avail - {""}:
                    raise GraphError(f"tensor {t!r} is produced twice (node {n.name or n.op!r})")
                if t:
                    prod[t] = i
        users: list[list[int]] = [[] for _ in nodes]
        indeg = [0] * len(nodes)
        for i, n in enumerate(nodes):
            for t in set(n.inputs):
                if t in avail:
                    continue
                if t not in prod:
                    raise GraphError(f"node {n.name or n.op!r} reads tensor {t!r} that nothing produces (dangling)")
                indeg[i] += 1
                users[prod[t]].append(i)
        heap = [i for i in range(len(nodes)) if indeg[i] == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            i = heapq.heappop(heap)
            order.append(i)
            for u in users[i]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(heap, u)
        if len(order) != len(nodes):
            stuck = next(n for i, n in enumerate(nodes) if indeg[i] > 0)
            raise GraphError(f"the graph has a cycle through node {stuck.name or stuck.op!r}")
        self.nodes: list[_Node] = [nodes[i] for i in order]
        if order != sorted(order):  # ONNX shape inference needs topological order
            protos = [g.node[i] for i in order]
            copies = [type(p)() for p in protos]
            for c, p in zip(copies, protos):
                c.CopyFrom(p)
            del g.node[:]
            g.node.extend(copies)

    def _forget_shapes(self) -> None:
        g = self.model.graph
        custom = {t for n in self.nodes if n.domain not in ("", "ai.onnx") for t in n.outputs}
        keep = [vi for vi in g.value_info if vi.name in custom]
        for vi in keep + [vi for vi in g.output if vi.name in custom]:  # custom ops: move the batch dim along
            dims = vi.type.tensor_type.shape.dim
            if dims and self.file_batch and dims[0].dim_value == self.file_batch:
                dims[0].dim_value = self.batch
        del g.value_info[:]
        g.value_info.extend(keep)
        for vi in g.output:
            if vi.name not in custom and vi.type.tensor_type.HasField("shape"):
                vi.type.tensor_type.ClearField("shape")

    def _infer(self) -> None:
        import onnx

        for data_prop in (True, False):
            try:
                self.model = onnx.shape_inference.infer_shapes(self.model, check_type=False, strict_mode=False,
                                                               data_prop=data_prop)
                return
            except Exception:  # inference is best effort: missing shapes are reported where needed
                continue

    def _collect_shapes(self) -> None:
        g = self.model.graph
        self.shapes: dict[str, Shape | None] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                continue
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tt.shape.dim]
            if all(d > 0 for d in dims) or not dims:
                self.shapes[vi.name] = tuple(dims)
        for t in g.initializer:
            self.shapes[t.name] = tuple(int(d) for d in t.dims)
        self.values: dict[str, np.ndarray] = {}
        for t in g.initializer:
            v = _tensor_value(t)
            if v is not None:
                self.values[t.name] = v
        for vi in self.inputs:
            shape = self.shapes[vi.name]
            if shape is None:
                raise GraphError(f"graph input {vi.name!r} has no fixed shape")
            self.ir_shape[vi.name] = shape
            if any(d <= 0 for d in shape):
                raise GraphError(f"graph input {vi.name!r} has a non-positive dimension")

    def _fold_static(self) -> None:
        """Mark nodes that compute only constants or shapes (no layer) and evaluate what is cheap."""
        for n in self.nodes:
            ins = [t for t in n.inputs if t]
            if n.op in ("Shape", "Size") or all(t in self.static for t in ins):
                if n.op in ("RandomNormalLike", "RandomUniformLike", "EyeLike") and ins:
                    continue
                self.static.update(t for t in n.outputs if t)
                vals = _fold(n, [self.values.get(t) if t else None for t in n.inputs], self.shapes)
                for t, v in zip(n.outputs, vals or []):
                    if v is not None:
                        self.values[t] = np.asarray(v)
                        self.shapes.setdefault(t, tuple(int(d) for d in np.shape(v)))

    def _fix_ceil_pools(self) -> bool:
        """Rewrite ceil-mode pools whose ONNX-inferred size breaks the last-window rule that PyTorch and
        ONNX Runtime apply, as floor-mode pools with the end padding that gives the runtime's size."""
        from onnx import helper

        changed = False
        protos = {p.output[0]: p for p in self.model.graph.node if p.output}
        for n in self.nodes:
            x, y = self.shapes.get(n.inputs[0]) if n.inputs else None, self.shapes.get(n.outputs[0])
            if n.op not in ("MaxPool", "AveragePool") or not n.attrs.get("ceil_mode") or not x or not y:
                continue
            ap = n.attrs.get("auto_pad", "NOTSET")
            if len(x) != 4 or (ap.decode() if isinstance(ap, bytes) else ap) != "NOTSET":
                continue
            k, s = list(n.attrs["kernel_shape"]), list(n.attrs.get("strides", [1, 1]))
            d, pads = list(n.attrs.get("dilations", [1, 1])), list(n.attrs.get("pads", [0] * 4))
            want = make_layer("p", "pool", ["x"], [x], kernel=k, stride=s, pads=pads, dilation=d,
                              ceil_mode=True).out_shape
            if want == y:
                continue
            ends = [(o - 1) * st + (kk - 1) * dd + 1 - size - p0
                    for o, st, kk, dd, size, p0 in zip(want[2:], s, k, d, x[2:], pads[:2])]
            if min(ends) < 0:
                continue
            n.attrs["ceil_mode"], n.attrs["pads"] = 0, pads[:2] + ends
            p = protos[n.outputs[0]]
            keep = [a for a in p.attribute if a.name not in ("ceil_mode", "pads")]
            del p.attribute[:]
            p.attribute.extend(keep + [helper.make_attribute("pads", pads[:2] + ends)])
            self._forget_downstream(n.outputs[0])
            changed = True
        return changed

    def _forget_downstream(self, t: str) -> None:
        """Drop the inferred shapes of `t` and of every tensor computed from it, so inference redoes them."""
        stale, grew = {t}, True
        while grew:
            grew = False
            for n in self.nodes:
                if any(i in stale for i in n.inputs) and not all(o in stale for o in n.outputs if o):
                    stale.update(o for o in n.outputs if o)
                    grew = True
        g = self.model.graph
        keep = [vi for vi in g.value_info if vi.name not in stale]
        del g.value_info[:]
        g.value_info.extend(keep)
        for vi in g.output:
            if vi.name in stale:
                vi.type.tensor_type.ClearField("shape")
        for x in stale:
            self.shapes.pop(x, None)

    def _inline_constants(self) -> bool:
        """Replace nodes whose outputs were all folded by initializers; True if inference should rerun."""
        from onnx import numpy_helper

        dynamic_unknown = any(t and t not in self.static and t not in self.shapes
                              for n in self.nodes for t in n.outputs)
        if not dynamic_unknown:
            return False
        g = self.model.graph
        inits = {t.name for t in g.initializer}
        keep: list = []
        new: list = []
        for p in g.node:
            outs = [t for t in p.output if t]
            if outs and all(t in self.values and t not in inits for t in outs):
                new.extend(numpy_helper.from_array(self.values[t], t) for t in outs)
            else:
                keep.append(p)
        if not new:
            return False
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(new)
        return True

    def _count_uses(self) -> None:
        self.users: dict[str, list[_Node]] = {}
        for n in self.nodes:
            if all(o in self.static or not o for o in n.outputs):
                continue
            for t in n.inputs:
                if t:
                    self.users.setdefault(t, []).append(n)
        self.graph_outputs = [vi.name for vi in self.model.graph.output]

    def _uses(self, t: str) -> int:
        return len(self.users.get(t, [])) + (t in self.graph_outputs)

    def _sole_user(self, t: str) -> _Node | None:
        us = self.users.get(t, [])
        return us[0] if len(us) == 1 and t not in self.graph_outputs else None

    def _scalar(self, t: str) -> float | None:
        v = self.values.get(t)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    # ---- multi-node activation patterns
    def _rewrite_patterns(self) -> None:
        """Replace the Erf form of GELU, x*sigmoid(x) (SiLU) and x*hardsigmoid(x) by single nodes."""
        drop: set[int] = set()
        replace: dict[int, _Node] = {}

        def other(n: _Node, t: str) -> str | None:
            if len(n.inputs) != 2:
                return None
            return n.inputs[1] if n.inputs[0] == t else n.inputs[0] if n.inputs[1] == t else None

        def near(v: float | None, want: float) -> bool:
            return v is not None and abs(v - want) < 1e-3 * max(1.0, abs(want))

        for n in self.nodes:
            if n.index in drop:
                continue
            if n.op in ("Sigmoid", "HardSigmoid") and n.inputs[0] not in self.static:
                x = n.inputs[0]
                m = self._sole_user(n.outputs[0])
                if m is not None and m.op == "Mul" and other(m, n.outputs[0]) == x:
                    drop.add(n.index)
                    op = "Silu" if n.op == "Sigmoid" else "HardSwish"
                    replace[m.index] = _Node(op, [x], m.outputs, m.name, {}, "", m.doc, m.index)
            if n.op == "Erf":
                d = next((p for p in self.nodes if n.inputs[0] in p.outputs), None)
                if d is None or d.op not in ("Div", "Mul") or self._sole_user(d.outputs[0]) is not n:
                    continue
                x, c = d.inputs[0], self._scalar(d.inputs[1])
                if not (near(c, math.sqrt(2)) if d.op == "Div" else near(c, 1 / math.sqrt(2))):
                    continue
                a = self._sole_user(n.outputs[0])
                if a is None or a.op != "Add" or not near(self._scalar(other(a, n.outputs[0]) or ""), 1.0):
                    continue
                cur, parts, seen_x, seen_half = a.outputs[0], [d, n, a], False, False
                for _ in range(2):
                    m = self._sole_user(cur)
                    o = other(m, cur) if m is not None and m.op == "Mul" else None
                    if o is None:
                        break
                    h = next((p for p in self.nodes if o in p.outputs), None)
                    if o == x:
                        seen_x = True
                    elif near(self._scalar(o), 0.5):
                        seen_half = True
                    elif (h is not None and h.op == "Mul" and self._sole_user(o) is m and x in h.inputs
                          and near(self._scalar(other(h, x) or ""), 0.5)):
                        seen_x = seen_half = True
                        parts.append(h)
                    else:
                        break
                    assert m is not None  # `o` is only set when `m` is a Mul
                    parts.append(m)
                    cur = m.outputs[0]
                    if seen_x and seen_half:
                        break
                if seen_x and seen_half:
                    end = parts[-1]
                    drop.update(p.index for p in parts if p is not end)
                    replace[end.index] = _Node("Gelu", [x], end.outputs, end.name, {}, "", end.doc, end.index)
        if drop or replace:
            self.nodes = [replace.get(n.index, n) for n in self.nodes if n.index not in drop]
            self._count_uses()

    # ---- building layers
    def _src(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def _shape(self, t: str) -> Shape:
        s = self.shapes.get(t)
        if s is None:
            raise GraphError(f"shape of tensor {t!r} is unknown and cannot be inferred")
        return s

    def _layer_name(self, n: _Node, suffix: str = "") -> str:
        base = (n.name or f"{n.op.lower()}_{n.index}") + suffix
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def _dyn(self, n: _Node) -> list[str]:
        return [t for t in n.inputs if t and t not in self.static]

    def _emit(self, n: _Node, op: str, inputs: list[str], outputs: list[str] | None = None, suffix: str = "",
              **attrs) -> _Pending:
        """Add one IR layer; a shape the IR rule cannot reproduce makes it an opaque layer instead."""
        outputs = outputs or [n.outputs[0]]
        srcs = [self._src(t) for t in inputs]
        name = self._layer_name(n, suffix)
        layer = make_layer(name, op, srcs, [self.ir_shape[t] for t in srcs], outputs, **attrs)
        onnx_shape = self.shapes.get(outputs[0])
        # autotune's own files follow the IR rules; ONNX inference also lacks PyTorch's ceil-mode rule
        # (the last window must start inside the input), which the runtimes apply
        trust_ir = self.explicit or (op == "pool" and attrs.get("ceil_mode"))
        if (op not in ("opaque", "reshape", "resize") and onnx_shape is not None and onnx_shape != layer.out_shape
                and not trust_ir):
            if self.strict:
                raise GraphError(f"ONNX gives output shape {onnx_shape}, the IR rule gives {layer.out_shape}")
            self.unsupported[f"{n.op}(shape rule mismatch)"] += 1
            op, attrs = "opaque", {"mode": n.op.lower(), "shape": onnx_shape}
            layer = make_layer(name, op, srcs, [self.ir_shape[t] for t in srcs], outputs, **attrs)
        p = _Pending(name, op, srcs, list(outputs), dict(attrs), list(layer.out_shapes))
        self._add(p)
        return p

    def _add(self, p: _Pending) -> None:
        self.layers.append(p)
        for t, s in zip(p.outputs, p.out_shapes):
            self.producer[t] = p
            self.ir_shape[t] = s

    def _opaque(self, n: _Node, mode: str | None = None, warn: bool = True) -> None:
        if warn:
            self.unsupported[n.op] += 1
        outs = [t for t in n.outputs if t]
        shapes = [self._shape(t) for t in outs]
        srcs = [self._src(t) for t in self._dyn(n)]
        if not srcs:
            raise GraphError("has no activation input")
        p = _Pending(self._layer_name(n), "opaque", srcs, outs, {"mode": mode or n.op.lower(), "shape": shapes[0]},
                     shapes)
        self._add(p)

    def _fusable(self, t: str, ops: tuple[str, ...]) -> _Pending | None:
        """The producer of `t` if an epilogue may fold into it: right kind, no activation yet, sole consumer."""
        p = self.producer.get(t)
        if p is None or t in self.alias or p.op not in ops or p.attrs.get("act") or self._uses(t) != 1:
            return None
        if p.outputs != [t]:
            return None
        return p

    def _retarget(self, p: _Pending, new: str) -> None:
        old = p.outputs[0]
        del self.producer[old]
        s = self.ir_shape.pop(old)
        p.outputs = [new]
        self.producer[new] = p
        self.ir_shape[new] = s

    def _fc_candidate(self, n: _Node, t: str) -> bool:
        if not n.inputs or n.inputs[0] != t or len(n.inputs) < 2 or n.inputs[1] not in self.static:
            return False
        if n.op == "Gemm":
            return not n.attrs.get("transA", 0)
        return n.op == "MatMul" and len(self.shapes.get(n.inputs[1]) or ()) == 2

    def _act(self, n: _Node, mode: str) -> None:
        x = n.inputs[0]
        marked = n.doc == FUSED_MARK
        p = self._fusable(x, ("conv", "fc", "eltwise", "norm", "pool", "gpool", "concat", "matmul", "resize")
                          if marked else ("conv", "fc", "eltwise", "norm"))
        if p is not None and (marked if self.explicit else True):
            p.attrs["act"] = mode
            self._retarget(p, n.outputs[0])
            return
        self._emit(n, "act", [x], mode=mode)

    def _layout(self, n: _Node, x: str, out: str, shape: Shape) -> None:
        src = self._src(x)
        s_in = self.ir_shape[src]
        if n.op in _ALIAS or (shape == s_in and not self.explicit):
            self.alias[out] = src
            return
        if (len(s_in) == 4 and shape == (s_in[0], math.prod(s_in[1:])) and out not in self.graph_outputs
                and (n.op == "Flatten" or not self.explicit) and self.users.get(out)
                and all(self._fc_candidate(u, out) for u in self.users[out])):
            self.alias[out] = src  # fc flattens a 4-D input itself
            return
        if math.prod(shape) == math.prod(s_in):
            self._emit(n, "reshape", [x], [out], shape=shape)
        else:
            self._opaque(n, warn=False)

    def _map(self, n: _Node) -> None:
        op, a = n.op, n.attrs
        dyn = self._dyn(n)
        if n.domain == DOMAIN:
            return self._custom(n)
        if n.domain not in ("", "ai.onnx"):
            return self._opaque(n, mode=f"{n.domain}.{op}")
        if op in _ALIAS:
            self.alias[n.outputs[0]] = self._src(dyn[0])
            return
        if op == "Conv":
            return self._conv(n)
        if op in ("Gemm", "MatMul"):
            return self._gemm(n)
        if op in ("MaxPool", "AveragePool"):
            x = self.ir_shape[self._src(n.inputs[0])]
            if len(x) != 4:
                return self._opaque(n)
            k = list(a["kernel_shape"])
            s = list(a.get("strides", [1, 1]))
            d = list(a.get("dilations", [1, 1]))
            pads = _pads_for(a.get("auto_pad", b"NOTSET").decode() if isinstance(a.get("auto_pad"), bytes)
                             else a.get("auto_pad", "NOTSET"), x[2:], k, s, d, a.get("pads", []))
            self._emit(n, "pool", [n.inputs[0]], kernel=k, stride=s, pads=pads, dilation=d,
                       ceil_mode=bool(a.get("ceil_mode", 0)), mode="max" if op == "MaxPool" else "avg")
            return
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            if len(self.ir_shape[self._src(n.inputs[0])]) != 4:
                return self._opaque(n)
            self._emit(n, "gpool", [n.inputs[0]], mode="avg" if op == "GlobalAveragePool" else "max")
            return
        if op in ("ReduceMean", "ReduceMax"):
            x = self.ir_shape[self._src(n.inputs[0])]
            axes = a.get("axes")
            if axes is None and len(n.inputs) > 1 and n.inputs[1] in self.values:
                axes = self.values[n.inputs[1]].tolist()
            if len(x) == 4 and axes is not None and sorted(int(v) % 4 for v in axes) == [2, 3]:
                mode = "avg" if op == "ReduceMean" else "max"
                if a.get("keepdims", 1):
                    self._emit(n, "gpool", [n.inputs[0]], mode=mode)
                    return
                tmp = n.outputs[0] + "/gpool"
                self._emit(n, "gpool", [n.inputs[0]], [tmp], mode=mode)
                return self._layout(n, tmp, n.outputs[0], self._shape(n.outputs[0]))
            return self._opaque(n)
        if op in _ELTWISE:
            return self._eltwise(n, _ELTWISE[op])
        if op == "Clip":
            lo = a.get("min", self._scalar(n.inputs[1]) if len(n.inputs) > 1 and n.inputs[1] else None)
            hi = a.get("max", self._scalar(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None)
            return self._act(n, "relu6" if lo == 0 and hi == 6 else "relu" if lo == 0 and hi is None else "clip")
        if op in _ACTS:
            return self._act(n, _ACTS[op])
        if op == "BatchNormalization":
            p = None if self.explicit else self._fusable(n.inputs[0], ("conv", "fc"))
            if p is not None:
                p.attrs["bias"] = True  # the folded BN shift becomes the bias
                self._retarget(p, n.outputs[0])
                return
            self._emit(n, "norm", [n.inputs[0]], mode="batch")
            return
        if op in _NORMS:
            self._emit(n, "norm", [n.inputs[0]], mode=_NORMS[op])
            return
        if op in ("Softmax", "LogSoftmax"):
            self._emit(n, "softmax", [n.inputs[0]])
            return
        if op == "Concat":
            if len(dyn) != len([t for t in n.inputs if t]):
                return self._opaque(n, warn=False)
            self._emit(n, "concat", dyn, axis=int(a.get("axis", 1)))
            return
        if op in ("Resize", "Upsample"):
            mode = a.get("mode", "nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            self._emit(n, "resize", [n.inputs[0]], shape=self._shape(n.outputs[0]),
                       mode=_RESIZE_MODES.get(mode, mode))
            return
        if op == "Flatten":
            src = self.ir_shape[self._src(n.inputs[0])]
            ax = int(a.get("axis", 1)) % max(1, len(src))
            return self._layout(n, n.inputs[0], n.outputs[0], (math.prod(src[:ax]), math.prod(src[ax:])))
        if op in _LAYOUT and dyn and dyn[0] == n.inputs[0]:
            outs = [t for t in n.outputs if t]
            if len(outs) == 1:
                return self._layout(n, n.inputs[0], outs[0], self._shape(outs[0]))
            return self._opaque(n, warn=False)
        return self._opaque(n)

    def _conv(self, n: _Node) -> None:
        a = n.attrs
        x = self.ir_shape[self._src(n.inputs[0])]
        w = self._shape(n.inputs[1])
        if len(x) != 4 or len(w) != 4:
            return self._opaque(n)
        k = list(a.get("kernel_shape", w[2:]))
        s = list(a.get("strides", [1, 1]))
        d = list(a.get("dilations", [1, 1]))
        groups = int(a.get("group", 1))
        if groups < 1 or w[1] * groups != x[1]:
            raise GraphError(f"weight {n.inputs[1]!r} {tuple(w)} with group={groups} expects {w[1] * groups} "
                             f"input channels, the input has {x[1]}")
        if list(k) != list(w[2:]):
            raise GraphError(f"kernel_shape {k} disagrees with the weight's window {list(w[2:])}")
        ap = a.get("auto_pad", "NOTSET")
        pads = _pads_for(ap.decode() if isinstance(ap, bytes) else ap, x[2:], k, s, d, a.get("pads", []))
        bias = len(n.inputs) > 2 and bool(n.inputs[2])
        self._emit(n, "conv", [n.inputs[0]], out_channels=w[0], kernel=k, stride=s, pads=pads, dilation=d,
                   groups=groups, bias=bias, act="")

    def _gemm(self, n: _Node) -> None:
        a = n.attrs
        x, wt = n.inputs[0], n.inputs[1]
        if x in self.static:
            return self._opaque(n)
        if wt not in self.static:
            if n.op == "MatMul":
                xs, ys = self.ir_shape[self._src(x)], self.ir_shape[self._src(wt)]
                if len(xs) >= 2 and len(ys) >= 2:
                    self._emit(n, "matmul", [x, wt])
                    return
            return self._opaque(n)
        w = self._shape(wt)
        xs = self.ir_shape[self._src(x)]
        if n.op == "Gemm":
            if a.get("transA", 0) or len(w) != 2:
                return self._opaque(n)
            cout = w[0] if a.get("transB", 0) else w[1]
            c = n.inputs[2] if len(n.inputs) > 2 else ""
            if c and c not in self.static:  # an activation as C: fc then an eltwise add
                tmp = n.outputs[0] + "/fc"
                self._emit(n, "fc", [x], [tmp], out_channels=cout, bias=False, act="")
                self._emit(n, "eltwise", [tmp, c], suffix="/add", mode="add")
                return
            self._emit(n, "fc", [x], out_channels=cout, bias=bool(c), act="")
            return
        if len(w) != 2 or len(xs) < 2:
            return self._opaque(n)
        if len(xs) == 4:  # IR fc would flatten a 4-D input: fold the leading dims around it instead
            mid = n.outputs[0] + "/in3d"
            self._layout(n, x, mid, (xs[0], xs[1] * xs[2], xs[3]))
            tmp = n.outputs[0] + "/fc"
            self._emit(n, "fc", [mid], [tmp], out_channels=w[1], bias=False, act="")
            self._layout(n, tmp, n.outputs[0], xs[:3] + (w[1],))
            return
        self._emit(n, "fc", [x], out_channels=w[1], bias=False, act="")

    def _eltwise(self, n: _Node, mode: str) -> None:
        dyn = self._dyn(n)
        if n.op == "Add" and len(dyn) == 1 and len(n.inputs) == 2:  # a bias after a MatMul or bias-less Conv
            c = n.inputs[1] if n.inputs[0] == dyn[0] else n.inputs[0]
            p = self._fusable(dyn[0], ("fc", "conv"))
            cs = self.shapes.get(c)
            if p is not None and not p.attrs.get("bias") and cs is not None:
                cout = p.attrs["out_channels"]
                # the constant must run along the channel axis: (C,) / (1, C) for fc, (C, 1, 1) for conv
                lead = cs[: len(cs) - (3 if p.op == "conv" else 1)]
                if (math.prod(cs) == cout and len(cs) >= (3 if p.op == "conv" else 1)
                        and all(d == 1 for d in lead) and cs[len(lead)] == cout):
                    p.attrs["bias"] = True
                    self._retarget(p, n.outputs[0])
                    return
        self._emit(n, "eltwise", dyn, mode=mode, act="")

    def _custom(self, n: _Node) -> None:
        """A layer written by autotune.onnx_export with no standard ONNX form: attrs travel as JSON."""
        try:
            op = n.attrs["op"].decode()
            attrs = json.loads(n.attrs["attrs"].decode())
        except (KeyError, ValueError, AttributeError):
            raise GraphError(f"custom node of domain {DOMAIN!r} lacks its 'op'/'attrs' attributes") from None
        attrs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()}
        srcs = [self._src(t) for t in n.inputs if t]
        name = self._layer_name(n)
        if op == "opaque" or len(n.outputs) > 1:
            shapes = [self._shape(t) for t in n.outputs]
            if "shape" in attrs:
                attrs["shape"] = shapes[0]
            p = _Pending(name, op, srcs, list(n.outputs), attrs, shapes)
        else:
            layer = make_layer(name, op, srcs, [self.ir_shape[t] for t in srcs], list(n.outputs), **attrs)
            p = _Pending(name, op, srcs, list(n.outputs), attrs, list(layer.out_shapes))
        self._add(p)

    def _graph(self) -> Graph:
        layers = []
        for p in self.layers:
            if p.op == "opaque" or len(p.outputs) > 1:
                kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in p.attrs.items()}
                a = Attrs(**kw)
                layers.append(Layer(p.name, p.op, tuple(p.inputs), tuple(p.outputs),
                                    tuple(self.ir_shape[t] for t in p.inputs), tuple(p.out_shapes), a))
            else:
                layers.append(make_layer(p.name, p.op, p.inputs, [self.ir_shape[t] for t in p.inputs],
                                         p.outputs, **p.attrs))
        outs: list[str] = []
        for t in self.graph_outputs:
            if t in self.static:
                continue
            s = self._src(t)
            if s not in outs:
                outs.append(s)
        inputs = {vi.name: self.ir_shape[vi.name] for vi in self.inputs}
        name = self.model.graph.name or os.path.splitext(os.path.basename(self.path))[0]
        used = {t for lyr in layers for t in lyr.inputs} | set(outs)
        inputs = {k: v for k, v in inputs.items() if k in used} or inputs
        return Graph(name, layers, inputs, outs or None, batch=self.batch).validate()


def load_onnx(path: str, batch: int | None = None, strict: bool = False) -> Graph:
    """Import an ONNX file as a validated Graph (shapes only; `batch` overrides the first input dim).

    Unsupported ops become opaque layers with one OnnxImportWarning, or a GraphError when `strict`.
    """
    path = os.fspath(path)
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise GraphError(f"{path}: batch must be a positive integer, got {batch!r}")
    model = read_model_shapes_only(path)
    try:
        return _Importer(path, model, batch, strict).run()
    except GraphError as err:
        msg = str(err)
        raise GraphError(msg if msg.startswith(path) else f"{path}: {msg}") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, RuntimeError) as err:
        # a file that parses as protobuf but breaks ONNX's own rules (fields of the wrong kind, bad UTF-8)
        raise GraphError(f"{path}: malformed ONNX model ({type(err).__name__}: {err})") from None
