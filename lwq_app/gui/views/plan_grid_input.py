"""The plan grid's mouse and keys: what a press, a drag, a click or a key asks for.

A press on a cell, the selection, a header or a strip tensor becomes a drag whose step count
is the vertical distance in whole ``STEP_PX`` (toward zero, up positive); it stays a click
until the count first leaves 0. A press with Shift, or on nothing, draws a rubber band.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QContextMenuEvent, QKeyEvent, QKeySequence, QMouseEvent
from PySide6.QtWidgets import QApplication, QWidget

from lwq_app.core.plan import PlanGrid

from .plan_grid_layout import Geometry, Hit


class GridHost(Protocol):
    """What the input handler needs of its ``PlanGridView`` (a protocol: no import cycle)."""

    drag_previewed: Any
    drag_finished: Any
    drag_cancelled: Any
    step_requested: Any
    context_requested: Any

    def canvas(self) -> QWidget: ...
    def grid(self) -> PlanGrid | None: ...
    def select_names(self, names: Iterable[str]) -> None: ...
    def selected_names(self) -> list[str]: ...
    def toggle_names(self, names: list[str]) -> None: ...


#: vertical pixels of drag per step along a tensor's type ladder
STEP_PX = 24
_MOD = Qt.KeyboardModifier
_PLUS = (Qt.Key.Key_Plus, Qt.Key.Key_Equal)
_MINUS = (Qt.Key.Key_Minus, Qt.Key.Key_Underscore)


@dataclass
class _Drag:
    """A press on something that can be dragged: its tensors and what a plain click does."""

    names: list[str]
    start: QPoint
    on_click: Callable[[], None]
    pos: QPoint
    steps: int = 0
    active: bool = False  # the steps have left 0 at least once: the page shows a preview
    cancelled: bool = False


@dataclass
class _Band:
    """A rubber band, anchored in body content coordinates (it survives scrolling)."""

    anchor: QPoint
    pos: QPoint
    base: set[str] = field(default_factory=set)
    moved: bool = False


class GridInput:
    """The press/drag/release state of one ``PlanGridView``; it emits the view's signals."""

    def __init__(self, view: GridHost) -> None:
        self.v = view
        self.drag: _Drag | None = None
        self.band: _Band | None = None

    def reset(self) -> None:
        self.drag = self.band = None

    def marks(self, g: Geometry) -> tuple[set[str], QRect | None, tuple[QPoint, str] | None]:
        """(drag targets, rubber band in canvas pixels, step label) for painting."""
        d, b = self.drag, self.band
        band = None
        if b is not None and b.moved:
            band = QRect(b.anchor + QPoint(g.left_w - g.sx, g.top_h - g.sy), b.pos).normalized()
        if d is None or not d.active or d.cancelled:
            return set(), band, None
        return set(d.names), band, (d.pos, f"{d.steps:+d}")

    def names_at(self, hit: Hit) -> list[str]:
        grid = self.v.grid()
        if grid is None:
            return []
        if hit.region == "cell":
            c = grid.cell(hit.i, hit.j)
            return [] if c is None else [c.name]
        if hit.region == "strip":
            return [grid.extra[hit.i].name]
        if hit.region == "row":
            return grid.row_names(hit.i)
        if hit.region == "column":
            return grid.column_names(hit.j)
        return []

    def press(self, ev: QMouseEvent, g: Geometry) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        v = self.v
        pos, mods = ev.position().toPoint(), ev.modifiers()
        hit = g.hit(pos)
        names = self.names_at(hit)
        if mods & _MOD.ShiftModifier or not names:
            base = set(v.selected_names()) if mods & _MOD.ControlModifier else set()
            self.band = _Band(g.body_point(pos), pos, base)
            return
        if mods & _MOD.ControlModifier:
            v.toggle_names(names)
            return
        # a plain click selects what was pressed, once it is clear that it was no drag
        clicked = names
        if hit.region in ("cell", "strip"):
            if names[0] in v.selected_names():
                names = v.selected_names()  # the drag takes the whole selection
            else:
                v.select_names(clicked)
        self.drag = _Drag(names, pos, lambda: v.select_names(clicked), pos)

    def move(self, ev: QMouseEvent, g: Geometry) -> None:
        pos = ev.position().toPoint()
        d, b, v = self.drag, self.band, self.v
        if d is not None and not d.cancelled:
            d.pos = pos
            steps = int((d.start.y() - pos.y()) / STEP_PX)
            if steps != d.steps:
                d.steps, d.active = steps, True
                v.drag_previewed.emit(list(d.names), steps)
            if d.active:
                v.canvas().update()
        elif b is not None:
            b.pos = pos
            start = b.anchor + QPoint(g.left_w - g.sx, g.top_h - g.sy)
            if (pos - start).manhattanLength() >= QApplication.startDragDistance():
                b.moved = True
            grid = v.grid()
            if b.moved and grid is not None:
                rows, cols = g.cells_in(b.anchor, g.body_point(pos))
                v.select_names(b.base | set(grid.names_in(rows, cols)))
                v.canvas().update()

    def release(self, ev: QMouseEvent) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        d, b = self.drag, self.band
        self.reset()
        if d is not None and not d.cancelled:
            if d.active:
                self.v.drag_finished.emit(list(d.names), d.steps)
            else:
                d.on_click()
        elif b is not None and not b.moved:
            self.v.select_names(b.base)
        self.v.canvas().update()

    def key(self, ev: QKeyEvent) -> bool:
        """+/= and −/_ step the selection, Esc cancels a drag or clears, Ctrl+A selects all."""
        v, key = self.v, ev.key()
        if key in _PLUS or key in _MINUS:
            names = v.selected_names()
            if names and self.drag is None:
                v.step_requested.emit(names, 1 if key in _PLUS else -1)
            return True
        if key == Qt.Key.Key_Escape:
            d = self.drag
            if d is not None and not d.cancelled:
                d.cancelled = True  # the release is ignored
                if d.active:
                    v.drag_cancelled.emit()
            elif self.band is not None:
                v.select_names(self.band.base)
                self.band = None
            else:
                v.select_names([])
            v.canvas().update()
            return True
        grid = v.grid()
        if ev.matches(QKeySequence.StandardKey.SelectAll) and grid is not None:
            v.select_names([*(n for i in range(len(grid.layers)) for n in grid.row_names(i)),
                            *(c.name for c in grid.extra)])  # fmt: skip
            return True
        return False

    def context(self, ev: QContextMenuEvent, g: Geometry) -> None:
        """The tensors a context menu is for: the pressed cell's (or the selection, if the
        cell is in it), a header's row or column; from the keyboard, the selection."""
        v = self.v
        names = v.selected_names()
        if ev.reason() != QContextMenuEvent.Reason.Keyboard:
            hit = g.hit(ev.pos())
            names = self.names_at(hit)
            if hit.region in ("cell", "strip") and names:
                if names[0] not in v.selected_names():
                    v.select_names(names)
                names = v.selected_names()
        if names:
            v.context_requested.emit(names, ev.globalPos())
