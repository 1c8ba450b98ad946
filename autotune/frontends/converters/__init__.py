"""ONNX op -> IR layers: one converter per op family, found by op type (and domain).

A converter is a function `(imp: Importer, n: Node) -> None` that adds IR layers (or aliases) for ONNX
node `n` through the importer's helpers (`imp.emit`, `imp.layout`, `imp.act`, `imp.opaque`, ...).
Register it with `@converter("Conv")`; an op type with no converter becomes an opaque layer, named in
the import warning and refused by `--strict`. An op of another domain, which ONNX shape inference does
not know (com.microsoft's QLinearAdd), also registers its output shapes with `@shape_rule`, so that
inference reaches the ops after it. Adding an op is one small file in this package: every
module here is imported, in name order, when the package is (as Stream and onnx2torch organise theirs).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotune.frontends.onnx_import import Importer, Node

Converter = Callable[["Importer", "Node"], Any]
Shape = tuple[int, ...]
#: (node, its inputs' shapes, None where unknown) -> its outputs' shapes, or None if not yet known
ShapeRule = Callable[["Node", list[Shape | None]], list[Shape] | None]

#: ONNX's own domain ("" and "ai.onnx" are the same); ANY_DOMAIN: op types known in every domain
#: (e.g. Silu or Gelu as a com.microsoft or exporter-local function op)
ONNX_DOMAINS = ("", "ai.onnx")
ANY_DOMAIN = "*"

_CONVERTERS: dict[tuple[str, str], Converter] = {}
_SHAPE_RULES: dict[tuple[str, str], tuple[ShapeRule, int | None]] = {}


def converter(*op_types: str, domain: str = "") -> Callable[[Converter], Converter]:
    """Decorator: `fn` converts nodes of these op types (in `domain`: "" for ONNX's own, ANY_DOMAIN for all)."""

    def deco(fn: Converter) -> Converter:
        for op in op_types:
            key = (domain, op)
            if key in _CONVERTERS:
                raise ValueError(f"ONNX op {op!r} (domain {domain!r}) has two converters")
            _CONVERTERS[key] = fn
        return fn

    return deco


def lookup(op_type: str, domain: str) -> Converter | None:
    """The converter for a node, or None (it becomes an opaque layer)."""
    d = "" if domain in ONNX_DOMAINS else domain
    return (_CONVERTERS.get((d, op_type)) or _CONVERTERS.get((d, ANY_DOMAIN))
            or _CONVERTERS.get((ANY_DOMAIN, op_type)))


def shape_rule(*op_types: str, domain: str, dtype_from: int | None = 0) -> Callable[[ShapeRule], ShapeRule]:
    """Decorator: `fn` gives the output shapes of these op types of `domain`; the outputs take the element
    type of input `dtype_from` (None: float)."""

    def deco(fn: ShapeRule) -> ShapeRule:
        for op in op_types:
            if (domain, op) in _SHAPE_RULES:
                raise ValueError(f"ONNX op {op!r} (domain {domain!r}) has two shape rules")
            _SHAPE_RULES[(domain, op)] = (fn, dtype_from)
        return fn

    return deco


def lookup_shape_rule(op_type: str, domain: str) -> tuple[ShapeRule, int | None] | None:
    """The shape rule of an op of another domain and the input its outputs take their type from, or None."""
    return _SHAPE_RULES.get((domain, op_type))


def known_ops() -> list[str]:
    """Every ONNX op type with a converter (for docs and error messages)."""
    return sorted({op for d, op in _CONVERTERS if d == "" and op != ANY_DOMAIN})


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
