"""Task-score and speed bars of the Results page, with the core's error bars.

One small plot per benchmark or bench test (their scales differ: pp512 runs at hundreds of
t/s, tg128 at tens), horizontal bars so that the variants' names can be read on the left
axis. Values and ± (stderr, σ) are the core's ``task_bars`` / ``speed_bars``; a bar measured
under another setting is drawn hatched-light (its colour at a third of the alpha).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from lwq_app.core.results.charts import BarChart, speed_bars, task_bars
from lwq_app.core.results.compare import ResultsTable

from .results_scatter import CUSTOM_COLOUR, STOCK_COLOUR, export_png

BASE_COLOUR = QColor("#7F7F7F")
EXPORT_WIDTH = 1200
#: the longest variant name written on the axis (longer ones are cut with an ellipsis)
MAX_NAME = 28


def _short(name: str) -> str:
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


class BarChartView(QWidget):
    """One core ``BarChart``: a plot per category, bars per variant with error bars."""

    def __init__(self, empty_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chart: BarChart | None = None
        self.glw = pg.GraphicsLayoutWidget(self)
        self.placeholder = QLabel(empty_text, self)
        self.placeholder.setWordWrap(True)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.glw)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack)
        self.plots: list[pg.PlotItem] = []
        self._made: list[pg.PlotItem] = []  # the plots in the layout, reused while they fit
        #: per plot: (y positions, values, errors) drawn, for tests
        self.drawn: list[tuple[list[float], list[float], list[float]]] = []

    def set_chart(self, chart: BarChart, base_row: int = 0) -> None:
        self.chart = chart
        keep = len(self._made) == len(chart.categories)  # the same plots, redrawn
        if not keep:
            self.glw.clear()
            self._made = []
        self.plots, self.drawn = [], []
        if not chart.series or not chart.categories:
            self.stack.setCurrentWidget(self.placeholder)
            return
        self.stack.setCurrentWidget(self.glw)
        pal = self.palette()
        self.glw.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.Text)
        n = len(chart.series)
        ticks = [(float(n - 1 - i), _short(s.name)) for i, s in enumerate(chart.series)]
        for j, category in enumerate(chart.categories):
            if keep:
                plot = self._made[j]
                plot.clear()
            else:
                plot = self.glw.addPlot(row=0, col=j)
                self._made.append(plot)
            plot.setTitle(f"{category} ({chart.unit})", color=fg)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(x=False, y=False)
            plot.showGrid(x=True, alpha=0.2)
            left = plot.getAxis("left")
            left.setTicks([ticks, []])
            if j:
                left.setStyle(showValues=False)
            for name in ("left", "bottom"):
                plot.getAxis(name).setPen(fg)
                plot.getAxis(name).setTextPen(fg)
            ys, vals, errs, brushes = [], [], [], []
            for i, s in enumerate(chart.series):
                v, e = s.values[j], s.errors[j]
                if v is None:
                    continue
                colour = QColor(
                    BASE_COLOUR if s.row == base_row else STOCK_COLOUR if s.stock else CUSTOM_COLOUR
                )
                if not s.comparable[j]:
                    colour.setAlpha(85)
                ys.append(float(n - 1 - i))
                vals.append(v)
                errs.append(e or 0.0)
                brushes.append(pg.mkBrush(colour))
            plot.addItem(pg.BarGraphItem(x0=0, y=ys, height=0.6, width=vals, brushes=brushes))
            plot.addItem(
                pg.ErrorBarItem(
                    x=np.array(vals), y=np.array(ys), left=np.array(errs),
                    right=np.array(errs), beam=0.25, pen=pg.mkPen(fg, width=1.5),
                )
            )  # fmt: skip
            plot.setYRange(-0.6, n - 0.4, padding=0)
            self.plots.append(plot)
            self.drawn.append((ys, vals, errs))

    def export_png(self, path: Path) -> Path | None:
        if not self.plots:
            return None
        return export_png(self.glw.scene(), Path(path), EXPORT_WIDTH)


class ResultsBarsView(QWidget):
    """The task-score chart above the speed chart."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks = BarChartView(
            "No task scores yet: add task files in Evaluation settings… and run the checks.",
            self,
        )
        self.speed = BarChartView("No speed tests yet: press Speed on a variant.", self)
        self.caption = QLabel(
            "Orange: stock mixes, blue: custom plans, grey: F16; pale: measured under another "
            "setting. Whiskers: ± stderr (scores), ± σ of the runs (speed).",
            self,
        )
        self.caption.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tasks, 1)
        lay.addWidget(self.speed, 1)
        lay.addWidget(self.caption)

    def set_table(self, table: ResultsTable | None) -> None:
        if table is None:
            empty = BarChart("", "", (), (), ())
            self.tasks.set_chart(empty)
            self.speed.set_chart(empty)
            return
        self.tasks.set_chart(task_bars(table))
        self.speed.set_chart(speed_bars(table))
