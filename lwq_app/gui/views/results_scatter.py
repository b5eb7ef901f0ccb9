"""The size-vs-KLD scatter of the Results page, with the core's Pareto front.

Draws exactly the core's ``scatter_points`` (x: file size in MB, y: μKLD on a log axis),
stock mixes as squares and custom plans as circles, a point measured under another setting
hollow; the front is the core's ``pareto_front`` as the core's step line. Hovering a point
names it (a label beside it, and the tooltip); clicking it emits ``point_clicked`` with its
table row, and ``select_row`` rings the point of a row selected elsewhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from lwq_app.core.jobs.atomic import atomic_output
from lwq_app.core.jobs.errors import OutputError
from lwq_app.core.results.charts import (
    ScatterPoint,
    pareto_front,
    pareto_steps,
    scatter_points,
)
from lwq_app.core.results.compare import ResultsTable

MB = 1e6
#: Okabe–Ito: custom plans blue, stock mixes vermillion, the front green
CUSTOM_COLOUR = QColor("#0072B2")
STOCK_COLOUR = QColor("#D55E00")
FRONT_COLOUR = QColor("#009E73")
#: how near (pixels) the mouse must be to a point to hover or click it
PICK_PX = 12.0
EXPORT_WIDTH = 1200
#: up to this many points are named on the plot (more: only the front's)
MAX_LABELS = 12


class ResultsScatterView(QWidget):
    """Size against KLD of the variants of a ``ResultsTable``."""

    point_clicked = Signal(int)  # the table row of the clicked point
    point_hovered = Signal(str)  # the hovered variant's name ("" when none)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: tuple[ScatterPoint, ...] = ()
        self.front: tuple[ScatterPoint, ...] = ()
        self.hovered: ScatterPoint | None = None
        self.plot = pg.PlotWidget(self)
        self.plot.setObjectName("results_scatter")
        item = self.plot.getPlotItem()
        item.setLogMode(x=False, y=True)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setLabel("bottom", "File size (MB)")
        item.setLabel("left", "μKLD against F16 (log)")
        for name in ("left", "bottom"):
            item.getAxis(name).enableAutoSIPrefix(False)
        item.getViewBox().setDefaultPadding(0.08)  # no point on the frame
        # the key sits above the plot, not in it: no corner of a size-vs-KLD plot is sure to
        # be empty (a plan both smaller and closer to F16 sits bottom left, a dominated stock
        # mix top right), and a key drawn over a point hides it
        self.key = QLabel(
            f'<span style="color:{CUSTOM_COLOUR.name()}">●</span> custom plan &nbsp; '
            f'<span style="color:{STOCK_COLOUR.name()}">■</span> stock mix &nbsp; '
            f'<span style="color:{FRONT_COLOUR.name()}">━</span> Pareto front (smaller and '
            "closer to F16 than any other) &nbsp; ○ hollow: measured under another setting",
            self,
        )
        self.key.setWordWrap(True)
        #: the variants' names beside their points (up to ``MAX_LABELS`` points)
        self.names: list[pg.TextItem] = []
        self.front_line = pg.PlotDataItem(pen=pg.mkPen(FRONT_COLOUR, width=2), name="Pareto front")
        self.custom = pg.PlotDataItem(pen=None, symbol="o", symbolSize=11, name="custom plan")
        self.stock = pg.PlotDataItem(pen=None, symbol="s", symbolSize=11, name="stock mix")
        self.ring = pg.PlotDataItem(
            pen=None, symbol="o", symbolSize=20, symbolBrush=None,
            symbolPen=pg.mkPen(QColor("#F0E442"), width=3),
        )  # fmt: skip
        for z, it in enumerate((self.front_line, self.custom, self.stock, self.ring)):
            it.setZValue(z)
            item.addItem(it)
        self.label = pg.TextItem("", anchor=(0, 1))
        self.label.setZValue(10)
        item.addItem(self.label, ignoreBounds=True)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.key)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.note)
        scene = self.plot.scene()
        scene.sigMouseMoved.connect(self._moved)
        scene.sigMouseClicked.connect(self._clicked)
        self._restyle()

    def _restyle(self) -> None:
        pal = self.palette()
        self.plot.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.Text)
        for name in ("left", "bottom"):
            axis = self.plot.getPlotItem().getAxis(name)
            axis.setPen(fg)
            axis.setTextPen(fg)
        self.label.setColor(fg)
        self._fg = fg

    # -- data --------------------------------------------------------------------------------
    def set_table(self, table: ResultsTable | None) -> None:
        """Draw the core's points and front of ``table``."""
        self.points = () if table is None else scatter_points(table)
        self.front = pareto_front(self.points)
        xs, ys = pareto_steps(self.front)
        self.front_line.setData([x / MB for x in xs], ys)
        for data, stock in ((self.custom, False), (self.stock, True)):
            pts = [p for p in self.points if p.stock == stock]
            colour = STOCK_COLOUR if stock else CUSTOM_COLOUR
            brushes = [pg.mkBrush(colour) if p.comparable else pg.mkBrush(None) for p in pts]
            data.setData(
                [p.size / MB for p in pts],
                [p.kld for p in pts],
                symbolBrush=brushes,
                symbolPen=pg.mkPen(colour, width=2),
            )
        self.ring.setData([], [])
        self._label_points()
        self._hover(None)
        flagged = sum(not p.comparable for p in self.points)
        missing = (
            0 if table is None else sum(1 for r in table.rows if not r.is_base) - len(self.points)
        )
        parts = [f"{len(self.points)} variants with a KLD; {len(self.front)} on the Pareto front"]
        if flagged:
            parts.append(f"{flagged} hollow: measured under another setting, not on the front")
        if missing > 0:
            parts.append(f"{missing} without a KLD yet")
        self.note.setText("; ".join(parts) + ".")
        self.plot.getPlotItem().enableAutoRange()

    def _label_points(self) -> None:
        """Name every point when there are few; with many, only those on the front."""
        item = self.plot.getPlotItem()
        for t in self.names:
            item.removeItem(t)
        shown = self.points if len(self.points) <= MAX_LABELS else self.front
        self.names = []
        sizes = [p.size for p in self.points]
        middle = (min(sizes) + max(sizes)) / 2 if sizes else 0
        for p in shown:  # right of the point in the left half, left of it in the right half
            anchor = (-0.08, 0.5) if p.size <= middle else (1.08, 0.5)
            t = pg.TextItem(p.name, color=self._fg, anchor=anchor)
            t.setPos(p.size / MB, math.log10(p.kld))
            item.addItem(t, ignoreBounds=True)
            self.names.append(t)

    def plotted(self) -> list[tuple[float, float]]:
        """The (MB, KLD) pairs drawn, custom then stock: what a test compares."""
        out = []
        for data in (self.custom, self.stock):
            x, y = data.getOriginalDataset()
            if x is not None and y is not None:
                out += list(zip(map(float, x), map(float, y), strict=True))
        return out

    def front_line_data(self) -> tuple[list[float], list[float]]:
        x, y = self.front_line.getOriginalDataset()
        return ([] if x is None else list(map(float, x)), [] if y is None else list(map(float, y)))

    # -- picking -----------------------------------------------------------------------------
    def scene_pos(self, p: ScatterPoint) -> QPointF:
        """Where point ``p`` is drawn, in scene coordinates (the y axis is log10)."""
        vb = self.plot.getPlotItem().getViewBox()
        return vb.mapViewToScene(QPointF(p.size / MB, math.log10(p.kld)))

    def viewport_pos(self, p: ScatterPoint) -> QPointF:
        return QPointF(self.plot.mapFromScene(self.scene_pos(p)))

    def point_at(self, scene_pos: QPointF) -> ScatterPoint | None:
        """The point drawn nearest ``scene_pos``, within ``PICK_PX`` pixels."""
        best, best_d = None, PICK_PX
        for p in self.points:
            d = self.scene_pos(p) - scene_pos
            dist = math.hypot(d.x(), d.y())
            if dist <= best_d:
                best, best_d = p, dist
        return best

    def _moved(self, pos: QPointF) -> None:
        self._hover(self.point_at(pos))

    def _hover(self, p: ScatterPoint | None) -> None:
        self.hovered = p
        if p is None:
            self.label.setText("")
            self.plot.setToolTip("")
        else:
            text = f"{p.name}  ({p.size / MB:.1f} MB, KLD {p.kld:.5f})"
            self.label.setText(text)
            self.label.setPos(p.size / MB, math.log10(p.kld))
            self.plot.setToolTip(text)
        self.point_hovered.emit("" if p is None else p.name)

    def _clicked(self, ev: object) -> None:
        button = getattr(ev, "button", lambda: None)()
        if button != Qt.MouseButton.LeftButton:
            return
        p = self.point_at(ev.scenePos())  # type: ignore[attr-defined]
        if p is not None:
            self.point_clicked.emit(p.row)

    def select_row(self, row: int) -> None:
        """Ring the point of table row ``row`` (none if it has no point)."""
        pts = [p for p in self.points if p.row == row]
        self.ring.setData([p.size / MB for p in pts], [p.kld for p in pts])

    # -- export ------------------------------------------------------------------------------
    def export_png(self, path: Path) -> Path:
        return export_png(self.plot.getPlotItem(), Path(path))


def export_png(item: object, path: Path, width: int = EXPORT_WIDTH) -> Path:
    """``item`` (a plot or a scene) as a PNG of ``width`` pixels, written atomically."""
    exporter = pyqtgraph.exporters.ImageExporter(item)
    exporter.parameters()["width"] = width
    image = exporter.export(toBytes=True)
    with atomic_output(path) as tmp:
        if not image.save(str(tmp), "PNG"):
            raise OutputError(f"{path}: cannot write the PNG")
    return path
