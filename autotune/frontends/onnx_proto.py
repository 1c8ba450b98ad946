"""Read an ONNX file's ModelProto without its large tensor payloads.

The file is memory-mapped and its protobuf wire format walked by hand, copying every field except tensor
payloads over SMALL_PAYLOAD bytes and external-data references, so a 500 MB model reads in the time a
small one does and no path inside the file is ever followed.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Iterator

import numpy as np

from autotune.errors import GraphError

#: Tensor payloads up to this size are kept (shape targets, scales, axes); larger ones are dropped unread.
SMALL_PAYLOAD = 4096


class Corrupt(Exception):
    """The wire format is broken (truncated or not protobuf)."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise Corrupt("varint too long")


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field number, wire type, field start, value start, value end) of one message."""
    pos = start
    while pos < end:
        fstart = pos
        tag, pos = _varint(buf, pos, end)
        fno, wt = tag >> 3, tag & 7
        if fno == 0:
            raise Corrupt("field number 0")
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
            raise Corrupt(f"unsupported wire type {wt}")
        if pos > end:
            raise Corrupt("field runs past the end of its message")
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
    except Corrupt as err:
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


def tensor_value(t) -> np.ndarray | None:
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
