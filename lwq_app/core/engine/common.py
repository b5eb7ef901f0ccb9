"""Shared plumbing of the engine layer: the llama_cpp module, backend init, log capture."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator
from typing import Any

LogSink = Callable[[int, str], None]


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

    @lc.llama_log_callback
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


def backend_devices() -> tuple[str, str]:
    """llama-bench's ``backends`` and ``gpu_info`` fields for this build of llama.cpp.

    ``backends``: the registered ggml backends other than CPU, comma-joined ("CPU" if none);
    ``gpu_info``: the descriptions of GPU and integrated-GPU devices, ", "-joined."""
    from llama_cpp._ggml import libggml as g

    _backend_init()
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for name, res, args in (
        ("ggml_backend_reg_count", sz, []),
        ("ggml_backend_reg_get", vp, [sz]),
        ("ggml_backend_reg_name", ctypes.c_char_p, [vp]),
        ("ggml_backend_dev_count", sz, []),
        ("ggml_backend_dev_get", vp, [sz]),
        ("ggml_backend_dev_type", ctypes.c_int, [vp]),
        ("ggml_backend_dev_description", ctypes.c_char_p, [vp]),
    ):
        fn = getattr(g, name)
        fn.restype, fn.argtypes = res, args
    regs = [g.ggml_backend_reg_name(g.ggml_backend_reg_get(i)).decode() for i in
            range(g.ggml_backend_reg_count())]  # fmt: skip
    backends = [r for r in regs if r != "CPU" and not r.startswith("RPC")]
    gpus = []
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        if g.ggml_backend_dev_type(dev) in (1, 2):  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU
            gpus.append(g.ggml_backend_dev_description(dev).decode(errors="replace"))
    return (",".join(backends) or "CPU"), ", ".join(gpus)
