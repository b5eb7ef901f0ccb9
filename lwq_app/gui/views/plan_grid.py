"""The plan editor's grid: layers × tensor kinds, each cell its tensor's effective type.

A pure view of the core's ``PlanGrid``: it never computes ladders, sizes or types, it draws
what it is given and says what the user asked for. Dragging a cell (or the selection, a
layer's row header, a kind's column header, an outside-layer tensor) up or down by
``STEP_PX`` pixels asks for one step more or fewer bits: ``drag_previewed`` while the count
changes, ``drag_finished`` on release, ``drag_cancelled`` on Esc. The page applies the steps
through the core and calls ``show_grid`` again, so a redraw must be cheap: the canvas is
painted by hand (``plan_grid_paint``) with only the visible rows drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from PySide6.QtCore import QEvent, QPoint, Qt, Signal
from PySide6.QtGui import (
    QContextMenuEvent,
    QHelpEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QGridLayout, QLabel, QScrollBar, QToolTip, QVBoxLayout, QWidget

from lwq_app.core.plan import PlanGrid

from .plan_grid_input import STEP_PX, GridInput
from .plan_grid_layout import Geometry, Prepared, overlay_fractions
from .plan_grid_paint import PaintState, cell_tooltip, legend_html
from .plan_grid_paint import paint as paint_grid

__all__ = ["STEP_PX", "PlanGridView"]


class _GridCanvas(QWidget):
    """The painted surface; every event goes to its ``PlanGridView``."""

    def __init__(self, view: PlanGridView) -> None:
        super().__init__(view)
        self._view = view
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(240, 160)

    def paintEvent(self, ev: QPaintEvent) -> None:
        self._view._paint(self)

    def resizeEvent(self, ev: QResizeEvent) -> None:
        self._view._sync()

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        g = self._view._sync()
        if g is not None:
            self._view._input.press(ev, g)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        g = self._view._geo
        if g is not None:
            self._view._input.move(ev, g)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        self._view._input.release(ev)

    def keyPressEvent(self, ev: QKeyEvent) -> None:
        if not self._view._input.key(ev):
            super().keyPressEvent(ev)

    def wheelEvent(self, ev: QWheelEvent) -> None:
        self._view._wheel(ev)

    def contextMenuEvent(self, ev: QContextMenuEvent) -> None:
        g = self._view._geo
        if g is not None:
            self._view._input.context(ev, g)

    def event(self, ev: QEvent) -> bool:
        if ev.type() == QEvent.Type.ToolTip and isinstance(ev, QHelpEvent):
            text = self._view.tooltip_at(ev.pos())
            if text:
                QToolTip.showText(ev.globalPos(), text, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(ev)


class PlanGridView(QWidget):
    """Draws a core ``PlanGrid``; selection, drags, +/- keys and context menus as signals."""

    selection_changed = Signal(list)  # the selected tensor names, grid order
    drag_previewed = Signal(list, int)  # names, steps (up = more bits), while dragging
    drag_finished = Signal(list, int)  # names, steps (0: nothing to do)
    drag_cancelled = Signal()
    step_requested = Signal(list, int)  # names, steps: the +/- keys on the selection
    context_requested = Signal(list, QPoint)  # names, global position

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._prep: Prepared | None = None
        self._geo: Geometry | None = None
        self._selected: set[str] = set()
        self._values: dict[str, float] | None = None
        self._label = ""
        self._dots: dict[str, float] = {}
        self._input = GridInput(self)
        self._canvas = _GridCanvas(self)
        self._vbar = QScrollBar(Qt.Orientation.Vertical, self)
        self._hbar = QScrollBar(Qt.Orientation.Horizontal, self)
        for bar in (self._vbar, self._hbar):
            bar.valueChanged.connect(self._scrolled)
        self.legend = QLabel(self)
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        area = QGridLayout()
        area.setSpacing(0)
        area.addWidget(self._canvas, 0, 0)
        area.addWidget(self._vbar, 0, 1)
        area.addWidget(self._hbar, 1, 0)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(area, 1)
        lay.addWidget(self.legend)

    # -- what the view shows ------------------------------------------------------------
    def show_grid(self, grid: PlanGrid | None) -> None:
        """Draw ``grid`` (None: nothing yet). The selection keeps the tensors still shown."""
        self._prep = None if grid is None else Prepared.of(grid)
        self._remeasure()
        if grid is None:
            self._input.reset()
        kept = {n for n in self._selected if self._prep is not None and n in self._prep.order}
        self._set_selection(kept)
        self._update_legend()
        self._canvas.update()

    def set_overlay(self, values: Mapping[str, float] | None, label: str = "") -> None:
        """A value per tensor (importance, sensitivity) drawn as a dot whose area is the value
        relative to the largest (log-scaled past 2 decades); None removes it."""
        self._values = None if values is None else {k: float(v) for k, v in values.items()}
        self._label = label if values is not None else ""
        self._dots = overlay_fractions(self._values) if self._values is not None else {}
        self._remeasure()
        self._update_legend()
        self._canvas.update()

    def overlay_shown(self) -> bool:
        return self._values is not None

    def grid(self) -> PlanGrid | None:
        return None if self._prep is None else self._prep.grid

    # -- selection ------------------------------------------------------------------------
    def selected_names(self) -> list[str]:
        """The selected tensors in grid order (row by row, then the outside-layer strip)."""
        order = {} if self._prep is None else self._prep.order
        return sorted(self._selected, key=order.__getitem__)

    def select_names(self, names: Iterable[str]) -> None:
        order = {} if self._prep is None else self._prep.order
        self._set_selection({n for n in names if n in order})

    def _set_selection(self, names: set[str]) -> None:
        if names != self._selected:
            self._selected = names
            self._canvas.update()
            self.selection_changed.emit(self.selected_names())

    def toggle_names(self, names: list[str]) -> None:
        """Ctrl+click: unselect ``names`` if all are selected, else add them."""
        now = set(self._selected)
        self._set_selection(now - set(names) if set(names) <= now else now | set(names))

    # -- helpers for tests and other views ---------------------------------------------------
    def canvas(self) -> QWidget:
        """The widget that paints the grid and receives its mouse and key events."""
        return self._canvas

    def ensure_visible(self, i: int, j: int = -1) -> None:
        """Scroll so that row ``i`` and column ``j`` are in view (-1: leave that axis)."""
        g = self._sync()
        if g is None:
            return
        if i >= 0:
            self._scroll_to(self._vbar, i * g.row_h, g.row_h, g.body_h)
        if j >= 0:
            self._scroll_to(self._hbar, j * g.col_w, g.col_w, g.body_w)

    def cell_center(self, i: int, j: int) -> QPoint:
        self.ensure_visible(i, j)
        return self._need_geo().cell_rect(i, j).center()

    def row_header_center(self, i: int) -> QPoint:
        self.ensure_visible(i)
        return self._need_geo().row_header_rect(i).center()

    def column_header_center(self, j: int) -> QPoint:
        self.ensure_visible(-1, j)
        return self._need_geo().column_header_rect(j).center()

    def strip_center(self, k: int) -> QPoint:
        g = self._need_geo()
        self._scroll_to(self._hbar, sum(g.strip_w[:k]), g.strip_w[k], g.body_w)
        return g.strip_rect(k).center()

    def displayed_types(self) -> list[list[str]]:
        """The type drawn in each cell ("" where a layer has no such tensor)."""
        return [] if self._prep is None else self._prep.displayed_types()

    def displayed_bpw(self) -> np.ndarray:
        """The bits per weight each cell is coloured by (NaN where absent)."""
        return np.zeros((0, 0)) if self._prep is None else self._prep.displayed_bpw()

    def fallback_mask(self) -> np.ndarray:
        """Where a cell is marked as a fallback (requested type not written)."""
        g = self.grid()
        if g is None:
            return np.zeros((0, 0), bool)
        return np.array([[c is not None and c.fallback for c in row] for row in g.cells], bool)

    def strip_types(self) -> list[str]:
        return [] if self._prep is None else [c.effective for c, _, _ in self._prep.strip]

    def tooltip_at(self, point: QPoint) -> str:
        """The hover text at ``point`` (canvas coordinates); "" over nothing."""
        g, prep = self._geo, self._prep
        if g is None or prep is None:
            return ""
        grid, hit = prep.grid, g.hit(point)
        if hit.region == "cell":
            c = grid.cell(hit.i, hit.j)
            if c is None:
                return f"layer {grid.layers[hit.i]}: no {grid.kinds[hit.j]} tensor"
            return cell_tooltip(c, self._values, self._label)
        if hit.region == "strip":
            return cell_tooltip(grid.extra[hit.i], self._values, self._label)
        if hit.region == "row":
            n = len(grid.row_names(hit.i))
            return (
                f"layer {grid.layers[hit.i]}: {n} tensors\n"
                "click: select the layer · drag up/down: more/fewer bits for all of it"
            )
        if hit.region == "column":
            n = len(grid.column_names(hit.j))
            return (
                f"{grid.kinds[hit.j]}: {n} tensors\n"
                "click: select the kind · drag up/down: more/fewer bits for all of it"
            )
        if hit.region == "corner":
            return "drag from here to select a rectangle of cells"
        return ""

    # -- geometry and painting ---------------------------------------------------------------
    def _remeasure(self) -> None:
        prep = self._prep
        self._geo = (
            None
            if prep is None
            else Geometry.measure(self._canvas.fontMetrics(), prep.grid, self._values is not None)
        )
        self._sync()

    def _sync(self) -> Geometry | None:
        """Bring the geometry up to the canvas size and the scroll bars' ranges and values."""
        g = self._geo
        if g is None:
            for bar in (self._vbar, self._hbar):
                bar.setRange(0, 0)
                bar.setVisible(False)
            return None
        g.fit(self._canvas.width(), self._canvas.height())
        for bar, content, view, step in (
            (self._vbar, g.content_h, g.body_h, g.row_h),
            (self._hbar, g.content_w, g.body_w, g.col_w),
        ):
            bar.setRange(0, max(content - view, 0))
            bar.setVisible(content > view)
            bar.setPageStep(max(view, 1))
            bar.setSingleStep(step)
        g.sx, g.sy = self._hbar.value(), self._vbar.value()
        return g

    def _need_geo(self) -> Geometry:
        g = self._sync()
        if g is None:
            raise RuntimeError("no plan is shown")
        return g

    def _scroll_to(self, bar: QScrollBar, start: int, size: int, view: int) -> None:
        if start < bar.value():
            bar.setValue(start)
        elif start + size > bar.value() + view:
            bar.setValue(start + size - view)
        self._sync()

    def _scrolled(self) -> None:
        self._sync()
        self._canvas.update()

    def _paint(self, canvas: QWidget) -> None:
        p = QPainter(canvas)
        try:
            self._paint_with(p, canvas)
        finally:
            p.end()

    def _paint_with(self, p: QPainter, canvas: QWidget) -> None:
        g, prep = self._geo, self._prep  # brought up to date by resizes, scrolls, show_grid
        if g is None or prep is None:
            p.fillRect(canvas.rect(), canvas.palette().base())
            p.drawText(canvas.rect(), Qt.AlignmentFlag.AlignCenter, "No plan yet.")
            return
        targets, band, label = self._input.marks(g)
        st = PaintState(self._selected, targets, self._dots, self._values is not None, band, label)
        paint_grid(p, g, prep, st, canvas.palette())

    def _update_legend(self) -> None:
        prep = self._prep
        label = None if self._values is None else self._label
        self.legend.setText("" if prep is None else legend_html(prep, label))

    def changeEvent(self, ev: QEvent) -> None:
        if ev.type() in (QEvent.Type.PaletteChange, QEvent.Type.FontChange):
            self._remeasure()
            self._canvas.update()
        super().changeEvent(ev)

    # -- wheel (the canvas's other input is in GridInput) ---------------------------------
    def _wheel(self, ev: QWheelEvent) -> None:
        g = self._geo
        if g is None:
            return
        delta = ev.pixelDelta()
        if delta.isNull():
            a = ev.angleDelta()
            delta = QPoint(a.x() * g.col_w // 120, a.y() * 3 * g.row_h // 120)
        dx, dy = delta.x(), delta.y()
        if ev.modifiers() & Qt.KeyboardModifier.ShiftModifier and not dx:
            dx, dy = dy, 0
        self._hbar.setValue(self._hbar.value() - dx)
        self._vbar.setValue(self._vbar.value() - dy)
        ev.accept()
