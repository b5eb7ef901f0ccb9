"""The compute devices llama.cpp sees: the CPU and whatever GPU backends this build has.

``list_devices`` asks ggml's backend registry in a child process, so llama.cpp is never
loaded into the caller (the GUI lists devices before any model is chosen).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress


class DeviceType(str, Enum):
    """ggml's ``ggml_backend_dev_type``."""

    CPU = "cpu"
    GPU = "gpu"
    IGPU = "igpu"  # an integrated GPU, sharing the host's memory
    ACCEL = "accel"  # an accelerator used beside the CPU (BLAS, AMX)


@dataclass(frozen=True)
class DevicesRequest:
    """List the devices (no inputs)."""


@dataclass(frozen=True)
class Device:
    """One ggml backend device, as ``llama-cli --list-devices`` shows it."""

    name: str  # "CPU", "CUDA0", "Metal"
    description: str
    backend: str  # the backend registry it belongs to: "CPU", "CUDA", "Metal", ...
    type: DeviceType
    memory_total: int  # bytes
    memory_free: int  # bytes


def list_devices(
    request: DevicesRequest = DevicesRequest(),
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[Device, ...]:
    """Every device of this llama.cpp build, in ggml's order (CPU included)."""
    check(cancel)
    rows: tuple[Device, ...] = run_in_child(
        "lwq_app.core.evaluate.devices:child_devices", {}, progress=progress, cancel=cancel
    )
    return rows


def child_devices(ctx: ChildContext) -> tuple[Device, ...]:
    kinds = list(DeviceType)
    return tuple(
        Device(name, desc, backend, kinds[kind] if 0 <= kind < len(kinds) else DeviceType.ACCEL,
               total, free)
        for name, desc, backend, kind, total, free in _backend_device_list()
    )  # fmt: skip


def _backend_device_list() -> list[tuple[str, str, str, int, int, int]]:
    """(name, description, backend, type id, total bytes, free bytes) of each ggml device.

    ctypes belongs in the engine: this is meant to move to ``engine.common`` beside
    ``backend_devices`` (its owner's call), and ``child_devices`` to call it there."""
    import ctypes

    from llama_cpp._ggml import libggml as g

    from ..engine.common import _backend_init

    _backend_init()
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for fname, res, args in (
        ("ggml_backend_dev_count", sz, []),
        ("ggml_backend_dev_get", vp, [sz]),
        ("ggml_backend_dev_name", ctypes.c_char_p, [vp]),
        ("ggml_backend_dev_description", ctypes.c_char_p, [vp]),
        ("ggml_backend_dev_type", ctypes.c_int, [vp]),
        ("ggml_backend_dev_memory", None, [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)]),
        ("ggml_backend_dev_backend_reg", vp, [vp]),
        ("ggml_backend_reg_name", ctypes.c_char_p, [vp]),
    ):
        fn = getattr(g, fname)
        fn.restype, fn.argtypes = res, args
    out = []
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        free, total = sz(0), sz(0)
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
