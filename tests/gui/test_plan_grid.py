"""The plan grid widget against the core's ``PlanGrid`` of the real SmolLM2 (Q4_K_M).

It draws exactly the grid's types, bits and fallback flags; real mouse events on its canvas
drag one cell, the selection, a layer's row, a kind's column or an outside-layer tensor by
whole ``STEP_PX`` steps (previews while the count changes, one finish on release, Esc
cancels); clicks, Ctrl+clicks, headers and the rubber band select; +/− step the selection;
the overlay comes and goes; an 80-layer grid scrolls its cells into view and redraws fast.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QContextMenuEvent, QMouseEvent, QPalette
from PySide6.QtWidgets import QApplication, QWidget

import fixtures
from lwq_app.core.importance import StatisticsRequest, heatmap_for, imatrix_statistics
from lwq_app.core.importance.overlay import tensor_values
from lwq_app.core.modelfile import open_model
from lwq_app.core.plan import PlanGrid, plan_from_preset, plan_grid
from lwq_app.gui.theme import dark_palette
from lwq_app.gui.tour import mouse
from lwq_app.gui.views.plan_grid import STEP_PX, PlanGridView
from lwq_app.gui.views.plan_grid_layout import bpw_colors, overlay_fractions

LEFT = Qt.MouseButton.LeftButton
NONE = Qt.MouseButton.NoButton
NOMOD = Qt.KeyboardModifier.NoModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def press(widget: QWidget, pos: QPoint, mods: Qt.KeyboardModifier = NOMOD) -> None:
    mouse(widget, QMouseEvent.Type.MouseButtonPress, pos, LEFT, mods)


def move_to(widget: QWidget, start: QPoint, end: QPoint, mods: Qt.KeyboardModifier = NOMOD) -> None:
    """Move with the left button held from ``start`` to ``end`` in 4-pixel steps."""
    n = max(abs(end.x() - start.x()), abs(end.y() - start.y())) // 4 + 1
    for k in range(1, n + 1):
        p = start + (end - start) * (k / n)
        mouse(widget, QMouseEvent.Type.MouseMove, p, LEFT, mods)


def release(widget: QWidget, pos: QPoint, mods: Qt.KeyboardModifier = NOMOD) -> None:
    mouse(widget, QMouseEvent.Type.MouseButtonRelease, pos, NONE, mods)


def drag(widget: QWidget, start: QPoint, dy: int, mods: Qt.KeyboardModifier = NOMOD) -> None:
    """Press at ``start``, move by ``dy`` (negative: up), release."""
    end = start + QPoint(0, dy)
    press(widget, start, mods)
    move_to(widget, start, end, mods)
    release(widget, end, mods)


def click(widget: QWidget, pos: QPoint, mods: Qt.KeyboardModifier = NOMOD) -> None:
    press(widget, pos, mods)
    release(widget, pos, mods)


class Recorder:
    """Every emission of the view's signals, in order."""

    def __init__(self, view: PlanGridView) -> None:
        self.events: list[tuple] = []
        view.drag_previewed.connect(lambda n, s: self.events.append(("preview", n, s)))
        view.drag_finished.connect(lambda n, s: self.events.append(("finish", n, s)))
        view.drag_cancelled.connect(lambda: self.events.append(("cancel",)))
        view.step_requested.connect(lambda n, s: self.events.append(("step", n, s)))
        view.context_requested.connect(lambda n, p: self.events.append(("context", n, p)))

    def of(self, kind: str) -> list[tuple]:
        return [e[1:] for e in self.events if e[0] == kind]


@pytest.fixture(scope="module")
def smol_grid(smollm2: Path) -> PlanGrid:
    return plan_grid(plan_from_preset(open_model(smollm2), "Q4_K_M"))


@pytest.fixture(scope="module")
def deep_grid() -> PlanGrid:
    return plan_grid(plan_from_preset(open_model(fixtures.deep_model()), "Q4_K_M"))


@pytest.fixture
def view(qtbot, qapp, smol_grid: PlanGrid) -> Iterator[PlanGridView]:
    v = PlanGridView()
    qtbot.addWidget(v)
    v.resize(760, 640)
    v.show()
    qtbot.waitExposed(v)
    v.show_grid(smol_grid)
    yield v


def _cells(grid: PlanGrid) -> list[tuple[int, int]]:
    return [(i, j) for i, row in enumerate(grid.cells) for j, c in enumerate(row) if c]


# -- what is drawn ------------------------------------------------------------------------


def test_shows_exactly_the_grids_types_bits_and_fallbacks(
    view: PlanGridView, smol_grid: PlanGrid
) -> None:
    g = smol_grid
    assert view.displayed_types() == [[c.effective if c else "" for c in row] for row in g.cells]
    bpw = np.array([[c.bpw if c else np.nan for c in row] for row in g.cells])
    np.testing.assert_array_equal(view.displayed_bpw(), bpw)
    assert view.strip_types() == [c.effective for c in g.extra] == ["Q8_0"]
    flags = np.array([[bool(c and c.fallback) for c in row] for row in g.cells])
    np.testing.assert_array_equal(view.fallback_mask(), flags)
    assert flags.any() and not flags.all()  # SmolLM2's 576-wide rows: Q4_K falls back
    legend = view.legend.text()
    for t in {c.effective for row in g.cells for c in row if c}:
        assert t in legend
    assert "fallback" in legend


def test_cell_pixels_have_their_bits_colour(qtbot, view: PlanGridView, smol_grid: PlanGrid) -> None:
    """The one pixel test: a cell's fill (beside its text) is its bpw's colour."""
    i, j = 4, 6  # ffn_down of layer 4: Q4_K, no fallback
    c = smol_grid.cell(i, j)
    assert c is not None and not c.fallback
    centre = view.cell_center(i, j)
    image = view.canvas().grab().toImage()
    dpr = image.devicePixelRatio()
    px = image.pixelColor(int((centre.x() - view._need_geo().col_w // 2 + 5) * dpr),
                          int(centre.y() * dpr))  # fmt: skip
    assert px.rgb() == bpw_colors(c.bpw)[0].rgb()


def test_tooltip_names_tensor_types_bits_and_bytes(view: PlanGridView, smol_grid: PlanGrid) -> None:
    i, j = next((i, j) for i, j in _cells(smol_grid) if smol_grid.cell(i, j).fallback)  # type: ignore[union-attr]
    c = smol_grid.cell(i, j)
    assert c is not None
    tip = view.tooltip_at(view.cell_center(i, j))
    assert c.name in tip
    assert f"requested {c.requested}, written {c.effective}" in tip
    assert f"{c.bpw:.4g} bits per weight" in tip and f"{c.n_bytes:,} bytes" in tip
    assert "layer 0" in view.tooltip_at(view.row_header_center(0))
    assert smol_grid.kinds[2] in view.tooltip_at(view.column_header_center(2))
    assert smol_grid.extra[0].name in view.tooltip_at(view.strip_center(0))


def test_overlay_on_and_off(
    view: PlanGridView, smol_grid: PlanGrid, smollm2: Path, golden_imatrix: Path
) -> None:
    stats = imatrix_statistics(StatisticsRequest(golden_imatrix))
    values = tensor_values(heatmap_for(stats, "sum_act2", open_model(smollm2)))
    assert not view.overlay_shown()
    view.set_overlay(values, "importance")
    assert view.overlay_shown()
    assert "● area = importance" in view.legend.text()
    name = smol_grid.cell(0, 0).name  # type: ignore[union-attr]
    assert f"importance: {values[name]:.4g}" in view.tooltip_at(view.cell_center(0, 0))
    view.canvas().repaint()
    view.set_overlay(None)
    assert not view.overlay_shown()
    assert "importance" not in view.legend.text()
    assert "importance" not in view.tooltip_at(view.cell_center(0, 0))


def test_overlay_dot_areas() -> None:
    assert overlay_fractions({"a": 1.0, "b": 4.0, "c": 0.0}) == {"a": 0.25, "b": 1.0}
    wide = overlay_fractions({"a": 1.0, "b": 10.0, "c": 1e4})  # 4 decades: log-scaled
    assert wide["c"] == pytest.approx(1.0) and wide["a"] == pytest.approx(0.08)
    assert wide["b"] == pytest.approx(0.08 + 0.92 / 4)


def test_dark_palette_headers(qtbot, view: PlanGridView) -> None:
    view.setPalette(dark_palette())
    r = view._need_geo().column_header_rect(0)
    image = view.canvas().grab().toImage()
    dpr = image.devicePixelRatio()
    px = image.pixelColor(int((r.x() + 3) * dpr), int((r.y() + 3) * dpr))
    assert px.rgb() == dark_palette().color(QPalette.ColorRole.Button).rgb()


# -- dragging -------------------------------------------------------------------------------


def test_drag_one_cell_up_two_steps(view: PlanGridView, smol_grid: PlanGrid) -> None:
    rec = Recorder(view)
    name = smol_grid.cell(3, 1).name  # type: ignore[union-attr]
    drag(view.canvas(), view.cell_center(3, 1), -2 * STEP_PX - STEP_PX // 2)
    assert rec.events == [("preview", [name], 1), ("preview", [name], 2), ("finish", [name], 2)]
    assert view.selected_names() == [name]


def test_drag_down_and_less_than_a_step(view: PlanGridView, smol_grid: PlanGrid) -> None:
    rec = Recorder(view)
    name = smol_grid.cell(5, 0).name  # type: ignore[union-attr]
    drag(view.canvas(), view.cell_center(5, 0), STEP_PX - 1)  # rounds toward zero: a click
    assert rec.events == [] and view.selected_names() == [name]
    drag(view.canvas(), view.cell_center(5, 0), STEP_PX + 3)
    assert rec.events == [("preview", [name], -1), ("finish", [name], -1)]
    rec.events.clear()
    start = view.cell_center(5, 0)  # up one step and back: the page must drop its preview
    press(view.canvas(), start)
    move_to(view.canvas(), start, start - QPoint(0, STEP_PX + 2))
    move_to(view.canvas(), start - QPoint(0, STEP_PX + 2), start)
    release(view.canvas(), start)
    assert rec.events == [("preview", [name], 1), ("preview", [name], 0), ("finish", [name], 0)]


def test_drag_selection_row_column_and_strip(view: PlanGridView, smol_grid: PlanGrid) -> None:
    g, canvas = smol_grid, view.canvas()
    rec = Recorder(view)
    picked = [g.cell(2, 1).name, g.cell(7, 4).name, g.cell(9, 6).name]  # type: ignore[union-attr]
    view.select_names(reversed(picked))
    assert view.selected_names() == picked  # grid order
    drag(canvas, view.cell_center(7, 4), -STEP_PX - 2)
    assert rec.of("finish") == [(picked, 1)]
    assert view.selected_names() == picked  # a drag keeps the selection

    drag(canvas, view.cell_center(0, 0), -STEP_PX - 2)  # outside the selection: that cell
    assert rec.of("finish")[-1] == ([g.cell(0, 0).name], 1)  # type: ignore[union-attr]
    assert view.selected_names() == [g.cell(0, 0).name]  # type: ignore[union-attr]

    drag(canvas, view.row_header_center(4), -2 * STEP_PX - 2)
    assert rec.of("finish")[-1] == (g.row_names(4), 2)
    drag(canvas, view.column_header_center(3), 3 * STEP_PX + 2)
    assert rec.of("finish")[-1] == (g.column_names(3), -3)
    drag(canvas, view.strip_center(0), -STEP_PX - 2)
    assert rec.of("finish")[-1] == ([g.extra[0].name], 1)
    assert [e[0] for e in rec.events].count("finish") == 5


def test_escape_cancels_a_drag(qtbot, view: PlanGridView, smol_grid: PlanGrid) -> None:
    rec = Recorder(view)
    canvas, start = view.canvas(), view.cell_center(1, 1)
    end = start - QPoint(0, 2 * STEP_PX + 4)
    press(canvas, start)
    move_to(canvas, start, end)
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    move_to(canvas, end, end - QPoint(0, STEP_PX))  # ignored after the cancel
    release(canvas, end)
    name = smol_grid.cell(1, 1).name  # type: ignore[union-attr]
    assert rec.events == [("preview", [name], 1), ("preview", [name], 2), ("cancel",)]


def test_deep_grid_scrolls_cells_into_view(qtbot, view: PlanGridView, deep_grid: PlanGrid) -> None:
    assert len(deep_grid.layers) == 80 and len(deep_grid.kinds) == 7
    view.show_grid(deep_grid)
    assert not view.fallback_mask().any()  # rows of 256: every k-quant fits
    rec = Recorder(view)
    drag(view.canvas(), view.cell_center(77, 6), -STEP_PX - 2)
    assert rec.of("finish") == [([deep_grid.cell(77, 6).name], 1)]  # type: ignore[union-attr]
    drag(view.canvas(), view.row_header_center(2), -STEP_PX - 2)
    assert rec.of("finish")[-1] == (deep_grid.row_names(2), 1)


def test_redraw_of_80_layers_is_fast(qtbot, view: PlanGridView, deep_grid: PlanGrid) -> None:
    """A loose guard (the lead's benchmark holds the 16 ms budget): show_grid + repaint."""
    view.resize(900, 700)
    times = []
    for _ in range(15):
        t = time.perf_counter()
        view.show_grid(deep_grid)
        view.canvas().repaint()
        times.append(time.perf_counter() - t)
    assert sorted(times)[len(times) // 2] < 0.05


# -- selection, keys, context menu ----------------------------------------------------------


def test_click_ctrl_click_headers_and_escape(
    qtbot, view: PlanGridView, smol_grid: PlanGrid
) -> None:
    g, canvas = smol_grid, view.canvas()
    changes: list[list[str]] = []
    view.selection_changed.connect(changes.append)
    a, b = g.cell(0, 0).name, g.cell(3, 2).name  # type: ignore[union-attr]
    click(canvas, view.cell_center(0, 0))
    assert view.selected_names() == [a] and changes[-1] == [a]
    click(canvas, view.cell_center(3, 2), CTRL)
    assert view.selected_names() == [a, b]
    click(canvas, view.cell_center(0, 0), CTRL)
    assert view.selected_names() == [b]
    click(canvas, view.row_header_center(6))
    assert view.selected_names() == g.row_names(6)
    click(canvas, view.column_header_center(5))
    assert view.selected_names() == g.column_names(5)
    click(canvas, view.strip_center(0), CTRL)
    assert view.selected_names() == [*g.column_names(5), g.extra[0].name]
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert view.selected_names() == [] and changes[-1] == []


def test_rubber_band_selects_a_rectangle(view: PlanGridView, smol_grid: PlanGrid) -> None:
    canvas = view.canvas()
    start, end = view.cell_center(1, 1), view.cell_center(3, 2)
    press(canvas, start, SHIFT)
    move_to(canvas, start, end, SHIFT)
    release(canvas, end, SHIFT)
    assert view.selected_names() == smol_grid.names_in(range(1, 4), range(1, 3))
    corner = QPoint(5, view.row_header_center(0).y() - view._need_geo().row_h)  # "layer"
    end = view.cell_center(1, 1)
    press(canvas, corner)
    move_to(canvas, corner, end)
    release(canvas, end)
    assert view.selected_names() == smol_grid.names_in(range(0, 2), range(0, 2))
    click(canvas, QPoint(5, 5))  # a click on nothing clears
    assert view.selected_names() == []


def test_plus_and_minus_step_the_selection(qtbot, view: PlanGridView, smol_grid: PlanGrid) -> None:
    canvas = view.canvas()
    assert canvas.focusPolicy() == Qt.FocusPolicy.StrongFocus
    rec = Recorder(view)
    qtbot.keyClick(canvas, Qt.Key.Key_Plus)  # nothing selected: nothing asked
    assert rec.events == []
    click(canvas, view.row_header_center(2))
    names = smol_grid.row_names(2)
    for key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal, Qt.Key.Key_Minus, Qt.Key.Key_Underscore):
        qtbot.keyClick(canvas, key)
    assert rec.of("step") == [(names, 1), (names, 1), (names, -1), (names, -1)]


def test_context_menu_on_a_cell_and_on_the_selection(
    view: PlanGridView, smol_grid: PlanGrid
) -> None:
    rec = Recorder(view)
    canvas = view.canvas()

    def context(pos: QPoint) -> None:
        QApplication.sendEvent(
            canvas, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, canvas.mapToGlobal(pos))
        )

    pos = view.cell_center(2, 3)
    context(pos)
    name = smol_grid.cell(2, 3).name  # type: ignore[union-attr]
    assert rec.of("context") == [([name], canvas.mapToGlobal(pos))]
    picked = smol_grid.names_in(range(0, 2), range(0, 7))
    view.select_names(picked)
    context(view.cell_center(1, 5))
    assert rec.of("context")[-1][0] == picked


def test_show_grid_keeps_the_selection_and_none_clears(
    view: PlanGridView, smol_grid: PlanGrid, deep_grid: PlanGrid
) -> None:
    view.select_names(smol_grid.row_names(3))
    view.show_grid(smol_grid)
    assert view.selected_names() == smol_grid.row_names(3)
    view.show_grid(None)
    assert view.selected_names() == [] and view.displayed_types() == []
    assert view.tooltip_at(QPoint(50, 50)) == ""
    view.canvas().repaint()
