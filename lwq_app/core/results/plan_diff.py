"""The per-tensor difference of two variants' plans, laid out on the plan editor's grid.

Each variant's plan is read back from its file (``plan_from_gguf``: the lwq sidecar where it
still describes the file, else the file's tensor types), so a stock mix made elsewhere
compares as well as a plan made here. Cells carry both effective types and the change in bits
per weight and bytes; the view colours ``delta_bpw`` and says what each cell is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..jobs.units import format_size
from ..modelfile.inventory import ModelInfo
from ..plan.diff import PlanDiff, diff_plans
from ..plan.grid import PlanCell, plan_grid
from ..plan.quant_plan import QuantPlan
from ..plan.readback import plan_from_gguf


@dataclass(frozen=True)
class DiffCell:
    """One quantizable tensor in both plans: effective types, their bpw, and the bytes the
    second plan adds (negative: saves)."""

    name: str
    layer: int | None
    kind: str
    before: str
    after: str
    before_bpw: float
    after_bpw: float
    delta_bytes: int

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def delta_bpw(self) -> float:
        return self.after_bpw - self.before_bpw


@dataclass(frozen=True)
class DiffGrid:
    """Layers × kinds as ``plan_grid`` lays them out; ``None`` where a layer has no such
    tensor; ``extra``: the tensors outside the layers (token_embd, output)."""

    before_label: str
    after_label: str
    layers: tuple[int, ...]
    kinds: tuple[str, ...]
    cells: tuple[tuple[DiffCell | None, ...], ...]
    extra: tuple[DiffCell, ...]
    diff: PlanDiff

    def delta_bpw(self) -> list[list[float]]:
        """The change in bits per weight of each cell (NaN where there is no tensor)."""
        return [[math.nan if c is None else c.delta_bpw for c in row] for row in self.cells]

    @property
    def n_changed(self) -> int:
        return len(self.diff.changes)

    def summary(self) -> str:
        """One line: how many tensors differ and what that does to the size."""
        if not self.diff:
            return f"{self.after_label} writes every tensor as {self.before_label} does"
        delta = self.diff.size_delta_bytes
        more = "more" if delta >= 0 else "less"
        return (
            f"{self.n_changed} tensors differ; {self.after_label} has {format_size(abs(delta))} "
            f"({delta:+,} bytes) {more} tensor data than {self.before_label}"
        )


def _cell(b: PlanCell, a: PlanCell) -> DiffCell:
    return DiffCell(b.name, b.layer, b.kind, b.effective, a.effective, b.bpw, a.bpw,
                    a.n_bytes - b.n_bytes)  # fmt: skip


def plan_diff_grid(
    before: QuantPlan, after: QuantPlan, before_label: str = "A", after_label: str = "B"
) -> DiffGrid:
    """The two plans cell by cell (``PlanError`` for plans of two models)."""
    diff = diff_plans(before, after, before_label, after_label)
    gb, ga = plan_grid(before), plan_grid(after)
    after_cells = {c.name: c for row in ga.cells for c in row if c is not None}
    after_cells.update({c.name: c for c in ga.extra})
    cells = tuple(
        tuple(None if c is None else _cell(c, after_cells[c.name]) for c in row) for row in gb.cells
    )
    extra = tuple(_cell(c, after_cells[c.name]) for c in gb.extra)
    return DiffGrid(before_label, after_label, gb.layers, gb.kinds, cells, extra, diff)


def variant_plan(path: Path, model: ModelInfo) -> QuantPlan:
    """The plan a variant's file was written with, for the base ``model`` (the base itself
    reads back as its own float types)."""
    return plan_from_gguf(Path(path), model)


def variants_diff(
    before: Path, after: Path, model: ModelInfo, before_label: str, after_label: str
) -> DiffGrid:
    """``plan_diff_grid`` of two files' plans (what the Results page's diff view shows)."""
    return plan_diff_grid(
        variant_plan(before, model), variant_plan(after, model), before_label, after_label
    )
