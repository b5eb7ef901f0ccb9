"""Hardware targets: the machine a model must run on and its memory budgets.

A target is this machine (``this_machine`` from the device list) or a named
``HardwareProfile`` for one the user does not have: the built-in ones, plus the user's in
``hardware-profiles.json`` in the data folder (hand-editable; a damaged file is an error
naming the file and the entry). A project keeps its ``TargetSpec``: the profile's memories
(the budget, editable), the context length and the layers offloaded to the GPU.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..jobs.atomic import atomic_write_text
from ..jobs.errors import InputError, OutputError, shown
from ..jobs.paths import data_dir
from .devices import Device, DeviceType

GIB = 1 << 30
PROFILES_FILE = "hardware-profiles.json"
PROFILES_FORMAT = "lwq-hardware-profiles"
#: ``gpu_layers`` meaning "every layer" (llama.cpp clamps it to n_layer + 1)
ALL_LAYERS = 999


@dataclass(frozen=True)
class HardwareProfile:
    """A machine to fit a model to. ``device_memory`` is 0 for a CPU-only machine; with
    ``unified`` memory (Apple silicon) it is the one pool the GPU and CPU share."""

    name: str
    backend: str  # "CPU", "CUDA", "Metal", "Vulkan", ...
    device_memory: int  # bytes
    host_memory: int  # bytes
    unified: bool
    description: str
    builtin: bool = False


def builtin_profiles() -> tuple[HardwareProfile, ...]:
    return (
        HardwareProfile(
            "16 GB Apple M-series", "Metal", 16 * GIB, 16 * GIB, True,
            "Apple silicon with 16 GB of unified memory; macOS lets the GPU use about "
            "two thirds of it by default", builtin=True,
        ),
        HardwareProfile(
            "24 GB RTX", "CUDA", 24 * GIB, 32 * GIB, False,
            "an NVIDIA GPU with 24 GB (RTX 3090/4090 class) in a PC with 32 GB of RAM",
            builtin=True,
        ),
        HardwareProfile(
            "8 GB laptop CPU", "CPU", 0, 8 * GIB, False,
            "a laptop without a usable GPU and 8 GB of RAM", builtin=True,
        ),
    )  # fmt: skip


def profiles_path() -> Path:
    return data_dir() / PROFILES_FILE


def _int_field(d: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise InputError(
            f"{where}: field {key!r} must be an integer >= {minimum}, not {shown(v, 40)}"
        )
    return v


def _str_field(d: Mapping[str, Any], key: str, where: str, *, empty: bool = False) -> str:
    v = d.get(key, "" if empty else None)
    if not isinstance(v, str) or (not empty and not v.strip()):
        raise InputError(f"{where}: field {key!r} must be a non-empty text, not {shown(v, 40)}")
    return v


def _bool_field(d: Mapping[str, Any], key: str, where: str) -> bool:
    v = d.get(key)
    if not isinstance(v, bool):
        raise InputError(f"{where}: field {key!r} must be true or false, not {shown(v, 40)}")
    return v


def _profile_from_json(d: object, where: str) -> HardwareProfile:
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object, not {shown(d, 40)}")
    return HardwareProfile(
        name=_str_field(d, "name", where),
        backend=_str_field(d, "backend", where),
        device_memory=_int_field(d, "device_memory", where),
        host_memory=_int_field(d, "host_memory", where, minimum=1),
        unified=_bool_field(d, "unified", where),
        description=_str_field(d, "description", where, empty=True),
    )


def load_profiles() -> tuple[HardwareProfile, ...]:
    """The built-in profiles, then the user's (a user profile of a built-in's name replaces
    it). A damaged file is an ``InputError`` naming the file and the entry."""
    path = profiles_path()
    builtin = list(builtin_profiles())
    if not path.exists():
        return tuple(builtin)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable hardware profiles ({e})") from None
    if not isinstance(d, dict) or d.get("format") != PROFILES_FORMAT:
        raise InputError(f"{path}: not an lwq hardware-profiles file")
    entries = d.get("profiles")
    if not isinstance(entries, list):
        raise InputError(f"{path}: 'profiles' must be a list")
    user: list[HardwareProfile] = []
    for i, entry in enumerate(entries):
        label = entry.get("name") if isinstance(entry, dict) else None
        where = f"{path}: profile {i + 1}" + (f" ({shown(label, 60)})" if label else "")
        p = _profile_from_json(entry, where)
        if any(u.name == p.name for u in user):
            raise InputError(f"{where}: a second profile named {p.name!r}")
        user.append(p)
    names = {u.name for u in user}
    return (*(b for b in builtin if b.name not in names), *user)


def save_profiles(profiles: Sequence[HardwareProfile]) -> None:
    """Write the user's profiles (the non-built-in ones of ``profiles``) atomically."""
    user = [p for p in profiles if not p.builtin]
    rows = [{k: v for k, v in asdict(p).items() if k != "builtin"} for p in user]
    names: set[str] = set()  # a user profile may replace a built-in one, not another's
    for i, row in enumerate(rows):
        _profile_from_json(row, f"profile {i + 1} ({shown(row.get('name'), 60)})")
        if row["name"] in names:
            raise InputError(
                f"profile {i + 1}: the name {shown(row['name'], 60)} is taken; "
                "each profile needs its own name"
            )
        names.add(row["name"])
    path = profiles_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path.parent}: cannot create the data folder ({e.strerror})") from None
    text = json.dumps({"format": PROFILES_FORMAT, "profiles": rows}, indent=1) + "\n"
    atomic_write_text(path, text)


def _is_gpu(d: Device) -> bool:
    return d.type in (DeviceType.GPU, DeviceType.IGPU)


def this_machine(devices: Sequence[Device]) -> HardwareProfile:
    """This machine as a profile: the backend of its first GPU (else CPU), that backend's
    total memory, and the CPU device's memory as the host's."""
    cpu = next((d for d in devices if d.type is DeviceType.CPU), None)
    gpus = [d for d in devices if _is_gpu(d)]
    backend = gpus[0].backend if gpus else "CPU"
    same = [d for d in gpus if d.backend == backend]
    unified = bool(same) and (backend == "Metal" or all(d.type is DeviceType.IGPU for d in same))
    parts = [f"{d.name}: {d.description}" for d in ([cpu] if cpu else []) + same]
    return HardwareProfile(
        name="This machine",
        backend=backend,
        device_memory=sum(d.memory_total for d in same),
        host_memory=cpu.memory_total if cpu is not None else 0,
        unified=unified,
        description="; ".join(parts),
    )


@dataclass(frozen=True)
class TargetSpec:
    """The target a project is planned for: a profile's memories (editable: the budget),
    the context length and the layers offloaded to the GPU (``ALL_LAYERS`` for all)."""

    profile: str
    backend: str
    device_memory: int
    host_memory: int
    unified: bool
    context: int = 4096
    gpu_layers: int = 0

    @staticmethod
    def from_profile(
        p: HardwareProfile, context: int = 4096, gpu_layers: int | None = None
    ) -> TargetSpec:
        """``gpu_layers`` None: all layers on a GPU backend, none on the CPU."""
        if gpu_layers is None:
            gpu_layers = 0 if p.backend == "CPU" else ALL_LAYERS
        return TargetSpec(
            p.name, p.backend, p.device_memory, p.host_memory, p.unified, context, gpu_layers
        )

    @property
    def memory_kind(self) -> Literal["cpu", "unified", "discrete"]:
        """``cpu``: everything in RAM; ``unified``: one pool (Apple silicon); ``discrete``: a
        GPU's own memory beside the RAM."""
        if self.backend == "CPU" or (self.device_memory == 0 and not self.unified):
            return "cpu"
        return "unified" if self.unified else "discrete"

    @property
    def device_budget(self) -> int:
        """Bytes the GPU may use (with unified memory the whole shared pool); 0 on a CPU."""
        return 0 if self.memory_kind == "cpu" else self.device_memory

    @property
    def host_budget(self) -> int:
        """Bytes of RAM; 0 with unified memory (everything counts against the one pool)."""
        return 0 if self.memory_kind == "unified" else self.host_memory

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: object, source: str = "target") -> TargetSpec:
        """Check every field's type (``InputError`` naming ``source`` and the field)."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: target must be an object, not {shown(d, 40)}")
        known = {f.name for f in fields(TargetSpec)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{source}: target has unknown field {shown(unknown[0], 40)!r}")
        where = f"{source}: target"
        return TargetSpec(
            profile=_str_field(d, "profile", where),
            backend=_str_field(d, "backend", where),
            device_memory=_int_field(d, "device_memory", where),
            host_memory=_int_field(d, "host_memory", where),
            unified=_bool_field(d, "unified", where),
            context=_int_field({"context": d.get("context", 4096)}, "context", where, 16),
            gpu_layers=_int_field({"gpu_layers": d.get("gpu_layers", 0)}, "gpu_layers", where),
        )
