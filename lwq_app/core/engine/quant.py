"""llama_model_quantize through ctypes (run it in a child process: it cannot be cancelled)."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import _backend_init, _init_null_log, _lib, captured_log

#: "[  12/ 272] blk.0.attn_q.weight - [576, 576, 1, 1], type = f16, ..."
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
#: the type llama.cpp chose, at the end of a dry-run line: "... MiB (q5_0)"
_DRY_TYPE = re.compile(r"\((\w+)\)\s*$")


@dataclass(frozen=True)
class NativeQuantizeResult:
    ok: bool
    log: tuple[str, ...]
    dry_run_types: dict[str, str]


def quantize_file(
    src: str,
    dst: str,
    *,
    ftype: int,
    overrides: Sequence[tuple[str, int]] = (),
    imatrix: dict[str, np.ndarray] | None = None,
    kv: Sequence[tuple[str, int | str]] = (),
    threads: int = 0,
    pure: bool = True,
    dry_run: bool = False,
    allow_requantize: bool = False,
    on_tensor: Callable[[int, int, str], None] | None = None,
) -> NativeQuantizeResult:
    """Call ``llama_model_quantize``. Blocking and not cancellable: run it in a child process.

    ``overrides`` are (regex, ggml type id) pairs passed as ``tt_overrides``; ``imatrix`` maps
    tensor names to flat float32 weights; ``kv`` entries become metadata overrides (strings of
    at most 127 bytes, ints). ``on_tensor(i, n, name)`` is called as each tensor starts.
    """
    lc = _lib()
    _init_null_log()
    _backend_init()
    keep: list[Any] = []  # every ctypes object referenced by params stays alive until return
    params = lc.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = ftype
    params.pure = pure
    params.dry_run = dry_run
    params.allow_requantize = allow_requantize

    if overrides:
        arr = (lc.llama_model_tensor_override * (len(overrides) + 1))()
        for i, (pattern, type_id) in enumerate(overrides):
            b = pattern.encode()
            keep.append(b)
            arr[i].pattern = b
            arr[i].type = type_id
        arr[len(overrides)].pattern = None
        keep.append(arr)
        params.tt_overrides = ctypes.cast(arr, ctypes.POINTER(lc.llama_model_tensor_override))

    if imatrix:
        arr_i = (lc.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            v = np.ascontiguousarray(values, dtype=np.float32)
            nb = name.encode()
            keep.extend((v, nb))
            arr_i[i].name = nb
            arr_i[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr_i[i].size = v.size
        arr_i[len(imatrix)].name = None
        keep.append(arr_i)
        params.imatrix = ctypes.cast(arr_i, ctypes.POINTER(lc.llama_model_imatrix_data))

    if kv:
        arr_kv = (lc.llama_model_kv_override * (len(kv) + 1))()
        for i, (key, value) in enumerate(kv):
            arr_kv[i].key = key.encode()[:127]
            if isinstance(value, str):
                raw = value.encode()
                if len(raw) > 127:
                    raise ValueError(f"metadata value for {key} is longer than 127 bytes")
                arr_kv[i].tag = lc.LLAMA_KV_OVERRIDE_TYPE_STR
                arr_kv[i].value.val_str = raw
            else:
                arr_kv[i].tag = lc.LLAMA_KV_OVERRIDE_TYPE_INT
                arr_kv[i].value.val_i64 = int(value)
        arr_kv[len(kv)].key = b""
        keep.append(arr_kv)
        params.kv_overrides = ctypes.cast(arr_kv, ctypes.POINTER(lc.llama_model_kv_override))

    log: list[str] = []
    types: dict[str, str] = {}

    def sink(level: int, line: str) -> None:
        log.append(line)
        m = _TENSOR_LINE.match(line.strip())
        if m:
            i, n, name = int(m.group(1)), int(m.group(2)), m.group(3)
            if dry_run:
                t = _DRY_TYPE.search(line)
                if t:
                    types[name] = t.group(1).upper()
            if on_tensor is not None:
                on_tensor(i, n, name)

    with captured_log(sink):
        rc = lc.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    del keep
    return NativeQuantizeResult(rc == 0, tuple(log), types)
