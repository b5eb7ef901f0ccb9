"""Hardware targets and the memory picture: will the model, as each stock mix, fit?

``target_fit`` sets, for F16 and every stock mix, the weights, KV cache and compute buffers
against the budgets of a ``TargetSpec`` (``hardware``: this machine or a named profile).

Where things go follows the pinned llama.cpp (``llama_model::load_tensors``): with
``gpu_layers`` = k, the output layer goes to the GPU first, then the last k - 1 repeating
layers (``i_gpu_start = n_layer + 1 - k``); the input layer (``token_embd``) always stays on
the host, and a tied output is a second copy of ``token_embd`` on the output's device. Each
layer's KV cache lives with its layer; the output (logits) buffer is host memory. A CPU
target keeps everything on the host; unified memory (Apple silicon) is one budget.

The buffers come from a real llama.cpp context (``measure_buffers``), cached per (model hash,
context, GPU layers, backend) under ``cache_dir("buffers")``. They are *measured* when the
target's backend is one of this machine's; for another backend they are measured on the CPU
and split by the rules above: an estimate.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from ..jobs.atomic import atomic_write_text
from ..jobs.boundary import public_job
from ..jobs.errors import InputError, LwqError, PlanError, shown
from ..jobs.paths import cache_dir
from ..jobs.progress import CancelToken, Phase, Phases, Progress, ProgressSink, check, no_progress
from ..modelfile.hashing import model_hash
from ..modelfile.inventory import ModelInfo, open_model, tensor_kind, tensor_layer
from ..plan.quant_plan import QuantPlan, plan_from_preset
from ..plan.stock_mixes import QUANT_PRESETS, check_preset
from .devices import Device
from .hardware import (
    ALL_LAYERS,
    HardwareProfile,
    TargetSpec,
    builtin_profiles,
    load_profiles,
    save_profiles,
    this_machine,
)
from .memory_fit import RuntimeBuffers, measure_buffers

#: the mixes ``target_fit`` shows by default: F16, then every quantized stock mix
DEFAULT_MIXES: tuple[str, ...] = ("F16", *QUANT_PRESETS)
#: tensor kinds of llama.cpp's input layer, kept on the host
_INPUT_KINDS = frozenset({"token_embd", "token_embd_norm", "token_types", "position_embd"})
BUFFERS_VERSION = 1

# the hardware names, importable from here too
__all__ = [
    "ALL_LAYERS",
    "DEFAULT_MIXES",
    "HardwareProfile",
    "MixFit",
    "Placement",
    "TargetFit",
    "TargetFitRequest",
    "TargetSpec",
    "builtin_profiles",
    "load_profiles",
    "plan_fit",
    "save_profiles",
    "target_fit",
    "this_machine",
    "weight_split",
]


# --- the fit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetFitRequest:
    """Fit ``model`` (the project's float model) as each of ``presets`` to ``target``.
    ``devices``: this machine's (``list_devices``), None to list them here."""

    model: Path
    target: TargetSpec
    presets: tuple[str, ...] = DEFAULT_MIXES
    devices: tuple[Device, ...] | None = None


@dataclass(frozen=True)
class MixFit:
    """One mix on the target: bytes in the GPU's memory (``*_device``) and in RAM
    (``*_host``); the output (logits) buffer is counted with the host's compute buffers.
    With unified memory everything is ``*_device``; on a CPU target everything ``*_host``;
    there the weights are counted once (a tied output is no second copy)."""

    label: str
    weights_device: int
    weights_host: int
    kv_device: int
    kv_host: int
    compute_device: int
    compute_host: int
    fits: bool

    @property
    def device_total(self) -> int:
        return self.weights_device + self.kv_device + self.compute_device

    @property
    def host_total(self) -> int:
        return self.weights_host + self.kv_host + self.compute_host

    @property
    def total(self) -> int:
        return self.device_total + self.host_total

    @property
    def weights(self) -> int:
        return self.weights_device + self.weights_host


@dataclass(frozen=True)
class TargetFit:
    rows: tuple[MixFit, ...]
    device_budget: int
    host_budget: int
    measured: bool  # buffers from a real context on the target's backend; else an estimate
    buffers: RuntimeBuffers
    note: str
    #: repeating layers on the GPU, and whether the output layer is there
    offloaded_layers: int = 0
    output_on_device: bool = False
    #: what ``plan_fit`` needs to fit any plan the same way: the target and the placement
    target: TargetSpec | None = None
    placement: Placement | None = None


@dataclass(frozen=True)
class Placement:
    """Which layers llama.cpp puts on the GPU for ``gpu_layers`` (see the module docstring)."""

    n_layer: int
    gpu_layers: int

    @property
    def slots(self) -> int:
        return max(0, min(self.gpu_layers, self.n_layer + 1))

    @property
    def output_on_device(self) -> bool:
        return self.slots >= 1

    @property
    def repeating(self) -> int:
        return max(0, self.slots - 1)

    def on_device(self, layer: int | None, kind: str) -> bool:
        if layer is None:
            return kind not in _INPUT_KINDS and self.output_on_device
        return layer >= self.n_layer - self.repeating


def weight_split(
    model: ModelInfo, sizes: Mapping[str, int], placement: Placement
) -> tuple[int, int]:
    """(device, host) bytes of the weights, tensor by tensor (``sizes``: name -> bytes)."""
    items = ((t.name, sizes[t.name]) for t in model.tensors)
    return _split(items, model.tied_embeddings, placement)


@lru_cache(maxsize=1 << 16)
def _layer_kind(name: str) -> tuple[int | None, str]:
    return tensor_layer(name), tensor_kind(name)


def _split(items: Iterable[tuple[str, int]], tied: bool, placement: Placement) -> tuple[int, int]:
    """(device, host) bytes of (tensor name, bytes) pairs; ``tied``: no ``output.weight``."""
    device = host = 0
    embd: int | None = None
    for name, n in items:
        if name == "token_embd.weight":
            embd = n
        if placement.on_device(*_layer_kind(name)):
            device += n
        else:
            host += n
    if tied and placement.output_on_device and embd is not None:
        device += embd  # llama.cpp's TENSOR_DUPLICATED output copy
    return device, host


def _buffers_key(digest: str, context: int, gpu_layers: int, backend: str) -> Path:
    name = f"{digest[:16]}-c{context}-g{gpu_layers}-{backend}.json"
    return cache_dir("buffers") / name


def _cached_buffers(path: Path) -> RuntimeBuffers | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.pop("version") != BUFFERS_VERSION:
            return None
        return RuntimeBuffers(**{k: int(v) for k, v in d.items()})
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _store_buffers(path: Path, b: RuntimeBuffers) -> None:
    with contextlib.suppress(OSError, LwqError):  # only a cache
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"version": BUFFERS_VERSION, **asdict(b)}) + "\n")


def _split_buffers(
    b: RuntimeBuffers, placement: Placement, n_layer: int, measured: bool
) -> tuple[int, int, int, int]:
    """(kv_device, kv_host, compute_device, compute_host) for a discrete GPU target."""
    if measured:  # llama.cpp said which buffer is where
        kv_dev = b.kv_device
        comp_dev = b.compute_device + b.output_device
        return kv_dev, b.kv_cache - kv_dev, comp_dev, b.compute + b.output - comp_dev
    share = placement.repeating / n_layer if n_layer else 0.0
    kv_dev = round(b.kv_cache * share)
    offloaded = placement.slots > 0
    comp_dev = b.compute if offloaded else 0
    # the host keeps a compute buffer for its own layers (none with everything offloaded)
    partial = placement.repeating < n_layer
    comp_host = (b.compute if partial or not offloaded else 0) + b.output
    return kv_dev, b.kv_cache - kv_dev, comp_dev, comp_host


@public_job("target fit")
def target_fit(
    request: TargetFitRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> TargetFit:
    """Weights, KV cache and compute buffers of F16 and each stock mix against the target
    (the hash and the buffers are cached, so a second call is instant)."""
    check(cancel)
    r = request
    t = r.target
    if not isinstance(t, TargetSpec):
        raise InputError(f"target {shown(t, 60)}: expected a TargetSpec")
    TargetSpec.from_json(t.to_json())  # the same checks as a saved target
    for p in r.presets:
        check_preset(p, "preset", PlanError)
    model = open_model(r.model)
    devices = r.devices
    if devices is None:
        from .devices import list_devices

        devices = list_devices(cancel=cancel)
    here = {d.backend for d in devices} | {"CPU"}
    measured = t.backend in here
    kind = t.memory_kind
    placement = Placement(model.n_layer, 0 if kind == "cpu" else t.gpu_layers)
    gpu_layers = placement.slots if measured and kind != "cpu" else 0
    phases = Phases(progress, [(Phase.HASH, 1), (Phase.LOAD, 4)])
    digest = model_hash(model, progress=phases.sink(Phase.HASH), cancel=cancel)
    key = _buffers_key(digest, t.context, gpu_layers, t.backend if measured else "CPU")
    load = phases.sink(Phase.LOAD)
    buffers = _cached_buffers(key)
    if buffers is None:
        buffers = measure_buffers(
            model.path, t.context, gpu_layers=gpu_layers, progress=load, cancel=cancel
        )
        _store_buffers(key, buffers)
    load(Progress(Phase.LOAD, 1, 1, model.path.name))
    rows = tuple(_mix_fit(model, p, t, buffers, placement, measured) for p in r.presets)
    return TargetFit(
        rows=rows,
        device_budget=t.device_budget,
        host_budget=t.host_budget,
        measured=measured,
        buffers=buffers,
        note=_note(t, measured, placement),
        offloaded_layers=placement.repeating if kind == "discrete" else 0,
        output_on_device=placement.output_on_device and kind == "discrete",
        target=t,
        placement=placement,
    )


def plan_fit(fit: TargetFit, plan: QuantPlan, label: str | None = None) -> MixFit:
    """Any plan on ``fit``'s target, counted as ``target_fit`` counts a stock mix (``label``
    default: the plan's preset, else "plan"); instant: the buffers are ``fit``'s."""
    if fit.target is None or fit.placement is None:
        raise InputError("plan_fit: this TargetFit does not keep its target (made by target_fit?)")
    if plan.n_layer != fit.placement.n_layer:
        raise PlanError(
            f"plan_fit: the plan is for a model of {plan.n_layer} layers, the fit for "
            f"{fit.placement.n_layer}"
        )
    return _plan_fit(plan, label or plan.preset or "plan", fit.target, fit.buffers,
                     fit.placement, fit.measured)  # fmt: skip


def _mix_fit(
    model: ModelInfo,
    preset: str,
    t: TargetSpec,
    b: RuntimeBuffers,
    placement: Placement,
    measured: bool,
) -> MixFit:
    plan = plan_from_preset(model, preset)
    return _plan_fit(plan, plan.preset or preset, t, b, placement, measured)


def _plan_fit(
    plan: QuantPlan,
    label: str,
    t: TargetSpec,
    b: RuntimeBuffers,
    placement: Placement,
    measured: bool,
) -> MixFit:
    items = [(tp.name, tp.size_bytes) for tp in plan.tensors]
    kind = t.memory_kind
    if kind != "discrete":  # one memory: weights counted once (mapped, not copied)
        w = sum(n for _, n in items)
        comp = b.compute + b.output
        if kind == "cpu":
            return MixFit(label, 0, w, 0, b.kv_cache, 0, comp, w + b.total <= t.host_budget)
        return MixFit(label, w, 0, b.kv_cache, 0, comp, 0, w + b.total <= t.device_budget)
    tied = not any(name == "output.weight" for name, _ in items)
    w_dev, w_host = _split(items, tied, placement)
    kv_dev, kv_host, c_dev, c_host = _split_buffers(b, placement, plan.n_layer, measured)
    fits = w_dev + kv_dev + c_dev <= t.device_budget and w_host + kv_host + c_host <= t.host_budget
    return MixFit(label, w_dev, w_host, kv_dev, kv_host, c_dev, c_host, fits)


def _note(t: TargetSpec, measured: bool, placement: Placement) -> str:
    how = (
        "buffers measured on a real llama.cpp context"
        if measured
        else f"estimate: buffers measured on this machine's CPU, not on {t.backend}"
    )
    if t.memory_kind == "cpu":
        return f"{how}; everything in RAM"
    if t.memory_kind == "unified":
        return f"{how}; unified memory: one budget for weights, cache and buffers"
    return (
        f"{how}; {placement.repeating} of {placement.n_layer} layers"
        f"{' and the output' if placement.output_on_device else ''} on the GPU, "
        "token_embd in RAM"
    )
