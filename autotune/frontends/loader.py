"""Resolve a MODEL argument (zoo name or .onnx path) to a validated Graph."""

from __future__ import annotations

from pathlib import Path

from autotune.errors import AutotuneError
from autotune.frontends import zoo
from autotune.frontends.onnx_batch import symbolic_names
from autotune.frontends.onnx_import import load_onnx
from autotune.ir.graph import Graph


def _is_file(spec: str) -> bool:
    return spec.lower().endswith(".onnx") or "/" in spec or Path(spec).is_file()


def _zoo_params(spec: str):
    """A zoo network's size parameters, or the one error for a name that is no network."""
    if spec not in zoo.names():
        raise AutotuneError(f"unknown model {spec!r}: not a zoo network ({', '.join(zoo.names())}) nor an .onnx file")
    return zoo.params(spec)


def dim_names(spec: str) -> set[str]:
    """The --dim names a network takes: an ONNX file's symbolic dimensions, a zoo network's size
    parameters."""
    return set(symbolic_names(spec)) if _is_file(spec) else set(_zoo_params(spec))


def load_graph(spec: str, batch: int | None = None, strict: bool = False, dims: dict[str, int] | None = None,
               lenient_dims: bool = False) -> Graph:
    """A zoo network by name, or an ONNX file by path. `batch` overrides the file's batch size; `dims`
    sets an ONNX file's symbolic dimensions by name, or a zoo network's size parameters (e.g. `seq`).
    A name nothing takes is an error, unless `lenient_dims` (one --dim for many networks)."""
    if batch is not None and batch < 1:
        raise AutotuneError(f"--batch must be a positive integer, got {batch}")
    dims = dict(dims or {})
    if _is_file(spec):
        if lenient_dims and dims:
            dims = {k: v for k, v in dims.items() if k in symbolic_names(spec)}
        return load_onnx(spec, batch=batch, strict=strict, dims=dims)

    params = _zoo_params(spec)
    if lenient_dims:
        dims = {k: v for k, v in dims.items() if k in params}
    return zoo.build(spec, batch=batch or 1, **dims)
