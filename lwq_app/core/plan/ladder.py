"""Per-tensor type ladders: the rungs the plan editor's "more bits / fewer bits" steps walk.

A tensor's ladder is the set of types Auto would consider for it (``CANDIDATES``), keeping
only the types llama.cpp writes as they are for the tensor's row width (no shape fallback) and,
without an importance matrix, none that needs one — ``valid_candidates``, which Auto's
``candidate_types`` uses too. Stepping along a tensor's *own* ladder means a 576-wide tensor
goes Q4_0 → Q4_1 → Q5_0 while a 1536-wide one in the same selection goes
Q4_K → Q5_0 → Q5_1 → Q5_K, and neither ever lands on a type that would silently fall back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache, lru_cache

from ..jobs.errors import PlanError, shown
from ..modelfile.type_catalog import CANDIDATES, PLANNABLE, TYPES, valid_types
from .quant_plan import QuantPlan, TensorPlan
from .stock_mixes import tensor_requires_imatrix

_RANK = {n: i for i, n in enumerate(PLANNABLE)}
#: names ``tensor_requires_imatrix`` exempts; every other name follows the same rule
_EXEMPT = ("token_embd.weight", "per_layer_token_embd.weight", "output.weight")


def type_order_key(type_name: str) -> tuple[float, int]:
    """Bits per weight ascending, ties in ``PLANNABLE`` order (unplannable types last)."""
    return (TYPES[type_name].bpw, _RANK.get(type_name, len(PLANNABLE)))


@cache
def _ggml_requires_imatrix(type_name: str) -> bool:
    """Whether ggml itself refuses to quantize ``type_name`` without weights (asked once)."""
    from ..engine.kernels import requires_imatrix

    return requires_imatrix(TYPES[type_name].ggml_id)


def valid_candidates(
    name: str, ne0: int, with_imatrix: bool, types: Sequence[str] = CANDIDATES
) -> list[str]:
    """The types of ``types`` the tensor ``name`` of row width ``ne0`` may be planned as:
    their blocks divide ``ne0`` (no shape fallback) and, without an imatrix, neither ggml nor
    llama.cpp (``tensor_requires_imatrix``) refuses them. Auto's candidates
    (``importance.candidate_types``) and the ladders are these."""
    return [
        t
        for t in valid_types(ne0, tuple(types))
        if with_imatrix or not (_ggml_requires_imatrix(t) or tensor_requires_imatrix(name, t, None))
    ]


@lru_cache(maxsize=4096)
def _ladder(ne0: int, exempt_name: bool, with_imatrix: bool) -> tuple[str, ...]:
    """The ladder of a quantizable tensor of row width ``ne0``; the name only matters through
    ``tensor_requires_imatrix``'s exemption of token_embd/output."""
    name = _EXEMPT[0] if exempt_name else "blk.0.ffn_down.weight"
    return tuple(sorted(valid_candidates(name, ne0, with_imatrix), key=type_order_key))


def tensor_ladder(t: TensorPlan, with_imatrix: bool) -> tuple[str, ...]:
    """The types the tensor may step through, fewest bits first; ``(source_type,)`` for a
    tensor llama.cpp never quantizes."""
    if not t.quantizable:
        return (t.source_type,)
    return _ladder(t.shape[0], t.name in _EXEMPT, bool(with_imatrix))


def plan_ladders(plan: QuantPlan, with_imatrix: bool | None = None) -> dict[str, tuple[str, ...]]:
    """Every tensor's ladder (``with_imatrix`` None: the plan's own flag). Cached per row
    width and name class, so an 80-layer model takes well under a millisecond."""
    imx = plan.with_imatrix if with_imatrix is None else bool(with_imatrix)
    return {t.name: tensor_ladder(t, imx) for t in plan.tensors}


def _step_one(current: str, ladder: tuple[str, ...], steps: int) -> str:
    """``current`` moved ``steps`` rungs, clamped; an off-ladder type snaps first (one step)."""
    if current in ladder:
        i = ladder.index(current) + steps
        return ladder[max(0, min(len(ladder) - 1, i))]
    bpw = TYPES[current].bpw
    if steps > 0:
        above = [i for i, n in enumerate(ladder) if TYPES[n].bpw > bpw]
        if not above:
            return current
        i = above[0] + steps - 1
    else:
        below = [i for i, n in enumerate(ladder) if TYPES[n].bpw < bpw]
        if not below:
            return current
        i = below[-1] + steps + 1
    return ladder[max(0, min(len(ladder) - 1, i))]


def step_changes(
    plan: QuantPlan,
    names: Iterable[str],
    steps: int,
    ladders: Mapping[str, tuple[str, ...]],
) -> dict[str, str]:
    """``tensor -> new requested type`` for each named quantizable tensor moved ``steps``
    rungs along its own ladder from its effective type (positive: more bits), clamped at the
    ends. A type not on the ladder (a GGUF made elsewhere, an imatrix-only type without an
    imatrix) first snaps to the next rung up or down, which takes one step. Tensors that do
    not move are left out; never-quantized tensors are skipped; unknown names: ``PlanError``."""
    out: dict[str, str] = {}
    for name in names:
        try:
            t = plan[name]
        except PlanError:
            raise PlanError(f"plan has no tensor {shown(name, 80)}") from None
        if not t.quantizable or steps == 0:
            continue
        ladder = ladders.get(name)
        if ladder is None:
            ladder = tensor_ladder(t, plan.with_imatrix)
        if not ladder:
            continue
        new = _step_one(t.effective, ladder, steps)
        if new != t.effective:
            out[name] = new
    return out


def step_plan(
    plan: QuantPlan,
    names: Iterable[str],
    steps: int,
    ladders: Mapping[str, tuple[str, ...]] | None = None,
) -> QuantPlan:
    """``plan`` with ``step_changes`` applied; ``plan`` itself when nothing moves (so an undo
    stack can skip the no-op)."""
    changes = step_changes(plan, names, steps, plan_ladders(plan) if ladders is None else ladders)
    return plan.with_types(changes) if changes else plan


def ladder_union(ladders: Mapping[str, tuple[str, ...]], names: Iterable[str]) -> tuple[str, ...]:
    """The types a "Set type…" menu offers for a selection: every rung of any selected
    tensor's ladder, fewest bits first. ``PlanError`` for a name without a ladder."""
    seen: set[str] = set()
    for name in names:
        try:
            seen.update(ladders[name])
        except KeyError:
            raise PlanError(f"no ladder for tensor {shown(name, 80)}") from None
    return tuple(sorted(seen, key=type_order_key))
