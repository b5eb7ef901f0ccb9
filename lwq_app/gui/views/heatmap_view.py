"""A layers × tensor-kinds heatmap of one of the core's ``Heatmap``s, with what it needs to read.

The core builds the matrix (``heatmap_for``: NaN and ``present`` for missing cells, the
outside-layer tensors in ``extra``, the per-layer profile in ``layer_values``); this widget
only draws it. Its one transform is for display: log10 where a value is positive. Missing
cells are NaN in the image, which pyqtgraph draws transparent, so they are never mistaken for
zero; on a log scale the cells ≤ 0 (no logarithm) are grey with a cross. Hovering a cell
names its tensor and its exact value (tooltip and ``cell_hovered``), a click emits
``cell_clicked`` with the tensor's name. Colours: viridis (perceptual, colour-blind safe).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath, QPalette, QPen, QTransform
from PySide6.QtWidgets import QGraphicsPathItem, QLabel, QStackedWidget, QVBoxLayout, QWidget

from lwq_app.core.importance import Heatmap, heatmap_csv
from lwq_app.core.jobs.atomic import atomic_write_text

#: perceptually uniform and colour-blind safe, for magnitudes
COLOR_MAP = "viridis"
#: RGBA of a cell that has a value but no logarithm (≤ 0) on a log scale
NONPOSITIVE_RGBA = (150, 150, 150, 255)
EXPORT_WIDTH = 1440
_AXIS_WIDTH = 44


def display_values(values: np.ndarray, log: bool) -> tuple[np.ndarray, np.ndarray]:
    """The array drawn (float64, NaN where missing or, on a log scale, ≤ 0) and the mask of
    cells that have a value ≤ 0 on a log scale (drawn grey)."""
    v = np.asarray(values, dtype=np.float64)
    if not log:
        return v.copy(), np.zeros(v.shape, bool)
    positive = np.isfinite(v) & (v > 0)
    out = np.full(v.shape, np.nan)
    np.log10(v, out=out, where=positive)
    return out, np.isfinite(v) & ~positive


class _CellImage(pg.ImageItem):
    """Row-major cells centred on integer ticks, answering hover and left clicks by cell."""

    def __init__(self, text_of: Callable[[int, int], str], clicked: Callable[[int, int], None]):
        super().__init__(axisOrder="row-major")
        self.setTransform(QTransform().translate(-0.5, -0.5))
        self._text_of, self._clicked = text_of, clicked

    def cell_at(self, pos: QPointF) -> tuple[int, int] | None:
        if self.image is None:
            return None
        i, j = math.floor(pos.y()), math.floor(pos.x())
        rows, cols = self.image.shape[:2]
        return (i, j) if 0 <= i < rows and 0 <= j < cols else None

    def hoverEvent(self, ev: Any) -> None:
        cell = None if ev.isExit() else self.cell_at(ev.pos())
        self.setToolTip("" if cell is None else self._text_of(*cell))

    def mouseClickEvent(self, ev: Any) -> None:
        cell = self.cell_at(ev.pos())
        if ev.button() == Qt.MouseButton.LeftButton and cell is not None:
            ev.accept()
            self._clicked(*cell)
            return
        super().mouseClickEvent(ev)


class _Grid:
    """One image of cells in a plot, with its overlay for cells ≤ 0 on a log scale and a
    dashed outline around missing cells (which stay transparent in the image)."""

    def __init__(self, plot: pg.PlotItem, image: _CellImage) -> None:
        self.image = image
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setTransform(QTransform().translate(-0.5, -0.5))
        self.marks = pg.ScatterPlotItem(symbol="x", size=9, pen=pg.mkPen("k"), brush=None)
        self.outline = QGraphicsPathItem()
        pen = QPen(QColor(128, 128, 128), 0, Qt.PenStyle.DotLine)
        pen.setCosmetic(True)
        self.outline.setPen(pen)
        for z, item in enumerate((image, self.overlay, self.marks, self.outline)):
            item.setZValue(z)
            plot.addItem(item)

    def draw(self, shown: np.ndarray, nonpositive: np.ndarray, missing: np.ndarray) -> None:
        self.image.setImage(shown, autoLevels=False)
        rgba = np.zeros((*shown.shape, 4), np.uint8)
        rgba[nonpositive] = NONPOSITIVE_RGBA
        self.overlay.setImage(rgba, levels=(0, 255))
        rows, cols = np.nonzero(nonpositive)
        self.marks.setData(x=cols.astype(float), y=rows.astype(float))
        path = QPainterPath()
        for i, j in zip(*np.nonzero(missing), strict=True):
            path.addRect(QRectF(j - 0.45, i - 0.45, 0.9, 0.9))
        self.outline.setPath(path)


def _bare(plot: pg.PlotItem) -> None:
    plot.setMouseEnabled(x=False, y=False)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.setDefaultPadding(0.0)
    plot.invertY(True)


class HeatmapView(QWidget):
    """Draws a core ``Heatmap``: cells, outside-layer strip, per-layer bars, colour bar."""

    cell_hovered = Signal(str)  # the hover text of the cell under the mouse
    cell_clicked = Signal(str)  # the tensor name of the clicked cell

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hm: Heatmap | None = None
        self.title = ""
        self._missing = "no value"
        self._log = False
        self._shown = np.zeros((0, 0))
        self._nonpos = np.zeros((0, 0), bool)
        self._strip_shown = np.zeros((1, 0))
        self.glw = pg.GraphicsLayoutWidget(self)
        self.glw.setToolTip("")
        self.legend = QLabel(self)
        self.legend.setWordWrap(True)
        self.placeholder = QLabel("No heatmap yet.", self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.glw)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.legend)

        self.strip = self.glw.addPlot(row=0, col=0)
        _bare(self.strip)
        self.strip.getAxis("left").setTicks([[(0, "")], []])
        self.strip.setLabel("left", "other")
        self.strip.getAxis("left").enableAutoSIPrefix(False)
        self.strip.setMaximumHeight(112)
        self.strip_grid = _Grid(self.strip, _CellImage(self._strip_hovered, self._strip_clicked))

        self.plot = self.glw.addPlot(row=1, col=0)
        _bare(self.plot)
        self.plot.setLabel("left", "layer")
        self.plot.setLabel("bottom", "tensor kind")
        self.grid = _Grid(self.plot, _CellImage(self._hovered, self._clicked))
        self.strip.setXLink(self.plot)
        for p in (self.strip, self.plot):  # kind names may be a little wider than a cell
            p.getAxis("bottom").setStyle(hideOverlappingLabels=48)
        for p in (self.strip, self.plot):
            p.getAxis("left").setWidth(_AXIS_WIDTH)

        self.bar_plot = self.glw.addPlot(row=1, col=1)
        _bare(self.bar_plot)
        self.bar_plot.hideAxis("left")
        self.bar_plot.setYLink(self.plot)
        self.bar_plot.getAxis("bottom").setTickDensity(0.5)
        self.bar_plot.setMinimumWidth(150)
        self.bar_plot.setMaximumWidth(260)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=(86, 180, 233))
        self.bar_plot.addItem(self.bars)
        self.bar_plot.setToolTip("Each layer's cells combined (the core's per-layer profile)")

        self.colorbar = pg.ColorBarItem(colorMap=COLOR_MAP, interactive=False, width=18)
        self.colorbar.setImageItem([self.grid.image, self.strip_grid.image])
        self.glw.addItem(self.colorbar, row=1, col=2)
        layout = self.glw.ci.layout
        layout.setColumnStretchFactor(0, 5)
        layout.setColumnStretchFactor(1, 2)
        layout.setRowStretchFactor(1, 10)
        self._restyle()

    # -- what the view shows ------------------------------------------------------------
    def show_heatmap(
        self,
        hm: Heatmap,
        *,
        log: bool | None = None,
        title: str | None = None,
        missing: str = "no value",
    ) -> None:
        """Draw ``hm`` (``log``: the scale, None keeps the current one; ``title``: a readable
        name of what it shows, default the core's label; ``missing``: why a tensor that
        exists has no value, for the hover text)."""
        self.hm = hm
        self.title = title or hm.label
        self._missing = missing
        if log is not None:
            self._log = bool(log)
        self._redraw()

    def set_log_scale(self, on: bool) -> None:
        self._log = bool(on)
        if self.hm is not None:
            self._redraw()

    def log_scale(self) -> bool:
        return self._log

    def label(self) -> str:
        """The readable name of what is shown ("" when nothing is)."""
        return "" if self.hm is None else self.title

    def graphics_view(self) -> pg.GraphicsLayoutWidget:
        """The pyqtgraph view the cells are drawn in (for mouse events and exports)."""
        return self.glw

    def clear(self, message: str = "No heatmap yet.") -> None:
        """Show ``message`` instead of a heatmap (no imatrix yet)."""
        self.hm = None
        self._shown, self._nonpos = np.zeros((0, 0)), np.zeros((0, 0), bool)
        self.placeholder.setText(message)
        self.stack.setCurrentWidget(self.placeholder)
        empty, none = np.zeros((0, 0)), np.zeros((0, 0), bool)
        self.grid.draw(empty, none, none)
        self.strip_grid.draw(empty, none, none)
        self.strip.setTitle("")
        self.bars.setOpts(x0=[], y=[], width=[])
        self.legend.setText("")

    def displayed_array(self) -> np.ndarray:
        """Exactly the array given to the image (after the display transform)."""
        return self._shown.copy()

    def axis_labels(self) -> tuple[list[str], list[str]]:
        """(left-axis layer labels, bottom-axis kind labels) as the axes hold them."""

        def labels(axis: pg.AxisItem) -> list[str]:
            levels = getattr(axis, "_tickLevels", None) or [[]]
            return [str(text) for _, text in levels[0]]

        return labels(self.plot.getAxis("left")), labels(self.plot.getAxis("bottom"))

    def scene_pos_of_cell(self, i: int, j: int) -> QPointF:
        """The scene position of the centre of cell (row ``i``, column ``j``), with the
        layout and the view's transform brought up to date first (they update lazily)."""
        self.glw.ci.layout.activate()
        self.plot.vb.prepareForPaint()
        return self.grid.image.mapToScene(QPointF(j + 0.5, i + 0.5))

    # -- hover and click --------------------------------------------------------------------
    def _value_text(self, name: str, v: float | None, why_missing: str) -> str:
        if v is None:
            return f"{name}\n{self.title}: missing ({why_missing})"
        text = f"{name}\n{self.title}: {float(v)!r}"
        if self._log:
            text += f"\nlog10: {math.log10(v):.4f}" if v > 0 else "\n≤ 0: no logarithm (grey)"
        return text

    def cell_text(self, i: int, j: int) -> str:
        """The hover text of cell (row ``i``, column ``j``): tensor name and exact value."""
        hm = self.hm
        if hm is None:
            return ""
        layer, kind = hm.layers[i], hm.kinds[j]
        name = hm.tensor_name(layer, kind)
        exists = (layer, kind) in hm.names
        v = float(hm.values[i, j]) if hm.present[i, j] else None
        return self._value_text(
            name, v, self._missing if exists else "no such tensor in this layer"
        )

    def strip_text(self, _i: int, k: int) -> str:
        """The hover text of the ``k``-th tensor outside the layers."""
        if self.hm is None or k >= len(self._strip_names()):
            return ""
        name = self._strip_names()[k]
        return self._value_text(name, self.hm.extra.get(name), self._missing)

    def _hovered(self, i: int, j: int) -> str:
        text = self.cell_text(i, j)
        self.cell_hovered.emit(text)
        return text

    def _strip_hovered(self, i: int, k: int) -> str:
        text = self.strip_text(i, k)
        self.cell_hovered.emit(text)
        return text

    def _clicked(self, i: int, j: int) -> None:
        if self.hm is not None:
            self.cell_clicked.emit(self.hm.tensor_name(self.hm.layers[i], self.hm.kinds[j]))

    def _strip_clicked(self, _i: int, k: int) -> None:
        names = self._strip_names()
        if k < len(names):
            self.cell_clicked.emit(names[k])

    def _strip_names(self) -> tuple[str, ...]:
        hm = self.hm
        return () if hm is None else (hm.extra_names or tuple(hm.extra))

    # -- drawing ------------------------------------------------------------------------------
    def _redraw(self) -> None:
        hm = self.hm
        assert hm is not None
        self.stack.setCurrentWidget(self.glw)
        self._shown, self._nonpos = display_values(hm.values, self._log)
        names = self._strip_names()
        extra = np.array([[hm.extra.get(n, np.nan) for n in names]], dtype=np.float64)
        self._strip_shown, strip_nonpos = display_values(extra.reshape(1, -1), self._log)
        self.grid.draw(self._shown, self._nonpos, ~hm.present)
        self.strip_grid.draw(self._strip_shown, strip_nonpos, ~np.isfinite(extra))

        both = np.concatenate([self._shown.ravel(), self._strip_shown.ravel()])
        finite = both[np.isfinite(both)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        self.colorbar.setLevels((lo, hi))
        title = f"log10 of {self.title}" if self._log else self.title
        self.strip.setTitle(title, color=self.palette().color(QPalette.ColorRole.Text))

        left = self.plot.getAxis("left")
        left.setTicks([[(i, str(x)) for i, x in enumerate(hm.layers)], []])
        self.plot.getAxis("bottom").setTicks([list(enumerate(hm.kinds)), []])
        short = [n.removesuffix(".weight") for n in names]
        self.strip.getAxis("bottom").setTicks([list(enumerate(short)), []])
        width = max(len(hm.kinds), len(names), 1)
        self.plot.setRange(
            xRange=(-0.5, width - 0.5), yRange=(-0.5, max(len(hm.layers), 1) - 0.5), padding=0
        )
        self.strip.setYRange(-0.5, 0.5, padding=0)
        self._draw_bars(hm)
        missing = not (hm.present.all() and np.isfinite(extra).all())
        self._update_legend(missing, bool(self._nonpos.any() or strip_nonpos.any()))

    def _draw_bars(self, hm: Heatmap) -> None:
        shown, _ = display_values(hm.layer_values, self._log)
        rows = np.nonzero(np.isfinite(shown))[0]
        vals = shown[rows]
        base = float(math.floor(vals.min())) if self._log and vals.size else 0.0
        self.bars.setOpts(x0=np.full(rows.size, base), y=rows.astype(float), width=vals - base)
        how = "sum" if hm.layer_reduce == "sum" else "mean"
        self.bar_plot.setLabel("bottom", f"log10 of layer {how}" if self._log else f"layer {how}")
        if vals.size:
            lo, hi = min(base, float(vals.min())), max(base, float(vals.max()))
            if self._log:  # at least a decade: 2.001 vs 2.009 must not look like 1 vs 9
                hi = max(hi, base + 1)
            self.bar_plot.setXRange(lo, hi if hi > lo else lo + 1, padding=0.05)

    def _update_legend(self, any_missing: bool, any_nonpositive: bool) -> None:
        parts = ["Hover a cell for its tensor and exact value; click it for details."]
        if any_missing:
            parts.append("Dotted empty cells are missing (no such tensor, or no value), not zero.")
        if any_nonpositive:
            parts.append("Grey ✕ cells are ≤ 0: they have no logarithm.")
        self.legend.setText(" ".join(parts))

    # -- colours and export -------------------------------------------------------------------
    def _restyle(self) -> None:
        """Follow the palette (light or dark); missing cells show the background."""
        pal = self.palette()
        self.glw.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.Text)
        for p in (self.strip, self.plot, self.bar_plot, self.colorbar):
            for entry in p.axes.values():
                axis = entry["item"]
                axis.setPen(fg)
                axis.setTextPen(fg)

    def changeEvent(self, ev: QEvent) -> None:
        if ev.type() == QEvent.Type.PaletteChange:
            self._restyle()
        super().changeEvent(ev)

    def export_png(self, path: str | Path) -> None:
        """The whole figure as a PNG, 1440 px wide."""
        exporter = pyqtgraph.exporters.ImageExporter(self.glw.scene())
        exporter.parameters()["width"] = EXPORT_WIDTH
        exporter.export(str(path))

    def export_csv(self, path: str | Path) -> None:
        """The core's CSV of the heatmap shown (exact values, empty fields for missing)."""
        if self.hm is None:
            raise RuntimeError("no heatmap is shown")
        atomic_write_text(Path(path), heatmap_csv(self.hm))
