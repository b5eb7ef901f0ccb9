"""The compute devices llama.cpp sees: the CPU and whatever GPU backends this build has.

``list_devices`` asks ggml's backend registry in a child process, so llama.cpp is never
loaded into the caller (the GUI lists devices before any model is chosen).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from ..jobs.boundary import public_job
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
    #: hardware threads of the CPU device (0 for the others)
    threads: int = 0


@public_job("devices")
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
    from ..engine.common import backend_device_list

    kinds = list(DeviceType)
    out = []
    for name, desc, backend, kind, total, free in backend_device_list():
        dtype = kinds[kind] if 0 <= kind < len(kinds) else DeviceType.ACCEL
        threads = (os.cpu_count() or 0) if dtype is DeviceType.CPU else 0
        out.append(Device(name, desc, backend, dtype, total, free, threads))
    return tuple(out)
