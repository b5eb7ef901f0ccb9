"""Upcast a GGUF to F16/BF16/F32 as a new source file.

llama.cpp refuses to requantize a quantized model by default (it compounds error), so a
quantized GGUF is first expanded to floats with gguf-py's reference dequantizers and written
as a new file with all metadata kept (``general.file_type`` updated). 1-D tensors (norms)
keep F32. Runs in-process in numpy, one tensor at a time, and checks cancel between tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .fileio import atomic_output, check_free_space
from .mixes import PRESETS
from .model import _open_reader, open_model, split_paths
from .progress import CancelToken, Progress, ProgressSink, Stage, no_progress

#: transform(name, float32 weights, source reader tensor) -> float32 weights
Transform = Callable[[str, np.ndarray, Any], np.ndarray]

_TARGETS = {"F16": np.float16, "F32": np.float32, "BF16": None}


@dataclass(frozen=True)
class UpcastResult:
    output: Path
    n_tensors: int
    n_converted: int
    bytes_written: int
    seconds: float


def _to_bf16_bytes(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even), as raw uint16."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = u + (0x7FFF + ((u >> 16) & 1))
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(a)
    out[nan] = 0x7FC0
    return out


def _copy_fields(reader: Any, writer: Any, file_type: int) -> None:
    from gguf import GGUFValueType

    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or not field.types:
            continue
        if key == "general.file_type":
            writer.add_uint32(key, file_type)
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    if reader.get_field("general.file_type") is None:
        writer.add_uint32("general.file_type", file_type)


def upcast(
    src: str | Path,
    dst: str | Path,
    *,
    target: str = "F16",
    transform: Transform | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> UpcastResult:
    """Write ``dst``: every quantized tensor of ``src`` dequantized to ``target``."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import dequantize

    target = target.upper()
    if target not in _TARGETS:
        raise InputError(f"upcast target must be F16, BF16 or F32, not {target}")
    t0 = time.monotonic()
    src_p, dst_p = Path(src), Path(dst)
    if split_paths(src_p)[0].resolve() == dst_p.resolve():
        raise InputError(f"{dst_p}: output would overwrite the input")
    info = open_model(src_p)
    if len(info.paths) > 1:
        raise InputError(f"{src_p}: upcast of split models is not supported yet; merge it first")
    reader = _open_reader(src_p)
    out_type = GGMLQuantizationType[target]
    elem = 2 if target in ("F16", "BF16") else 4
    need = sum(t.n_params * elem if len(t.shape) >= 2 else t.n_bytes for t in info.tensors)
    check_free_space(dst_p, need)
    n_conv = 0
    total = len(reader.tensors)
    progress(Progress(Stage.UPCAST, 0, total, "start"))
    with atomic_output(dst_p) as tmp:
        w = GGUFWriter(tmp, arch=info.architecture)
        _copy_fields(reader, w, PRESETS[target].ftype)
        plans = []
        for rt in reader.tensors:
            qt = GGMLQuantizationType(int(rt.tensor_type))
            convert = len(rt.shape) >= 2 and (qt != out_type or transform is not None)
            np_shape = tuple(int(d) for d in reversed(rt.shape))
            if convert:
                n = int(np.prod(np_shape))
                w.add_tensor_info(
                    rt.name, np_shape, np.dtype(np.float16), n * elem, raw_dtype=out_type
                )
            else:
                w.add_tensor_info(
                    rt.name, rt.data.shape, rt.data.dtype, int(rt.n_bytes), raw_dtype=qt
                )
            plans.append((rt, qt, convert, np_shape))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for i, (rt, qt, convert, np_shape) in enumerate(plans):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if convert:
                f32 = np.asarray(dequantize(rt.data, qt), dtype=np.float32).reshape(np_shape)
                if transform is not None:
                    f32 = transform(rt.name, f32, rt)
                if target == "F16":
                    data = f32.astype(np.float16)
                elif target == "BF16":
                    data = _to_bf16_bytes(f32)
                else:
                    data = f32.astype(np.float32)
                w.write_tensor_data(np.ascontiguousarray(data))
                n_conv += 1
            else:
                w.write_tensor_data(np.ascontiguousarray(rt.data))
            progress(Progress(Stage.UPCAST, i + 1, total, rt.name))
        w.close()
        written = tmp.stat().st_size
    return UpcastResult(dst_p, total, n_conv, written, time.monotonic() - t0)
