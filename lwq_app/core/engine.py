"""The one module that talks to llama.cpp (through llama-cpp-python's ctypes bindings).

It owns every native handle and speaks ctypes; everything above it speaks in domain terms.
Functions here run *in the calling process*: long jobs call them inside a child process
(``childproc.run_in_child``) so that cancel can kill the process and a native crash never
takes the caller down.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LogSink = Callable[[int, str], None]

#: "[  12/ 272] blk.0.attn_q.weight - [576, 576, 1, 1], type = f16, ..."
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
#: the type llama.cpp chose, at the end of a dry-run line: "... MiB (q5_0)"
_DRY_TYPE = re.compile(r"\((\w+)\)\s*$")


def _lib() -> Any:
    import llama_cpp

    return llama_cpp


def llama_cpp_version() -> str:
    import llama_cpp

    return str(getattr(llama_cpp, "__version__", "unknown"))


_backend_ready = False


def _backend_init() -> None:
    global _backend_ready
    if not _backend_ready:
        _lib().llama_backend_init()
        _backend_ready = True


@contextlib.contextmanager
def captured_log(sink: LogSink | None) -> Iterator[None]:
    """Route llama.cpp's log through ``sink(level, line)`` (whole lines) while active."""
    lc = _lib()
    _init_null_log()
    pending: list[str] = []

    @lc.llama_log_callback  # type: ignore[untyped-decorator]
    def _cb(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        pending.append(text.decode("utf-8", "replace"))
        joined = "".join(pending)
        if "\n" in joined:
            *lines, rest = joined.split("\n")
            pending.clear()
            if rest:
                pending.append(rest)
            if sink is not None:
                for line in lines:
                    sink(int(level), line)

    lc.llama_log_set(_cb, ctypes.c_void_p(0))
    try:
        yield
    finally:
        if pending and sink is not None:
            sink(0, "".join(pending))
        lc.llama_log_set(_null_log, ctypes.c_void_p(0))


def _silent(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    return None


_null_log: Any = None


def _init_null_log() -> None:
    global _null_log
    if _null_log is None:
        _null_log = _lib().llama_log_callback(_silent)


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


# --- libggml type traits (for checking the type catalog against ggml itself) -------------


def ggml_type_traits(type_id: int) -> tuple[int, int, str]:
    """(block size, bytes per block, name) of a ggml type, straight from libggml."""
    from llama_cpp._ggml import libggml

    libggml.ggml_blck_size.restype = ctypes.c_int64
    libggml.ggml_blck_size.argtypes = [ctypes.c_int]
    libggml.ggml_type_size.restype = ctypes.c_size_t
    libggml.ggml_type_size.argtypes = [ctypes.c_int]
    libggml.ggml_type_name.restype = ctypes.c_char_p
    libggml.ggml_type_name.argtypes = [ctypes.c_int]
    name = libggml.ggml_type_name(type_id)
    return (
        int(libggml.ggml_blck_size(type_id)),
        int(libggml.ggml_type_size(type_id)),
        (name or b"").decode(),
    )


# --- evaluation helpers (a fuller evaluator arrives with the evaluation issue) ------------


@contextlib.contextmanager
def loaded_model(path: str, n_ctx: int = 512, threads: int = 0, logits_all: bool = True) -> Iterator[Any]:
    """A ``llama_cpp.Llama`` for ``path``, closed on exit."""
    from llama_cpp import Llama

    _init_null_log()
    kwargs: dict[str, Any] = {
        "model_path": path,
        "n_ctx": n_ctx,
        "n_batch": n_ctx,
        "logits_all": logits_all,
        "verbose": False,
    }
    if threads:
        kwargs["n_threads"] = threads
    with captured_log(None):
        llm = Llama(**kwargs)
    try:
        yield llm
    finally:
        llm.close()


def perplexity(path: str, text: str, n_ctx: int = 256, max_chunks: int = 4, threads: int = 0) -> float:
    """Perplexity over non-overlapping ``n_ctx`` windows, scoring each window's second half.

    This is llama-perplexity's scheme (BOS first, first half as context); the evaluation
    issue replaces it with the batched, cancellable evaluator.
    """
    with loaded_model(path, n_ctx, threads) as llm:
        tokens = llm.tokenize(text.encode(), add_bos=False)
        bos = llm.token_bos()
        nll, count = 0.0, 0
        n_chunks = min(max_chunks, len(tokens) // n_ctx)
        if n_chunks < 1:
            raise ValueError(f"text has {len(tokens)} tokens, fewer than one chunk of {n_ctx}")
        for c in range(n_chunks):
            chunk = list(tokens[c * n_ctx : (c + 1) * n_ctx])
            chunk[0] = bos
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[: len(chunk)], dtype=np.float64)
            first = n_ctx // 2
            for j in range(first, n_ctx - 1):
                row = logits[j]
                mx = row.max()
                lse = mx + math.log(np.exp(row - mx).sum())
                nll += lse - row[chunk[j + 1]]
                count += 1
        return math.exp(nll / count)


def greedy_completion(path: str, prompt: str, n_tokens: int = 24, threads: int = 0) -> str:
    with loaded_model(path, 256, threads, logits_all=False) as llm:
        out = llm(prompt, max_tokens=n_tokens, temperature=0.0, top_k=1)
        return str(out["choices"][0]["text"])
