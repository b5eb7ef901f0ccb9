"""Automatic plan: per-tensor types that minimise total damage under a size budget.

Each quantizable tensor has options (bytes, error) from ``sensitivity``; errors may be scaled
per tensor (``factors``: a calibration, e.g. per kind and depth). Per tensor only the Pareto
frontier is kept; a Lagrange multiplier λ, found by bisection, picks ``argmin err + λ·bytes``
on the convex hull, and a greedy multiple-choice-knapsack pass then spends what is left on
the best Δerr/Δbytes upgrades that still fit. The result never exceeds the budget; ties are
broken by name, so the plan is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import PlanError
from .memfit import RuntimeBuffers
from .model import ModelInfo
from .plan import QuantPlan, plan_from_preset, plan_from_types
from .sensitivity import Sensitivity


@dataclass(frozen=True)
class Option:
    type: str
    bytes: int
    error: float


@dataclass(frozen=True)
class Budget:
    """A target in bytes of tensor data, and how it was stated (for messages)."""

    bytes: int
    label: str


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

    @property
    def used(self) -> float:
        return self.plan.size_bytes / self.budget.bytes if self.budget.bytes else 0.0


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


def auto_plan(
    model: ModelInfo,
    sens: Sensitivity,
    budget: Budget,
    *,
    factors: Mapping[str, float] | None = None,
    with_imatrix: bool = True,
) -> AutoPlan:
    """The lowest-error plan within ``budget`` (tensor-data bytes of the whole file)."""
    fixed = sum(t.n_bytes for t in model.tensors if not t.quantizable)
    options = _options(model, sens, factors or {})
    try:
        choice, lam = solve(options, budget.bytes - fixed)
    except PlanError:
        smallest = fixed + sum(o[0].bytes for o in options.values())
        raise PlanError(
            f"budget {budget.label} ({budget.bytes} B of tensor data) is below the smallest "
            f"possible plan for {model.path.name} ({smallest} B)"
        ) from None
    types = {n: options[n][i].type for n, i in choice.items()}
    plan = plan_from_types(model, types, source="auto plan", with_imatrix=with_imatrix)
    total = sum(options[n][i].error for n, i in choice.items())
    return AutoPlan(plan, budget, total, lam)


def explain(auto: QuantPlan, model: ModelInfo, preset: str, with_imatrix: bool) -> list[dict]:
    """Bits per weight per (layer, kind) of the auto plan vs a stock mix, where they differ."""
    ref = plan_from_preset(model, preset, with_imatrix)
    rows = []
    for t in auto.tensors:
        if not t.quantizable:
            continue
        r = ref[t.name]
        if r.effective != t.effective:
            rows.append(
                {
                    "tensor": t.name,
                    "auto": t.effective,
                    "stock": r.effective,
                    "delta_bits": (t.size_bytes - r.size_bytes) * 8,
                }
            )
    return rows


@dataclass(frozen=True)
class Explanation:
    """Where a plan puts its bits compared with a stock mix: bits gained (+) or lost (−)."""

    preset: str
    size_delta_bytes: int
    by_layer: dict[int | None, int]  # layer (None = outside the layers) -> Δbits
    by_kind: dict[str, int]  # tensor kind -> Δbits
    tensors: list[dict]  # per differing tensor, as ``explain`` returns


def nearest_preset(model: ModelInfo, size_bytes: int, with_imatrix: bool) -> str:
    """The stock mix whose tensor-data size is closest to ``size_bytes``.

    Without an imatrix, mixes that cannot be written without one are skipped.
    """
    from .mixes import QUANT_PRESETS

    best: tuple[int, str] | None = None
    for name in QUANT_PRESETS:
        ref = plan_from_preset(model, name, with_imatrix)
        if not with_imatrix and ref.needs_imatrix():
            continue
        d = abs(ref.size_bytes - size_bytes)
        if best is None or d < best[0]:
            best = (d, name)
    assert best is not None
    return best[1]


def explain_groups(
    plan: QuantPlan, model: ModelInfo, preset: str | None, with_imatrix: bool
) -> Explanation:
    """Bits gained/lost per layer and per tensor kind vs ``preset`` (default: the nearest)."""
    from .model import tensor_kind, tensor_layer

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
