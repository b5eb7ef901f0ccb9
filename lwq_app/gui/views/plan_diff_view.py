"""The per-tensor difference of two variants' plans on the layers × kinds grid.

Pick two rows of the results table; the core reads both plans back from their files and
lays their difference out (``variants_diff``), off the GUI thread. A cell is white where both
write the same type, blue where the second plan spends more bits, red where fewer (the
strength is the change in bits per weight), grey where a layer has no such tensor. Hovering
a cell names the tensor and both types; the outside-layer tensors are listed below the grid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Signal
from PySide6.QtGui import QColor, QFont, QPainterPath, QPalette, QPen, QShowEvent, QTransform
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsPathItem,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.results.compare import ResultsTable
from lwq_app.core.results.plan_diff import DiffCell, DiffGrid, variants_diff

from ..context import AppContext

#: the change in bits per weight drawn at full colour
FULL_BPW = 4.0
ABSENT = (170, 170, 170, 255)
SAME = (238, 238, 238, 255)
#: the changed cells are labelled with their new type up to this many layers
MAX_LABELLED_LAYERS = 48


def diff_rgba(grid: DiffGrid) -> np.ndarray:
    """The image drawn: rows layers, columns kinds, RGBA (see the module docstring)."""
    out = np.zeros((len(grid.layers), len(grid.kinds), 4), np.uint8)
    for i, row in enumerate(grid.cells):
        for j, c in enumerate(row):
            if c is None:
                out[i, j] = ABSENT
                continue
            if not c.changed:
                out[i, j] = SAME
                continue
            t = max(0.3, min(1.0, abs(c.delta_bpw) / FULL_BPW))
            fade = int(255 * (1 - t))
            out[i, j] = (fade, fade, 255, 255) if c.delta_bpw > 0 else (255, fade, fade, 255)
    return out


def cell_text(c: DiffCell, grid: DiffGrid) -> str:
    if not c.changed:
        return f"{c.name}: {c.before} in both"
    return (
        f"{c.name}: {c.before} in {grid.before_label}, {c.after} in {grid.after_label} "
        f"({c.delta_bytes:+,} bytes, {c.delta_bpw:+.2f} bpw)"
    )


class _DiffImage(pg.ImageItem):
    def __init__(self, view: PlanDiffView) -> None:
        super().__init__(axisOrder="row-major")
        self.setTransform(QTransform().translate(-0.5, -0.5))
        self._view = view

    def hoverEvent(self, ev: Any) -> None:
        self.setToolTip("" if ev.isExit() else self._view.text_at(ev.pos()))


class PlanDiffView(QWidget):
    """Two pickers and the grid of their plans' difference."""

    diff_shown = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.table: ResultsTable | None = None
        self.grid: DiffGrid | None = None
        self._pending = 0
        self._stale = True
        self.first = QComboBox(self)
        self.second = QComboBox(self)
        for box, tip in ((self.first, "The plan compared from"), (self.second, "…and to")):
            box.setToolTip(tip)
            box.setMinimumContentsLength(18)
            box.currentIndexChanged.connect(self._picked)
        top = QHBoxLayout()
        top.addWidget(QLabel("Compare", self))
        top.addWidget(self.first, 1)
        top.addWidget(QLabel("with", self))
        top.addWidget(self.second, 1)
        self.glw = pg.GraphicsLayoutWidget(self)
        self.plot = self.glw.addPlot()
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.invertY(True)
        self.plot.setDefaultPadding(0.0)
        self.image = _DiffImage(self)
        self.plot.addItem(self.image)
        self.lines = QGraphicsPathItem()  # white lines between the cells
        pen = QPen(QColor("white"), 1)
        pen.setCosmetic(True)
        self.lines.setPen(pen)
        self.lines.setZValue(1)
        self.plot.addItem(self.lines)
        self.labels: list[pg.TextItem] = []
        self.summary = QLabel("Pick two variants.", self)
        self.summary.setWordWrap(True)
        self.extra = QLabel(self)
        self.extra.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.summary)
        lay.addWidget(self.extra)

    def set_table(self, table: ResultsTable | None) -> None:
        """Offer ``table``'s rows (keeping the picks where the files still are)."""
        keep = (self.first.currentData(), self.second.currentData())
        self.table = table
        for box, want, default in ((self.first, keep[0], 0), (self.second, keep[1], 1)):
            box.blockSignals(True)
            box.clear()
            for r in () if table is None else table.rows:
                box.addItem(r.name, str(r.path))
            i = box.findData(want) if want is not None else -1
            box.setCurrentIndex(i if i >= 0 else min(default, box.count() - 1))
            box.blockSignals(False)
        self._picked()

    def pick(self, first: int, second: int) -> None:
        """Compare table rows ``first`` and ``second``."""
        self.first.setCurrentIndex(first)
        self.second.setCurrentIndex(second)

    def showEvent(self, ev: QShowEvent) -> None:
        super().showEvent(ev)
        if self._stale:
            self._picked()

    def _picked(self, *_: object) -> None:
        """Compare the two picks (only while shown: reading two plans back costs a moment,
        and the table is rebuilt on every stored result)."""
        self._stale = not self.isVisible()
        if self._stale:
            return
        table, model = self.table, self._ctx.session.model
        a, b = self.first.currentIndex(), self.second.currentIndex()
        if table is None or model is None or a < 0 or b < 0 or a == b:
            self.summary.setText("Pick two different variants.")
            return
        ra, rb = table.rows[a], table.rows[b]
        self._pending += 1
        ticket = self._pending

        def done(grid: DiffGrid) -> None:
            if ticket == self._pending:
                self.show_grid(grid)

        self._ctx.runner.submit_call(
            f"Compare the plans of {ra.name} and {rb.name}",
            lambda: variants_diff(ra.path, rb.path, model, ra.name, rb.name),
            on_result=done,
        )

    def show_grid(self, grid: DiffGrid) -> None:
        self.grid = grid
        pal = self.palette()
        self.glw.setBackground(pal.color(QPalette.ColorRole.Base))
        self.image.setImage(diff_rgba(grid), levels=(0, 255))
        self._draw_lines(len(grid.layers), len(grid.kinds))
        self._draw_labels(grid)
        fg = pal.color(QPalette.ColorRole.Text)
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setPen(fg)
            self.plot.getAxis(name).setTextPen(fg)
        bottom = self.plot.getAxis("bottom")
        bottom.setTicks([[(float(j), k) for j, k in enumerate(grid.kinds)], []])
        step = max(1, math.ceil(len(grid.layers) / 32))
        left = self.plot.getAxis("left")
        left.setTicks(
            [[(float(i), str(layer)) for i, layer in enumerate(grid.layers) if i % step == 0], []]
        )
        self.plot.setRange(
            xRange=(-0.5, len(grid.kinds) - 0.5), yRange=(-0.5, len(grid.layers) - 0.5), padding=0
        )
        self.summary.setText(
            grid.summary() + f".  Blue: more bits in {grid.after_label}, red: fewer (the text: "
            f"its type), light grey: the same, dark grey: no such tensor."
        )
        changed = [cell_text(c, grid) for c in grid.extra if c.changed]
        self.extra.setText(
            "Outside the layers: " + ("; ".join(changed) if changed else "the same types")
        )
        self.diff_shown.emit()

    def _draw_lines(self, rows: int, cols: int) -> None:
        path = QPainterPath()
        for i in range(rows + 1):
            path.moveTo(-0.5, i - 0.5)
            path.lineTo(cols - 0.5, i - 0.5)
        for j in range(cols + 1):
            path.moveTo(j - 0.5, -0.5)
            path.lineTo(j - 0.5, rows - 0.5)
        self.lines.setPath(path)

    def _draw_labels(self, grid: DiffGrid) -> None:
        for t in self.labels:
            self.plot.removeItem(t)
        self.labels = []
        if len(grid.layers) > MAX_LABELLED_LAYERS:
            return
        font = QFont()
        font.setPointSizeF(7.0)
        for i, row in enumerate(grid.cells):
            for j, c in enumerate(row):
                if c is not None and c.changed:
                    t = pg.TextItem(c.after, color=(0, 0, 0), anchor=(0.5, 0.5))
                    t.setFont(font)
                    t.setPos(float(j), float(i))
                    t.setZValue(2)
                    self.plot.addItem(t)
                    self.labels.append(t)

    def text_at(self, pos: QPointF) -> str:
        """The hover text of the cell at image position ``pos``."""
        g = self.grid
        if g is None:
            return ""
        i, j = math.floor(pos.y()), math.floor(pos.x())
        if not (0 <= i < len(g.layers) and 0 <= j < len(g.kinds)):
            return ""
        c = g.cells[i][j]
        return f"layer {g.layers[i]}, {g.kinds[j]}: none" if c is None else cell_text(c, g)
