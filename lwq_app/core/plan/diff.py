"""What changes between two plans of one model, tensor by tensor, in the types llama.cpp writes.

Only *effective* types count: two plans that request Q4_K and Q5_0 for a 576-wide tensor write
the same bytes, so they do not differ. Diff against a stock mix with
``diff_plans(plan_from_preset(model, name, with_imatrix), plan, name, "plan")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..jobs.errors import PlanError
from ..modelfile.inventory import tensor_kind, tensor_layer
from ..modelfile.type_catalog import tensor_bytes
from .quant_plan import QuantPlan


@dataclass(frozen=True)
class TensorChange:
    """One tensor written differently: effective types before and after, and the bytes the
    change adds (negative: saves)."""

    name: str
    layer: int | None
    kind: str
    before: str
    after: str
    delta_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer": self.layer,
            "kind": self.kind,
            "before": self.before,
            "after": self.after,
            "delta_bytes": self.delta_bytes,
        }


@dataclass(frozen=True)
class PlanDiff:
    """The changed tensors in file order and the size change of the whole file."""

    before_label: str
    after_label: str
    changes: tuple[TensorChange, ...]
    size_delta_bytes: int

    def __bool__(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before_label,
            "after": self.after_label,
            "size_delta_bytes": self.size_delta_bytes,
            "changes": [c.to_dict() for c in self.changes],
        }


def diff_plans(
    before: QuantPlan, after: QuantPlan, before_label: str = "", after_label: str = ""
) -> PlanDiff:
    """The tensors whose effective type differs; ``PlanError`` for plans of two models."""
    if before.model_fingerprint != after.model_fingerprint:
        raise PlanError(
            f"cannot compare plans of two models: {before_label or 'the first plan'} is for "
            f"{before.model_fingerprint}, {after_label or 'the second'} for "
            f"{after.model_fingerprint}"
        )
    changes = []
    for b in before.tensors:  # same fingerprint: same names and shapes, maybe another order
        a = after[b.name]
        if b.effective != a.effective:
            delta = tensor_bytes(a.effective, a.shape) - tensor_bytes(b.effective, b.shape)
            changes.append(
                TensorChange(
                    b.name,
                    tensor_layer(b.name),
                    tensor_kind(b.name),
                    b.effective,
                    a.effective,
                    delta,
                )
            )
    return PlanDiff(before_label, after_label, tuple(changes), after.size_bytes - before.size_bytes)
