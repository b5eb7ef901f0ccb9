"""Shared plumbing of the engine layer: the llama_cpp module, backend init, log capture,
ggml type traits and the backend list."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from ..jobs.errors import shown
from .prototypes import GGML

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


#: the CPU extra buffer type that crashes (``ggml_backend_amx_mul_mat`` segfaults on Sapphire
#: Rapids: llama.cpp #20824, open without a fix). On this project's AMX machines every decode
#: of a Q4_0, Q8_0 or Q4_K tensor of SmolLM2 died with SIGSEGV, Q5_0 (no AMX kernel) did not.
_CRASHING_CPU_FEATURE = "AMX_INT8 = 1"


def cpu_extra_buffers_safe() -> bool:
    """Whether llama.cpp's CPU extra buffer types (AMX, repacked layouts) may be used here.

    They may not on a CPU with AMX: llama.cpp offers no switch for AMX alone, so there both
    go (the weights stay in the plain CPU buffer, as with ``--no-extra-bufts``, slower on
    repacked Q4_0 but correct). ``LWQ_CPU_EXTRA_BUFFERS=1`` forces them on (a build known
    to be fixed), ``=0`` off."""
    forced = os.environ.get("LWQ_CPU_EXTRA_BUFFERS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    _backend_init()
    info = _lib().llama_print_system_info().decode("utf-8", "replace")
    return _CRASHING_CPU_FEATURE not in info


def model_params(gpu_layers: int = 0) -> Any:
    """llama.cpp's default model parameters with ``gpu_layers`` offloaded and the CPU's
    extra buffer types off where they crash (``cpu_extra_buffers_safe``)."""
    mp = _lib().llama_model_default_params()
    mp.n_gpu_layers = gpu_layers
    if not cpu_extra_buffers_safe():
        mp.use_extra_bufts = False
    return mp


@contextlib.contextmanager
def safe_default_model_params() -> Iterator[None]:
    """While active, ``llama_cpp.Llama`` builds its model parameters with ``model_params``
    (it takes no argument for the extra buffer types)."""
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params
    if cpu_extra_buffers_safe():
        yield
        return

    def patched() -> Any:
        mp = original()
        mp.use_extra_bufts = False
        return mp

    low.llama_model_default_params = patched
    try:
        yield
    finally:
        low.llama_model_default_params = original


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


#: ggml_log_level values
LOG_WARN = 3
LOG_ERROR = 4


class LogTail:
    """A log sink that keeps llama.cpp's last lines (and passes each on to ``sink``), so a
    failure can quote llama.cpp's own reason instead of "failed to load model"."""

    def __init__(self, sink: LogSink | None = None, keep: int = 200) -> None:
        self._sink = sink
        self._keep = keep
        self.lines: list[tuple[int, str]] = []

    def __call__(self, level: int, line: str) -> None:
        self.lines.append((level, line))
        if len(self.lines) > 2 * self._keep:
            del self.lines[: -self._keep]
        if self._sink is not None:
            self._sink(level, line)

    def reason(self) -> str:
        """llama.cpp's reason for the last failure, one line ("" if it said nothing useful):
        the text after "error loading model:", unless that is only "failed to load model",
        then the first error-level line that says more (gguf's own complaint)."""
        texts = [(lv, ln.strip()) for lv, ln in self.lines if ln.strip()]
        why = ""
        for _, ln in reversed(texts):
            _head, sep, rest = ln.partition("error loading model:")
            if sep and rest.strip():
                why = rest.strip()
                break
        if not why or _GENERIC.search(why):
            errors = [ln for lv, ln in texts if lv == LOG_ERROR and not _GENERIC.search(ln)]
            if errors:
                why = _FUNCTION.sub("", errors[0])
        return shown(why, 300) if why else ""


#: llama.cpp's lines that only say that something failed
_GENERIC = re.compile(r"failed to load model|error loading model|failed to read header")
#: the C function a llama.cpp log line starts with ("gguf_init_from_reader: ")
_FUNCTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_:]*: ")


def with_reason(message: str, tail: LogTail) -> str:
    """``message`` plus llama.cpp's own reason, where it gave one."""
    why = tail.reason()
    return f"{message}: {why}" if why else message


def _silent(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    return None


_null_log: Any = None


def _init_null_log() -> None:
    global _null_log
    if _null_log is None:
        _null_log = _lib().llama_log_callback(_silent)


# --- libggml type traits and backends --------------------------------------------------


def ggml_type_traits(type_id: int) -> tuple[int, int, str]:
    """(block size, bytes per block, name) of a ggml type, straight from libggml."""
    name = GGML.ggml_type_name(type_id)
    return (
        int(GGML.ggml_blck_size(type_id)),
        int(GGML.ggml_type_size(type_id)),
        (name or b"").decode(),
    )


def backend_devices() -> tuple[str, str]:
    """llama-bench's ``backends`` and ``gpu_info`` fields for this build of llama.cpp.

    ``backends``: the registered ggml backends other than CPU, comma-joined ("CPU" if none);
    ``gpu_info``: the descriptions of GPU and integrated-GPU devices, ", "-joined."""
    g = GGML
    _backend_init()
    regs = [g.ggml_backend_reg_name(g.ggml_backend_reg_get(i)).decode() for i in
            range(g.ggml_backend_reg_count())]  # fmt: skip
    backends = [r for r in regs if r != "CPU" and not r.startswith("RPC")]
    gpus = []
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        if g.ggml_backend_dev_type(dev) in (1, 2):  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU
            gpus.append(g.ggml_backend_dev_description(dev).decode(errors="replace"))
    return (",".join(backends) or "CPU"), ", ".join(gpus)


def backend_device_list() -> list[tuple[str, str, str, int, int, int]]:
    """(name, description, backend, type id, total bytes, free bytes) of each ggml device,
    in ggml's order (``llama-cli --list-devices``); the type id is ggml_backend_dev_type's."""
    g = GGML
    _backend_init()
    out = []
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        g.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        reg = g.ggml_backend_dev_backend_reg(dev)
        out.append(
            (
                g.ggml_backend_dev_name(dev).decode(errors="replace"),
                g.ggml_backend_dev_description(dev).decode(errors="replace"),
                g.ggml_backend_reg_name(reg).decode(errors="replace") if reg else "",
                int(g.ggml_backend_dev_type(dev)),
                int(total.value),
                int(free.value),
            )
        )
    return out
