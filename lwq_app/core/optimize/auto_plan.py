"""Automatic plan: per-tensor types that minimise total damage under a size budget.

Each quantizable tensor has options (bytes, error) from ``sensitivity``; errors may be scaled
per tensor (``factors``: a calibration, e.g. per kind and depth). Per tensor only the Pareto
frontier is kept; a Lagrange multiplier λ, found by bisection, picks ``argmin err + λ·bytes``
on the convex hull, and a greedy multiple-choice-knapsack pass then spends what is left on
the best Δerr/Δbytes upgrades that still fit. The result never exceeds the budget; ties are
broken by name, so the plan is deterministic (``solve_plan``).

A budget on disk (``SizeBudget``, the default: the size users see, as llama.cpp's model
cards list it) is the whole GGUF: the solver gets what is left after the file's metadata and
alignment padding (``plan.file_size``), and a plan whose predicted file is still over (the
padding depends on the chosen sizes) is solved again with less, so the file the quantize job
writes never exceeds it, whatever the output is named. A tensor-data budget
(``SizeBudget(..., on_disk=False)``, bits per weight, the weights' share of a memory budget)
counts tensor bytes only.

The job ``auto_plan(AutoPlanRequest(model, budget, imatrix, …))`` does all of ``lwq plan
--auto``: the budget (a ``BpwBudget``, ``SizeBudget`` or ``MemoryBudget``; the last measures
llama.cpp's buffers first, ``Phase.LOAD``), the sensitivity (``Phase.MEASURE``), the choice of
a calibration (explicit, the model project's one, or none and why), the plan and its
explanation against a stock mix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from ..evaluate.hardware import TargetSpec
from ..evaluate.memory_fit import RuntimeBuffers, measure_buffers
from ..importance.sensitivity import (
    Sensitivity,
    SensitivityRequest,
    check_types,
    measure_sensitivity,
)
from ..jobs.arguments import (
    bpw_option,
    check_size,
    gpu_layers_option,
    int_option,
    size_option,
)
from ..jobs.boundary import public_job
from ..jobs.errors import InputError, PlanError, shown
from ..jobs.progress import CancelToken, Phase, Phases, Progress, ProgressSink, check, no_progress
from ..modelfile.inventory import ModelInfo, open_model, tensor_kind, tensor_layer
from ..plan.file_size import FileSize, file_layout
from ..plan.quant_plan import QuantPlan, plan_from_preset, plan_from_types, writable_presets
from ..plan.stock_mixes import check_preset
from ..results.project import find_calibration
from .calibration import Calibration


@dataclass(frozen=True)
class Option:
    type: str
    bytes: int
    error: float


@dataclass(frozen=True)
class Budget:
    """A target in bytes, and how it was stated (for messages): of the whole file on disk
    (``on_disk``), else of tensor data."""

    bytes: int
    label: str
    on_disk: bool = False

    @property
    def kind(self) -> str:
        """What the bytes count, for messages."""
        return "on disk" if self.on_disk else "of tensor data"


def frontier(options: list[Option]) -> list[Option]:
    """Options not dominated by a smaller-or-equal one with lower-or-equal error."""
    best: dict[int, Option] = {}
    for o in sorted(options, key=lambda o: (o.bytes, o.error, o.type)):
        if o.bytes not in best:
            best[o.bytes] = o
    out: list[Option] = []
    for o in sorted(best.values(), key=lambda o: o.bytes):
        if not out or o.error < out[-1].error:
            out.append(o)
    return out


def budget_from_bpw(model: ModelInfo, bpw: float) -> Budget:
    return Budget(math.floor(bpw * model.n_params / 8), f"{bpw} bpw")


def kv_cache_bytes(model: ModelInfo, n_ctx: int) -> int:
    """F16 K and V cache for ``n_ctx`` tokens (llama.cpp's default cache types)."""
    head = model.n_embd // max(1, model.n_head)
    k = int(model.metadata.get(f"{model.architecture}.attention.key_length", head) or head)
    v = int(model.metadata.get(f"{model.architecture}.attention.value_length", head) or head)
    return model.n_layer * n_ctx * (k + v) * max(1, model.n_head_kv) * 2


def compute_buffer_bytes(model: ModelInfo, n_ctx: int, n_ubatch: int = 512) -> int:
    """Estimate of llama.cpp's compute and output buffers (logits, activations, attention)."""
    u = min(n_ubatch, n_ctx)
    logits = u * model.n_vocab * 4
    acts = u * (4 * model.n_embd + 2 * max(model.n_ff, model.n_embd)) * 4
    attn = u * n_ctx * max(1, model.n_head) * 4
    return logits * 2 + acts + attn


def budget_from_memory(
    model: ModelInfo, memory: int, n_ctx: int, buffers: RuntimeBuffers | None = None
) -> Budget:
    """Weights may use what is left of ``memory`` after KV cache and compute buffers:
    ``buffers`` as llama.cpp allocated them (``memfit.measure_buffers``), else estimated."""
    if buffers is not None:
        rest, how = memory - buffers.total, "measured"
    else:
        rest = memory - kv_cache_bytes(model, n_ctx) - compute_buffer_bytes(model, n_ctx)
        how = "estimated"
    if rest <= 0:
        raise PlanError(
            f"{memory} bytes of memory leave nothing for the weights at context {n_ctx} "
            f"(KV cache and compute buffers, {how}, need {memory - rest})"
        )
    return Budget(rest, f"{memory} bytes of memory at context {n_ctx} ({how} buffers)")


@dataclass(frozen=True)
class AutoPlan:
    plan: QuantPlan
    budget: Budget
    total_error: float
    lam: float
    #: the file the quantize job writes (an upper bound for any output name)
    file_size: FileSize

    @property
    def used(self) -> float:
        """Fraction of the budget used: of the file on disk, or of the tensor data."""
        n = self.file_size.total if self.budget.on_disk else self.plan.size_bytes
        return n / self.budget.bytes if self.budget.bytes else 0.0


def _options(
    model: ModelInfo, sens: Sensitivity, factors: Mapping[str, float]
) -> dict[str, list[Option]]:
    out = {}
    for t in model.tensors:
        if not t.quantizable:
            continue
        s = sens.tensors.get(t.name)
        if s is None:
            raise PlanError(f"no sensitivity measured for tensor {t.name}")
        f = float(factors.get(t.name, 1.0))
        opts = [Option(k, t.bytes_as(k), v * f) for k, v in sorted(s.error.items())]
        if not opts:
            raise PlanError(f"tensor {t.name}: no valid candidate type")
        out[t.name] = frontier(opts)
    return out


def _pick(opts: list[Option], lam: float) -> int:
    best, best_v = 0, math.inf
    for i, o in enumerate(opts):
        v = o.error + lam * o.bytes
        if v < best_v:
            best, best_v = i, v
    return best


def solve(options: Mapping[str, list[Option]], budget: int) -> tuple[dict[str, int], float]:
    """Choice index per tensor with Σ bytes ≤ ``budget`` (Lagrangian + greedy fill)."""
    names = sorted(options)
    lo_size = sum(options[n][0].bytes for n in names)
    if lo_size > budget:
        raise PlanError(f"budget {budget} B is below the smallest possible plan ({lo_size} B)")
    top = {n: len(options[n]) - 1 for n in names}
    if sum(options[n][-1].bytes for n in names) <= budget:
        return top, 0.0

    def size(ch: dict[str, int]) -> int:
        return sum(options[n][ch[n]].bytes for n in names)

    lo, hi = 0.0, 1.0
    while size({n: _pick(options[n], hi) for n in names}) > budget:
        hi *= 4.0
    for _ in range(100):  # bisection on log scale: largest plan that fits
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 1e6
        if size({n: _pick(options[n], mid) for n in names}) > budget:
            lo = mid
        else:
            hi = mid
        if lo > 0 and hi / lo < 1 + 1e-9:
            break
    choice = {n: _pick(options[n], hi) for n in names}
    used = size(choice)
    while True:  # greedy fill: best error reduction per byte among upgrades that still fit
        best: tuple[float, str, int] | None = None
        for n in names:
            cur = options[n][choice[n]]
            for j in range(choice[n] + 1, len(options[n])):
                o = options[n][j]
                d_bytes = o.bytes - cur.bytes
                if used + d_bytes > budget:
                    break
                gain = (cur.error - o.error) / d_bytes
                if best is None or gain > best[0] or (gain == best[0] and n < best[1]):
                    best = (gain, n, j)
        if best is None:
            break
        _, n, j = best
        used += options[n][j].bytes - options[n][choice[n]].bytes
        choice[n] = j
    if used < 0.99 * budget:
        choice = _swap_fill(options, choice, budget)
    return choice, hi


def _swap_fill(
    options: Mapping[str, list[Option]], choice: dict[str, int], budget: int
) -> dict[str, int]:
    """Near the top of the range the slack can be smaller than every remaining upgrade: buy
    one large upgrade and pay for it with the cheapest downgrades elsewhere, keeping the
    variant with the least error among those that fill ≥ 99% of the budget."""
    names = sorted(options)
    used = sum(options[n][choice[n]].bytes for n in names)
    best: tuple[float, dict[str, int]] | None = None
    for n in names:
        for j in range(choice[n] + 1, len(options[n])):
            up = options[n][j]
            need = used + up.bytes - options[n][choice[n]].bytes - budget
            trial = dict(choice)
            trial[n] = j
            d_err = up.error - options[n][choice[n]].error
            while need > 0:  # one step down at a time: cheapest per byte, no overshoot
                steps = [
                    (
                        options[m][trial[m] - 1].error - options[m][trial[m]].error,
                        options[m][trial[m]].bytes - options[m][trial[m] - 1].bytes,
                        m,
                    )
                    for m in names
                    if m != n and trial[m] > 0
                ]
                if not steps:
                    break
                inside = [(de / db, m) for de, db, m in steps if db <= need]
                _, m = min(inside) if inside else min((de, m) for de, _, m in steps)
                o_cur, o_low = options[m][trial[m]], options[m][trial[m] - 1]
                need -= o_cur.bytes - o_low.bytes
                d_err += o_low.error - o_cur.error
                trial[m] -= 1
            size = budget + need
            if need <= 0 and size >= 0.99 * budget and (best is None or d_err < best[0]):
                best = (d_err, trial)
    return best[1] if best is not None else choice


#: re-solves of an on-disk budget whose first plan's padding came out larger than assumed
MAX_RESOLVES = 5


def solve_plan(
    model: ModelInfo,
    sens: Sensitivity,
    budget: Budget,
    *,
    factors: Mapping[str, float] | None = None,
    with_imatrix: bool = True,
    imatrix: Path | None = None,
) -> AutoPlan:
    """The lowest-error plan within ``budget``: tensor-data bytes of the whole file, or with
    ``budget.on_disk`` the file the quantize job writes with ``imatrix`` (whose path is in
    its metadata), metadata and padding included, for any output name."""
    fixed_sizes = [t.n_bytes for t in model.tensors if not t.quantizable]
    fixed = sum(fixed_sizes)
    options = _options(model, sens, factors or {})
    layout = file_layout(model, imatrix=imatrix)

    def sizes(choice: Mapping[str, int]) -> list[int]:
        return [*fixed_sizes, *(options[n][i].bytes for n, i in choice.items())]

    def attempt(data_budget: int) -> tuple[dict[str, int], float]:
        try:
            return solve(options, data_budget - fixed)
        except PlanError:
            smallest = fixed + sum(o[0].bytes for o in options.values())
            room = (
                f"{budget.bytes} B on disk, {data_budget} B of it for tensor data after the "
                "file's metadata and padding"
                if budget.on_disk
                else f"{budget.bytes} B of tensor data"
            )
            raise PlanError(
                f"budget {budget.label} ({room}) is below the smallest possible plan for "
                f"{model.path.name} ({smallest} B of tensor data)"
            ) from None

    if not budget.on_disk:
        choice, lam = attempt(budget.bytes)
    else:  # the overhead of the source's sizes first, then less by what the plan exceeds
        src = layout.file_size(t.n_bytes for t in model.tensors)
        data_budget = budget.bytes - (src.total - src.tensor_data)
        for _ in range(MAX_RESOLVES):
            choice, lam = attempt(data_budget)
            excess = layout.file_size(sizes(choice)).total - budget.bytes
            if excess <= 0:
                break
            data_budget -= excess
        else:  # never seen: the most padding any sizes can have
            worst = (len(model.tensors) + 1) * (layout.alignment - 1)
            choice, lam = attempt(budget.bytes - layout.metadata - worst)
    types = {n: options[n][i].type for n, i in choice.items()}
    plan = plan_from_types(model, types, source="auto plan", with_imatrix=with_imatrix)
    total = sum(options[n][i].error for n, i in choice.items())
    fs = layout.file_size(t.size_bytes for t in plan.tensors)
    return AutoPlan(plan, budget, total, lam, fs)


@dataclass(frozen=True)
class TensorDelta:
    """One tensor whose type differs from the stock mix's: bits gained (+) or lost (−)."""

    tensor: str
    auto: str
    stock: str
    delta_bits: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def explain(
    auto: QuantPlan, model: ModelInfo, preset: str, with_imatrix: bool
) -> tuple[TensorDelta, ...]:
    """The tensors whose type in ``auto`` differs from the stock mix ``preset``."""
    ref = plan_from_preset(model, preset, with_imatrix)
    rows = []
    for t in auto.tensors:
        if not t.quantizable:
            continue
        r = ref[t.name]
        if r.effective != t.effective:
            rows.append(
                TensorDelta(t.name, t.effective, r.effective, (t.size_bytes - r.size_bytes) * 8)
            )
    return tuple(rows)


@dataclass(frozen=True)
class Explanation:
    """Where a plan puts its bits compared with a stock mix: bits gained (+) or lost (−)."""

    preset: str
    size_delta_bytes: int
    by_layer: Mapping[int | None, int]  # layer (None = outside the layers) -> Δbits
    by_kind: Mapping[str, int]  # tensor kind -> Δbits
    tensors: tuple[TensorDelta, ...]  # per differing tensor

    def to_dict(self) -> dict[str, Any]:
        """The ``vs_stock`` object of ``lwq plan --auto --json``."""
        return {
            "preset": self.preset,
            "size_delta_bytes": self.size_delta_bytes,
            "bits_by_layer": {str(k): v for k, v in self.by_layer.items()},
            "bits_by_kind": dict(self.by_kind),
            "tensors": [t.to_dict() for t in self.tensors],
        }


def nearest_preset(model: ModelInfo, size_bytes: int, with_imatrix: bool) -> str:
    """The stock mix whose tensor-data size is closest to ``size_bytes``.

    Without an imatrix, mixes that cannot be written without one are skipped.
    """
    refs = writable_presets(model, with_imatrix)
    return min(refs, key=lambda name: abs(refs[name].size_bytes - size_bytes))


def explain_groups(
    plan: QuantPlan, model: ModelInfo, preset: str | None, with_imatrix: bool
) -> Explanation:
    """Bits gained/lost per layer and per tensor kind vs ``preset`` (default: the nearest)."""
    preset = preset or nearest_preset(model, plan.size_bytes, with_imatrix)
    ref = plan_from_preset(model, preset, with_imatrix)
    by_layer: dict[int | None, int] = {}
    by_kind: dict[str, int] = {}
    for t in plan.quantized_tensors():
        delta = (t.size_bytes - ref[t.name].size_bytes) * 8
        layer, kind = tensor_layer(t.name), tensor_kind(t.name)
        by_layer[layer] = by_layer.get(layer, 0) + delta
        by_kind[kind] = by_kind.get(kind, 0) + delta
    return Explanation(
        preset=preset,
        size_delta_bytes=plan.size_bytes - ref.size_bytes,
        by_layer=by_layer,
        by_kind=by_kind,
        tensors=explain(plan, model, preset, with_imatrix),
    )


# --- the job ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BpwBudget:
    """Bits per weight over the model's parameters (tensor data)."""

    bpw: float

    @staticmethod
    def parse(text: str) -> BpwBudget:
        """From a number (``4.5``); ``InputError`` naming ``--target-bpw`` if malformed."""
        what = f" {shown(text)}" if not isinstance(text, str) or text.strip() else ""
        try:
            value = float(text.strip())
        except (ValueError, AttributeError):
            raise InputError(
                f"--target-bpw{what}: expected a number of bits per weight, e.g. 4.5"
            ) from None
        return BpwBudget(bpw_option(value, "--target-bpw"))


#: the CLI option of a size budget on disk, and of one of tensor data only
SIZE_OPTIONS = {True: "--target-size", False: "--target-data-size"}


@dataclass(frozen=True)
class SizeBudget:
    """Bytes of the whole GGUF file on disk (``on_disk``: the size users see), else of its
    tensor data only; ``label`` is how it was stated (``3.9GB``)."""

    bytes: int
    label: str = ""
    on_disk: bool = True

    @property
    def option(self) -> str:
        return SIZE_OPTIONS[self.on_disk]

    @staticmethod
    def parse(text: str, on_disk: bool = True) -> SizeBudget:
        """From a size with a unit (``3.9GB``, ``3.6GiB``); ``InputError`` naming the option
        (``--target-size``, or ``--target-data-size``) if malformed."""
        return SizeBudget(size_option(text, SIZE_OPTIONS[on_disk]), text, on_disk)


@dataclass(frozen=True)
class MemoryBudget:
    """Memory for the weights plus llama.cpp's KV cache and buffers at ``context`` tokens
    (measured on a real context with ``gpu_layers`` offloaded)."""

    bytes: int
    context: int = 4096
    gpu_layers: int = 0

    @staticmethod
    def parse(text: str, context: int = 4096, gpu_layers: int = 0) -> MemoryBudget:
        return MemoryBudget(size_option(text, "--target-memory"), context, gpu_layers)

    @staticmethod
    def from_target(spec: TargetSpec) -> MemoryBudget:
        """The budget of a project's target: the memory the weights are limited by, at the
        target's context and GPU layers. That is the RAM on a CPU target, the one pool with
        unified memory, and on a discrete GPU its own memory once layers are offloaded (the
        RAM when none are). With every layer offloaded the GPU holds all weights but
        ``token_embd``, so its budget binds; with a partial offload it is conservative (part
        of the weights sit in the larger RAM). ``evaluate.plan_fit`` gives the exact split."""
        kind = spec.memory_kind
        if kind == "cpu":
            return MemoryBudget(spec.host_memory, spec.context, 0)
        if kind == "discrete" and spec.gpu_layers == 0:
            return MemoryBudget(spec.host_memory, spec.context, 0)
        return MemoryBudget(spec.device_memory, spec.context, spec.gpu_layers)


BudgetSpec = BpwBudget | SizeBudget | MemoryBudget


def check_budget(spec: BudgetSpec) -> None:
    """``InputError`` naming the target for a budget that cannot mean anything."""
    if isinstance(spec, BpwBudget):
        bpw_option(spec.bpw, "--target-bpw")
    elif isinstance(spec, SizeBudget):
        check_size(spec.bytes, spec.option, spec.label or None)
    elif isinstance(spec, MemoryBudget):
        check_size(spec.bytes, "--target-memory")
        int_option(spec.context, "--context", minimum=16)
        gpu_layers_option(spec.gpu_layers)
    else:
        raise InputError(
            f"budget {shown(spec, 60)}: expected a BpwBudget, SizeBudget or MemoryBudget"
        )


class CalibrationSource(str, Enum):
    """Where the calibration of an auto plan came from, or why there is none."""

    EXPLICIT = "explicit"  # the request named the file
    PROJECT = "project"  # the model project's one for this imatrix
    DISABLED = "disabled"  # the request asked for the raw proxy
    NO_IMATRIX = "no-imatrix"  # a calibration needs an imatrix
    NOT_MEASURED = "not-measured"  # none measured yet for this model and imatrix (lwq calibrate)


#: ``AutoPlanRequest.calibration``: plan with the raw proxy even if a calibration exists
DISABLED: Literal["disabled"] = "disabled"


@dataclass(frozen=True)
class AutoPlanRequest:
    """The lowest-error plan for ``model`` within ``budget``.

    ``calibration``: a calibration file, None for the model project's one for ``imatrix``
    (if measured), or ``"disabled"`` for the raw proxy. ``types`` None: every candidate;
    ``compare`` the stock mix to explain against (None: the nearest in size).
    """

    model: Path
    budget: BudgetSpec
    imatrix: Path | None = None
    calibration: Path | Literal["disabled"] | None = None
    max_rows: int = 256
    types: tuple[str, ...] | None = None
    compare: str | None = None


@dataclass(frozen=True)
class AutoPlanResult:
    plan: QuantPlan
    budget: Budget
    #: fraction of the budget the plan uses
    used: float
    total_error: float
    calibration_path: Path | None
    calibration_source: CalibrationSource
    #: llama.cpp's buffers as measured for a ``MemoryBudget`` (None otherwise)
    buffers: RuntimeBuffers | None
    explanation: Explanation
    #: the file the quantize job writes for the plan (an upper bound for any output name)
    file_size: FileSize

    def to_dict(self) -> dict[str, Any]:
        """What ``lwq plan --auto --json`` prints."""
        d = self.plan.to_dict()
        d["calibration"] = None if self.calibration_path is None else str(self.calibration_path)
        d["budget_bytes"] = self.budget.bytes
        d["budget_on_disk"] = self.budget.on_disk
        d["file_bytes"] = self.file_size.total
        d["used"] = self.used
        d["vs_stock"] = self.explanation.to_dict()
        return d


def _choose_calibration(
    request: AutoPlanRequest, sens: Sensitivity
) -> tuple[Path | None, CalibrationSource]:
    if isinstance(request.calibration, Path):
        return request.calibration, CalibrationSource.EXPLICIT
    if request.calibration == DISABLED:
        return None, CalibrationSource.DISABLED
    if request.imatrix is None:
        return None, CalibrationSource.NO_IMATRIX
    found = find_calibration(sens.model_hash, sens.imatrix_hash)
    if found is None:
        return None, CalibrationSource.NOT_MEASURED
    return found, CalibrationSource.PROJECT


@public_job("plan --auto")
def auto_plan(
    request: AutoPlanRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> AutoPlanResult:
    """Budget → (memory fit) → sensitivity → calibration → plan → explanation."""
    check(cancel)
    r = request
    spec = r.budget
    check_budget(spec)
    if r.compare is not None:
        check_preset(r.compare, "--compare", PlanError)
    int_option(r.max_rows, "--max-rows", minimum=0, meaning="0 = all rows")
    types = check_types(r.types)
    if (
        r.calibration is not None
        and not isinstance(r.calibration, Path)
        and r.calibration != DISABLED
    ):
        raise InputError(f"calibration {r.calibration!r}: expected a file, None or 'disabled'")
    model = open_model(r.model)
    explicit = Calibration.load(r.calibration) if isinstance(r.calibration, Path) else None
    is_memory = isinstance(spec, MemoryBudget)
    parts = [(Phase.LOAD, 1.0)] if is_memory else []
    phases = Phases(progress, [*parts, (Phase.MEASURE, 9.0)])
    buffers: RuntimeBuffers | None = None
    if isinstance(spec, BpwBudget):
        budget = budget_from_bpw(model, spec.bpw)
    elif isinstance(spec, SizeBudget):
        budget = Budget(spec.bytes, spec.label or f"{spec.bytes} B", spec.on_disk)
    else:
        buffers = measure_buffers(
            model.path, spec.context, gpu_layers=spec.gpu_layers,
            progress=phases.sink(Phase.LOAD), cancel=cancel,
        )  # fmt: skip
        budget = budget_from_memory(model, spec.bytes, spec.context, buffers)
    check(cancel)
    measure = phases.sink(Phase.MEASURE)
    sens = measure_sensitivity(
        SensitivityRequest(model.path, r.imatrix, r.max_rows, types),
        progress=measure,
        cancel=cancel,
    )
    measure(Progress(Phase.MEASURE, 1, 1, "measured"))
    cal_path, source = _choose_calibration(r, sens)
    factors = None
    if cal_path is not None:
        cal = explicit if explicit is not None else Calibration.load(cal_path)
        cal.check(cal_path, sens.model_hash, sens.imatrix_hash)
        factors = cal.factors(model)
    with_imatrix = r.imatrix is not None
    a = solve_plan(
        model, sens, budget, factors=factors, with_imatrix=with_imatrix, imatrix=r.imatrix
    )
    ex = explain_groups(a.plan, model, r.compare, with_imatrix)
    return AutoPlanResult(
        plan=a.plan,
        budget=budget,
        used=a.used,
        total_error=a.total_error,
        calibration_path=cal_path,
        calibration_source=source,
        buffers=buffers,
        explanation=ex,
        file_size=a.file_size,
    )
