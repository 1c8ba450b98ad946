"""ONNX nodes as the importer sees them, and constant folding of shape subgraphs: what
onnx_prepare.py, onnx_import.py, onnx_patterns.py and onnx_batch.py share (kept apart so none imports back).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotune.frontends.onnx_proto import tensor_value
from autotune.ir.graph import Shape


@dataclass
class Node:
    """One ONNX node as the importer reads it (attributes decoded, position kept in `index`)."""

    op: str
    inputs: list[str]
    outputs: list[str]
    name: str
    attrs: dict
    domain: str = ""
    doc: str = ""
    index: int = 0

    @classmethod
    def of(cls, p, index: int = 0) -> Node:
        """The Node of NodeProto `p`."""
        return cls(p.op_type, list(p.input), list(p.output), p.name, node_attrs(p), p.domain, p.doc_string, index)


def node_attrs(p) -> dict:
    """A NodeProto's attributes by name, as Python values (a subgraph as its GraphProto)."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in p.attribute}



# -- constant folding of shape subgraphs -------------------------------------------------------------
_FOLD_UNARY = {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Floor": np.floor, "Ceil": np.ceil,
               "Not": np.logical_not, "Reciprocal": np.reciprocal}
_FOLD_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Mod": np.mod,
                "Pow": np.power, "Max": np.maximum, "Min": np.minimum, "Equal": np.equal, "Less": np.less,
                "Greater": np.greater, "And": np.logical_and, "Or": np.logical_or}
#: Folded ops whose output is their inputs broadcast together (its size known before computing it).
BROADCASTING = frozenset(_FOLD_BINARY) | {"Where"}
_FOLD_REDUCE: dict[str, Callable[..., Any]] = {
    "ReduceMin": np.min, "ReduceMax": np.max, "ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceProd": np.prod}


def _reduce_axes(a: dict, vals: list, ndim: int) -> tuple[int, ...] | None:
    """A reduction's axes: the attribute (before opset 18 for most) or input 1; all when neither, unless
    noop_with_empty_axes. None where input 1 is not known."""
    if len(vals) > 1 and vals[1] is None:
        return None
    axes = a.get("axes", vals[1].tolist() if len(vals) > 1 else None)
    if axes is None or len(axes) == 0:
        return () if a.get("noop_with_empty_axes", 0) else tuple(range(ndim))
    return tuple(int(v) % ndim for v in axes)


def _slice_bounds(a: dict, vals: list) -> tuple[list, list, list, list] | None:
    """A Slice's starts, ends, axes and steps: attributes up to opset 9, inputs since, None if unknown."""
    if len(vals) == 1 and "starts" in a and "ends" in a:
        starts, ends = list(a["starts"]), list(a["ends"])
        return starts, ends, list(a.get("axes", range(len(starts)))), [1] * len(starts)
    if len(vals) > 2 and vals[1] is not None and vals[2] is not None:
        starts, ends = vals[1].tolist(), vals[2].tolist()
        axes = vals[3].tolist() if len(vals) > 3 and vals[3] is not None else list(range(len(starts)))
        steps = vals[4].tolist() if len(vals) > 4 and vals[4] is not None else [1] * len(starts)
        return starts, ends, axes, steps
    return None


def fold_values(n: Node, vals: list, shapes: dict[str, Shape | None]) -> list | None:
    """Values of a static node's outputs from its inputs' values (numpy), or None if not computable."""
    a = n.attrs
    op = n.op
    if op == "Constant":
        if "value" in a:
            return [tensor_value(a["value"])]
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
        if op in _FOLD_REDUCE:  # e.g. the min and max side of a detector's fixed target size
            axes = _reduce_axes(a, vals, x.ndim)
            if axes is None:
                return None
            return [_FOLD_REDUCE[op](x, axis=axes, keepdims=bool(a.get("keepdims", 1))).astype(x.dtype)]
        bounds = _slice_bounds(a, vals) if op == "Slice" else None
        if bounds is not None:
            sl = [slice(None)] * x.ndim
            for st, en, ax, sp in zip(*bounds):
                sl[ax] = slice(st, en, sp)
            return [x[tuple(sl)]]
        if op == "Reshape" and vals[1] is not None:
            target = [d if d != 0 else x.shape[i] for i, d in enumerate(vals[1].tolist())]
            return [x.reshape(target)]
        if op == "ConstantOfShape":
            dims = [int(d) for d in x.tolist()]
            if math.prod(dims) > 65536:
                return None
            fill = tensor_value(a["value"]) if "value" in a else np.zeros(1, np.float32)
            if fill is None:
                return None
            return [np.full(dims, fill.reshape(-1)[0], dtype=fill.dtype)]
        if op == "Expand" and vals[1] is not None and \
                math.prod(np.broadcast_shapes(x.shape, tuple(vals[1]))) <= 1 << 20:
            return [x * np.ones(tuple(int(d) for d in vals[1]), dtype=x.dtype)]  # bidirectional broadcast
        if op == "GatherElements" and vals[1] is not None:
            return [np.take_along_axis(x, vals[1].astype(np.int64) % x.shape[a.get("axis", 0)], axis=a.get("axis", 0))]
        if op == "Tile" and vals[1] is not None and x.size * math.prod(vals[1].tolist()) <= 1 << 20:
            return [np.tile(x, vals[1].tolist())]
        if op == "Transpose":
            return [np.transpose(x, a.get("perm"))]
        if op == "Range" and all(v is not None for v in vals):
            return [np.arange(vals[0], vals[1], vals[2])]
        if op == "Where" and all(v is not None for v in vals):
            return [np.where(x, vals[1], vals[2])]
    except Exception:  # a shape computation we cannot reproduce: its shape still comes from inference
        return None
    return None
