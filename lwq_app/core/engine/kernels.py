"""ggml's own quantize and dequantize kernels, via ctypes (``ggml_quantize_chunk``, ``to_float``).

Used to measure what a type does to a tensor's weights with exactly the code llama-quantize
runs, the importance matrix included.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .prototypes import GGML, TO_FLOAT


def requires_imatrix(type_id: int) -> bool:
    """Whether ggml refuses to quantize to this type without importance weights."""
    return bool(GGML.ggml_quantize_requires_imatrix(type_id))


def quantize_dequantize(
    type_id: int, rows: np.ndarray, imatrix: np.ndarray | None = None
) -> np.ndarray:
    """``rows`` (n, ne0) float32 → quantized with ggml_quantize_chunk → back to float32.

    ``imatrix`` is the ne0 importance weights llama-quantize would pass for these rows.
    """
    buf, n, ne0 = _quantize(type_id, rows, imatrix)
    traits = GGML.ggml_get_type_traits(type_id).contents
    if not traits.to_float:
        raise ValueError(f"ggml type {type_id} has no to_float")
    out = np.empty((n, ne0), np.float32)
    TO_FLOAT(traits.to_float)(
        buf.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n * ne0
    )
    return out


def quantize_rows(type_id: int, rows: np.ndarray, imatrix: np.ndarray | None = None) -> bytes:
    """The bytes llama-quantize writes for ``rows`` (n, ne0) as ``type_id``."""
    return _quantize(type_id, rows, imatrix)[0].tobytes()


def _quantize(
    type_id: int, rows: np.ndarray, imatrix: np.ndarray | None
) -> tuple[np.ndarray, int, int]:
    g = GGML
    x = np.ascontiguousarray(rows, dtype=np.float32)
    n, ne0 = x.shape
    if imatrix is None and requires_imatrix(type_id):
        raise ValueError(f"ggml type {type_id} needs an importance matrix")
    qw = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    if qw is not None and qw.size != ne0:
        raise ValueError(f"imatrix has {qw.size} weights for rows of {ne0}")
    row_bytes = int(g.ggml_row_size(type_id, ne0))
    buf = np.empty(row_bytes * n, np.uint8)
    written = g.ggml_quantize_chunk(
        type_id,
        x.ctypes.data,
        buf.ctypes.data,
        0,
        n,
        ne0,
        None if qw is None else qw.ctypes.data,
    )
    if written != row_bytes * n:
        raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes, expected {row_bytes * n}")
    return buf, n, ne0
