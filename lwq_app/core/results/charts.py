"""The figures of the Results page, as data: the size-vs-KLD scatter with its Pareto front,
and the task-score and speed bars with their error bars.

The views draw exactly these numbers; the front, the ± and which points count are decided
here. Only figures measured under the project's setting enter the front: a flagged point is
drawn (marked) but compares with nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .compare import ResultsTable


@dataclass(frozen=True)
class ScatterPoint:
    """One variant on the scatter: file size (bytes) against μKLD (± its uncertainty)."""

    row: int  # in the table
    name: str
    path: Path
    size: int
    kld: float
    kld_unc: float
    stock: bool  # a stock mix (drawn with another symbol than a custom plan)
    comparable: bool  # measured under the project's setting


def scatter_points(table: ResultsTable) -> tuple[ScatterPoint, ...]:
    """Every variant with a KLD above 0 (the y axis is logarithmic; a KLD of exactly 0 is the
    base itself), in table order."""
    out = []
    for i, r in enumerate(table.rows):
        c = r.cell("kld")
        if r.is_base or r.kld is None or c.value is None or float(c.value) <= 0:
            continue
        out.append(
            ScatterPoint(
                i,
                r.name,
                r.path,
                r.file_bytes,
                float(c.value),
                float(c.unc or 0.0),
                r.stock_mix is not None,
                c.comparable,
            )
        )
    return tuple(out)


def dominates(a: ScatterPoint, b: ScatterPoint) -> bool:
    """``a`` is no larger and no worse than ``b``, and better in one of the two."""
    return a.size <= b.size and a.kld <= b.kld and (a.size < b.size or a.kld < b.kld)


def pareto_front(points: Sequence[ScatterPoint]) -> tuple[ScatterPoint, ...]:
    """The comparable points no other comparable point dominates (smaller file and lower
    KLD are better), by size then KLD. One sort and one sweep."""
    pool = sorted((p for p in points if p.comparable), key=lambda p: (p.size, p.kld, p.row))
    front: list[ScatterPoint] = []
    best = float("inf")
    for p in pool:
        if p.kld < best:
            front.append(p)
            best = p.kld
        elif p.kld == best and front and front[-1].size == p.size:
            front.append(p)  # the same point twice: neither dominates the other
    return tuple(front)


def pareto_steps(front: Sequence[ScatterPoint]) -> tuple[list[float], list[float]]:
    """The front as a step line: from each point right to the next one's size, then down to
    its KLD (what can be had for at most that size)."""
    xs: list[float] = []
    ys: list[float] = []
    for i, p in enumerate(front):
        if i:
            xs.append(float(p.size))
            ys.append(front[i - 1].kld)
        xs.append(float(p.size))
        ys.append(p.kld)
    return xs, ys


# --- bars ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BarSeries:
    """One variant's bars: a value and an error (stderr, σ) per category, None where it has
    no figure."""

    row: int
    name: str
    stock: bool
    values: tuple[float | None, ...]
    errors: tuple[float | None, ...]
    comparable: tuple[bool, ...]


@dataclass(frozen=True)
class BarChart:
    title: str
    unit: str
    categories: tuple[str, ...]  # the column headers
    keys: tuple[str, ...]  # the column keys
    series: tuple[BarSeries, ...]  # rows with at least one figure


def _bars(table: ResultsTable, prefix: str, title: str, unit: str) -> BarChart:
    cols = table.group(prefix)
    series = []
    for i, r in enumerate(table.rows):
        cells = [r.cell(c.key) for c in cols]
        if all(c.value is None for c in cells):
            continue
        series.append(
            BarSeries(
                i,
                r.name,
                r.stock_mix is not None,
                tuple(None if c.value is None else float(c.value) for c in cells),
                tuple(None if c.value is None else float(c.unc or 0.0) for c in cells),
                tuple(c.comparable for c in cells),
            )
        )
    return BarChart(
        title,
        unit,
        tuple(c.header.removesuffix(" t/s") for c in cols),
        tuple(c.key for c in cols),
        tuple(series),
    )


def task_bars(table: ResultsTable) -> BarChart:
    """Each benchmark's score (%) per variant, ± its stderr."""
    return _bars(table, "task:", "Task scores", "%")


def speed_bars(table: ResultsTable) -> BarChart:
    """Each bench test's tokens/s per variant, ± σ."""
    return _bars(table, "speed:", "Speed", "t/s")
