"""A plan laid out as layers × tensor kinds, the plan editor's grid.

Columns come in the importance heatmap's order (``modelfile.kind_sort_key``), so a cell of the
plan sits where its sensitivity does. It is rebuilt on every drag step, so it does plain
dictionary work only (a few ms for 80 layers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..modelfile.inventory import kind_sort_key, tensor_kind, tensor_layer
from ..modelfile.type_catalog import TYPES
from .quant_plan import QuantPlan


@dataclass(frozen=True)
class PlanCell:
    """One quantizable tensor of the plan as the grid shows it (``bpw``: the effective type's
    own bits per weight; ``n_bytes``: its exact size as written)."""

    name: str
    layer: int | None
    kind: str
    requested: str
    effective: str
    bpw: float
    fallback: bool
    n_bytes: int


@dataclass(frozen=True)
class PlanGrid:
    """Rows are layers (ascending), columns kinds; ``None`` where a layer has no such tensor.
    ``extra``: the quantizable tensors outside the layers (token_embd, output), file order."""

    layers: tuple[int, ...]
    kinds: tuple[str, ...]
    cells: tuple[tuple[PlanCell | None, ...], ...]
    extra: tuple[PlanCell, ...]
    _positions: Mapping[str, tuple[int, int]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def cell(self, i: int, j: int) -> PlanCell | None:
        return self.cells[i][j]

    def names_in(self, rows: Iterable[int], cols: Iterable[int]) -> list[str]:
        """The tensors of the present cells in ``rows`` × ``cols`` (row by row)."""
        cs = list(cols)
        out = []
        for i in rows:
            row = self.cells[i]
            for j in cs:
                c = row[j]
                if c is not None:
                    out.append(c.name)
        return out

    def row_names(self, i: int) -> list[str]:
        return [c.name for c in self.cells[i] if c is not None]

    def column_names(self, j: int) -> list[str]:
        return [c.name for row in self.cells if (c := row[j]) is not None]

    def position(self, name: str) -> tuple[int, int] | None:
        """(row, column) of a tensor's cell; None for an ``extra`` or unknown tensor."""
        return self._positions.get(name)


def plan_grid(plan: QuantPlan) -> PlanGrid:
    """The grid of ``plan``'s quantizable tensors. A second tensor of the same layer and kind
    (which llama.cpp models do not have) goes to ``extra`` so that no tensor is hidden."""
    placed: dict[tuple[int, str], PlanCell] = {}
    extra: list[PlanCell] = []
    for t in plan.tensors:
        if not t.quantizable:
            continue
        layer = tensor_layer(t.name)
        kind = tensor_kind(t.name)
        qt = TYPES[t.effective]
        rows = 1
        for d in t.shape[1:]:
            rows *= d
        c = PlanCell(
            t.name,
            layer,
            kind,
            t.requested,
            t.effective,
            qt.bpw,
            t.requested != t.effective,
            rows * qt.row_bytes(t.shape[0]),
        )
        if layer is None or (layer, kind) in placed:
            extra.append(c)
        else:
            placed[(layer, kind)] = c
    layers = tuple(sorted({k[0] for k in placed}))
    kinds = tuple(sorted({k[1] for k in placed}, key=kind_sort_key))
    li = {x: i for i, x in enumerate(layers)}
    ki = {k: j for j, k in enumerate(kinds)}
    grid: list[list[PlanCell | None]] = [[None] * len(kinds) for _ in layers]
    positions: dict[str, tuple[int, int]] = {}
    for (layer, kind), c in placed.items():
        i, j = li[layer], ki[kind]
        grid[i][j] = c
        positions[c.name] = (i, j)
    return PlanGrid(layers, kinds, tuple(tuple(r) for r in grid), tuple(extra), positions)
