"""Colours and geometry of the plan grid (``PlanGridView``'s canvas).

Colours: viridis (perceptual, colour-blind safe) on a fixed log scale of 1.5–16 bits per
weight, so a colour means the same bits in every plan; the text is black or white, whichever
contrasts more. Geometry: the strip of outside-layer tensors and the column headers stay at
the top, the layer numbers at the left, and the body scrolls under them (like a spreadsheet),
so only the visible rows need painting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QColor, QFontMetrics

from lwq_app.core.plan import PlanCell, PlanGrid

COLOR_MAP = "viridis"
#: the fixed bits-per-weight range of the colour scale (log), clamped beyond it: the quantized
#: types span most of it (Q4_K and Q5_0 were hard to tell apart on 1.5–16; on 1.5–9 Q8_0 and F16
#: were both yellow), F16/F32 take its top colour
BPW_RANGE = (1.5, 12.0)
#: columns widen to fill the view up to this many pixels
MAX_COL_W = 132
_LUT = pg.colormap.get(COLOR_MAP).getLookupTable(nPts=256, alpha=False)


@lru_cache(maxsize=256)
def bpw_colors(bpw: float) -> tuple[QColor, QColor]:
    """(fill, text) of a cell of ``bpw`` bits per weight: the fill on the fixed log scale,
    the text black or white, whichever has the larger WCAG contrast against it."""
    lo, hi = BPW_RANGE
    t = (math.log(max(bpw, 1e-3)) - math.log(lo)) / (math.log(hi) - math.log(lo))
    r, g, b = (int(v) for v in _LUT[round(min(max(t, 0.0), 1.0) * 255)])

    def lin(c: int) -> float:
        f = c / 255
        return f / 12.92 if f <= 0.03928 else ((f + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    dark_text = (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05)
    return QColor(r, g, b), QColor(0, 0, 0) if dark_text else QColor(255, 255, 255)


def overlay_fractions(values: dict[str, float]) -> dict[str, float]:
    """Per tensor the dot's area as a fraction of the largest, 0 < f ≤ 1: value / max, or on
    a log scale when the positive values span more than 2 decades. Values ≤ 0 get no dot."""
    pos = {k: float(v) for k, v in values.items() if math.isfinite(v) and v > 0}
    if not pos:
        return {}
    lo, hi = min(pos.values()), max(pos.values())
    if hi / lo <= 100:
        return {k: v / hi for k, v in pos.items()}
    span = math.log(hi / lo)
    return {k: 0.08 + 0.92 * math.log(v / lo) / span for k, v in pos.items()}


class Hit(NamedTuple):
    """What a point is on: ``region`` is "cell", "row", "column", "strip", "corner" or ""."""

    region: str
    i: int = -1
    j: int = -1


@dataclass
class Prepared:
    """One ``PlanGrid`` ready to paint: per row its present cells with their colours."""

    grid: PlanGrid
    rows: list[list[tuple[int, PlanCell, QColor, QColor]]]
    strip: list[tuple[PlanCell, QColor, QColor]]
    order: dict[str, int] = field(default_factory=dict)  # name -> rank in grid order
    texts: set[str] = field(default_factory=set)  # the distinct types shown

    @classmethod
    def of(cls, grid: PlanGrid) -> Prepared:
        rows = []
        order: dict[str, int] = {}
        for row in grid.cells:
            out = []
            for j, c in enumerate(row):
                if c is not None:
                    out.append((j, c, *bpw_colors(c.bpw)))
                    order[c.name] = len(order)
            rows.append(out)
        strip = []
        for c in grid.extra:
            strip.append((c, *bpw_colors(c.bpw)))
            order[c.name] = len(order)
        texts = {c.effective for row in rows for _, c, _, _ in row}
        return cls(grid, rows, strip, order, texts | {c.effective for c, _, _ in strip})

    def displayed_types(self) -> list[list[str]]:
        g = self.grid
        out = [[""] * len(g.kinds) for _ in g.layers]
        for i, row in enumerate(self.rows):
            for j, c, _, _ in row:
                out[i][j] = c.effective
        return out

    def displayed_bpw(self) -> np.ndarray:
        g = self.grid
        out = np.full((len(g.layers), len(g.kinds)), np.nan)
        for i, row in enumerate(self.rows):
            for j, c, _, _ in row:
                out[i, j] = c.bpw
        return out


@dataclass
class Geometry:
    """Where everything is, in canvas pixels, for scroll offsets ``sx``, ``sy``. Columns
    widen to fill the view (up to ``MAX_COL_W``) and never narrow below their text."""

    n_rows: int
    n_cols: int
    min_col_w: int
    row_h: int
    left_w: int
    label_h: int  # the strip's name labels
    strip_min: list[int]
    col_w: int = 0
    strip_w: list[int] = field(default_factory=list)
    view_w: int = 0
    view_h: int = 0
    sx: int = 0
    sy: int = 0

    @classmethod
    def measure(cls, fm: QFontMetrics, grid: PlanGrid, overlay: bool) -> Geometry:
        row_h = fm.height() + 10
        dot = row_h if overlay else 0
        texts = {c.effective for row in grid.cells for c in row if c is not None}
        widest = max(fm.horizontalAdvance(t) for t in {*texts, "IQ4_XS"})
        col_w = max(widest + dot + 16, *(fm.horizontalAdvance(k) + 16 for k in grid.kinds), 64)
        left_w = fm.horizontalAdvance("layer") + 16
        strip_min = [
            max(
                fm.horizontalAdvance(short_name(c.name)) + 16,
                fm.horizontalAdvance(c.effective) + dot + 16,
            )
            for c in grid.extra
        ]
        label_h = fm.height() + 4 if grid.extra else 0
        g = cls(len(grid.layers), len(grid.kinds), col_w, row_h, left_w, label_h, strip_min)
        g.fit(0, 0)
        return g

    def fit(self, view_w: int, view_h: int) -> None:
        self.view_w, self.view_h = view_w, view_h
        fill = self.body_w // max(self.n_cols, 1)
        self.col_w = max(self.min_col_w, min(fill, MAX_COL_W))
        self.strip_w = [max(self.col_w, m) for m in self.strip_min]

    # frozen bands
    @property
    def strip_y(self) -> int:
        return self.label_h

    @property
    def header_y(self) -> int:
        return self.label_h + self.row_h + 8 if self.strip_min else 0

    @property
    def top_h(self) -> int:
        return self.header_y + self.row_h + 2

    @property
    def content_w(self) -> int:
        return max(self.n_cols * self.col_w, sum(self.strip_w))

    @property
    def content_h(self) -> int:
        return self.n_rows * self.row_h

    @property
    def body_w(self) -> int:
        return max(self.view_w - self.left_w, 0)

    @property
    def body_h(self) -> int:
        return max(self.view_h - self.top_h, 0)

    def x_of(self, j: int) -> int:
        return self.left_w + j * self.col_w - self.sx

    def y_of(self, i: int) -> int:
        return self.top_h + i * self.row_h - self.sy

    def cell_rect(self, i: int, j: int) -> QRect:
        return QRect(self.x_of(j), self.y_of(i), self.col_w, self.row_h)

    def row_header_rect(self, i: int) -> QRect:
        return QRect(0, self.y_of(i), self.left_w, self.row_h)

    def column_header_rect(self, j: int) -> QRect:
        return QRect(self.x_of(j), self.header_y, self.col_w, self.row_h)

    def strip_rect(self, k: int) -> QRect:
        x = self.left_w + sum(self.strip_w[:k]) - self.sx
        return QRect(x, self.strip_y, self.strip_w[k], self.row_h)

    def visible_rows(self) -> range:
        first = max(self.sy // self.row_h, 0)
        last = min((self.sy + self.body_h) // self.row_h + 1, self.n_rows)
        return range(first, last)

    def body_point(self, pos: QPoint) -> QPoint:
        """``pos`` in body content coordinates (0, 0 = the first cell's corner)."""
        return QPoint(pos.x() - self.left_w + self.sx, pos.y() - self.top_h + self.sy)

    def cells_in(self, a: QPoint, b: QPoint) -> tuple[range, range]:
        """Rows and columns of the cells the body-content rectangle ``a``–``b`` touches."""
        x0, x1 = sorted((a.x(), b.x()))
        y0, y1 = sorted((a.y(), b.y()))
        rows = range(max(y0 // self.row_h, 0), min(y1 // self.row_h + 1, self.n_rows))
        cols = range(max(x0 // self.col_w, 0), min(x1 // self.col_w + 1, self.n_cols))
        return rows, cols

    def hit(self, pos: QPoint) -> Hit:
        x, y = pos.x(), pos.y()
        if y < self.top_h:
            if x < self.left_w:
                return Hit("corner")
            for k in range(len(self.strip_w)):
                if self.strip_rect(k).contains(pos):
                    return Hit("strip", k)
            j = (x - self.left_w + self.sx) // self.col_w
            if self.header_y <= y < self.header_y + self.row_h and 0 <= j < self.n_cols:
                return Hit("column", -1, j)
            return Hit("")
        i = (y - self.top_h + self.sy) // self.row_h
        if not 0 <= i < self.n_rows:
            return Hit("")
        if x < self.left_w:
            return Hit("row", i)
        j = (x - self.left_w + self.sx) // self.col_w
        return Hit("cell", i, j) if 0 <= j < self.n_cols else Hit("")


def short_name(name: str) -> str:
    return name.removesuffix(".weight")
