"""The upcast job: a GGUF expanded to F16/BF16/F32 as a new source file.

llama.cpp refuses to requantize a quantized model by default (it compounds error), so a
quantized GGUF is first expanded to floats with gguf-py's reference dequantizers and written
as a new file with all metadata kept (``general.file_type`` updated). 1-D tensors (norms)
keep F32. The header is read with the fast reader and every key/value record is copied byte
for byte (gguf-py's reader and writer spend seconds on a large vocabulary, out of reach of
cancel); tensors are converted in numpy one at a time, with one ``Phase.UPCAST`` event per
tensor and cancel checked between tensors.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..jobs.atomic import atomic_output, check_free_space, check_writable_dir
from ..jobs.errors import InputError, ModelFileError
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from .gguf_header import GGUFHeader, RawTensor, read_header, split_paths
from .type_catalog import FLOAT_FTYPES, TYPES

#: transform(name, float32 weights, source tensor) -> float32 weights
Transform = Callable[[str, np.ndarray, Any], np.ndarray]

TARGETS = ("F16", "BF16", "F32")
_GGUF_VERSION = 3
_U32 = 4  # GGUF value type id of uint32
#: tensors above this many weights are converted in row blocks of about this size
ROWS_STEP_PARAMS = 4 << 20


@dataclass(frozen=True)
class UpcastRequest:
    """Expand ``model`` into ``output`` with every quantized tensor as ``type``.

    ``transform`` (for tools and test fixtures) changes each converted tensor's float32
    weights before they are written."""

    model: Path
    output: Path
    type: str = "F16"
    transform: Transform | None = None


@dataclass(frozen=True)
class UpcastResult:
    output: Path
    n_tensors: int
    n_converted: int
    bytes_written: int
    seconds: float


@dataclass(frozen=True)
class SourceTensor:
    """A source tensor as a ``Transform`` sees it: raw data and gguf-py's type."""

    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    data: np.ndarray


def _to_bf16_bytes(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even), as raw uint16."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = u + (0x7FFF + ((u >> 16) & 1))
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(a)
    out[nan] = 0x7FC0
    return out


def _gguf_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _kv_records(header: GGUFHeader, file_type: int) -> list[bytes]:
    """The source's key/value records verbatim, architecture first, the file type replaced."""
    with header.path.open("rb") as f:
        blob = f.read(header.data_start)

    def raw(key: str) -> bytes:
        a, b = header.kv_spans[key]
        return blob[a:b]

    ft = _gguf_string("general.file_type") + struct.pack("<II", _U32, file_type)
    keys = [k for k in header.kv_spans if k != "general.architecture"]
    out = [raw("general.architecture")]
    out += [ft if k == "general.file_type" else raw(k) for k in keys]
    if "general.file_type" not in header.kv_spans:
        out.append(ft)
    return out


def _pad(f: BinaryIO, align: int) -> None:
    f.write(b"\0" * (-f.tell() % align))


def _convert(
    rt: RawTensor, data: np.ndarray, target: str, transform: Transform | None
) -> np.ndarray:
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    qt = GGMLQuantizationType(rt.type_id)
    np_shape = tuple(reversed(rt.shape))
    f32 = np.asarray(dequantize(data, qt), dtype=np.float32).reshape(np_shape)
    if transform is not None:
        f32 = transform(rt.name, f32, SourceTensor(rt.name, qt, data))
    if target == "F16":
        return np.ascontiguousarray(f32.astype(np.float16))
    if target == "BF16":
        return _to_bf16_bytes(f32)
    return np.ascontiguousarray(f32, dtype=np.float32)


def _convert_rows(rt: RawTensor, rows: np.ndarray, target: str) -> np.ndarray:
    """Rows of a 2-D view of ``rt``'s data (no transform), converted to ``target``."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    f32 = np.asarray(dequantize(rows, GGMLQuantizationType(rt.type_id)), dtype=np.float32)
    if target == "F16":
        return np.ascontiguousarray(f32.astype(np.float16))
    if target == "BF16":
        return _to_bf16_bytes(f32)
    return np.ascontiguousarray(f32)


def upcast(
    request: UpcastRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> UpcastResult:
    """Write ``request.output``: every quantized tensor of ``request.model`` as floats."""
    check(cancel)
    target = request.type.upper()
    if target not in TARGETS:
        raise InputError(f"upcast target must be F16, BF16 or F32, not {request.type}")
    t0 = time.monotonic()
    src_p, dst_p = Path(request.model), Path(request.output)
    shards = split_paths(src_p)
    if shards[0].resolve() == dst_p.resolve():
        raise InputError(f"{dst_p}: output would overwrite the input")
    if len(shards) > 1:
        raise InputError(f"{src_p}: upcast of split models is not supported yet; merge it first")
    header = read_header(src_p)
    if not isinstance(header.metadata.get("general.architecture"), str):
        raise ModelFileError(f"{src_p}: no general.architecture key: not a model GGUF")
    out_id = TYPES[target].ggml_id
    elem = TYPES[target].type_size
    converts = [
        len(rt.shape) >= 2 and (rt.type_id != out_id or request.transform is not None)
        for rt in header.tensors
    ]
    sizes = [
        _n_params(rt) * elem if conv else rt.n_bytes
        for rt, conv in zip(header.tensors, converts, strict=True)
    ]
    check_writable_dir(dst_p)
    check_free_space(dst_p, sum(sizes))
    kv = _kv_records(header, FLOAT_FTYPES[target])
    align = header.alignment
    total = len(header.tensors)
    with atomic_output(dst_p) as tmp, tmp.open("wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", _GGUF_VERSION, total, len(kv)))
        f.writelines(kv)
        offset = 0
        for rt, conv, size in zip(header.tensors, converts, sizes, strict=True):
            f.write(_gguf_string(rt.name) + struct.pack("<I", len(rt.shape)))
            f.write(struct.pack(f"<{len(rt.shape)}Q", *rt.shape))
            f.write(struct.pack("<IQ", out_id if conv else rt.type_id, offset))
            offset += size + (-size % align)
        _pad(f, align)
        progress(Progress(Phase.UPCAST, 0, total, header.tensors[0].name if total else ""))
        for i, (rt, conv) in enumerate(zip(header.tensors, converts, strict=True)):
            check(cancel)
            data = header.tensor_array(rt)
            if not conv:
                f.write(np.ascontiguousarray(data).tobytes())
            elif request.transform is not None or _n_params(rt) <= ROWS_STEP_PARAMS:
                f.write(_convert(rt, data, target, request.transform).tobytes())
            else:  # a large tensor in row blocks: cancel and progress within it
                rows = data.reshape(-1, data.shape[-1])
                step = max(1, ROWS_STEP_PARAMS // rt.shape[0])
                for r0 in range(0, len(rows), step):
                    if r0:
                        check(cancel)
                        progress(Progress(Phase.UPCAST, i + r0 / len(rows), total, rt.name))
                    f.write(_convert_rows(rt, rows[r0 : r0 + step], target).tobytes())
            _pad(f, align)
            progress(Progress(Phase.UPCAST, i + 1, total, rt.name))
        f.flush()
        written = f.tell()
    n_conv = sum(converts)
    return UpcastResult(dst_p, total, n_conv, written, time.monotonic() - t0)


def _n_params(rt: RawTensor) -> int:
    n = 1
    for d in rt.shape:
        n *= d
    return n
