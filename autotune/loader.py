"""Resolve a MODEL argument (zoo name or .onnx path) to a validated Graph."""

from __future__ import annotations

from pathlib import Path

from .errors import AutotuneError
from .graph import Graph


def load_graph(spec: str, batch: int | None = None, strict: bool = False) -> Graph:
    """A zoo network by name, or an ONNX file by path (`batch` overrides the file's batch size)."""
    if batch is not None and batch < 1:
        raise AutotuneError(f"--batch must be a positive integer, got {batch}")
    if spec.lower().endswith(".onnx") or "/" in spec or Path(spec).is_file():
        from .onnx_import import load_onnx

        return load_onnx(spec, batch=batch, strict=strict)
    from . import zoo

    if spec not in zoo.names():
        raise AutotuneError(f"unknown model {spec!r}: not a zoo network ({', '.join(zoo.names())}) nor an .onnx file")
    return zoo.build(spec, batch=batch or 1)
