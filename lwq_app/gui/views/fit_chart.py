"""The stacked horizontal bars of the Target step: one row per mix, against a budget.

``FitChart`` draws what the core's ``target_fit`` returned and nothing else: each segment is a
``MixFit`` field in bytes (shown in GiB), the vertical line is the core's budget. With a
discrete GPU it shows two plots side by side, the GPU's memory and the RAM, sharing the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from lwq_app.core.evaluate.targets import MixFit, TargetFit
from lwq_app.core.jobs import format_size

GIB = float(1 << 30)
MIB = float(1 << 20)
#: Okabe–Ito colours (safe for the common colour-vision deficiencies)
SEGMENTS = (
    ("Weights", QColor("#0072B2")),
    ("KV cache", QColor("#E69F00")),
    ("Compute buffers", QColor("#009E73")),
)
BUDGET_COLOUR = QColor("#D55E00")
NOT_FIT_MARK = "✗ "
#: a budget more than this many times the widest bar is written, not drawn to scale
OFF_SCALE = 4.0
#: the fewest pixels a mix's row gets
ROW_PIXELS = 15


def _device_segments(r: MixFit) -> tuple[int, int, int]:
    return r.weights_device, r.kv_device, r.compute_device


def _host_segments(r: MixFit) -> tuple[int, int, int]:
    return r.weights_host, r.kv_host, r.compute_host


class _Plot(pg.PlotWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        item = self.getPlotItem()
        item.setMouseEnabled(False, False)
        item.hideButtons()
        item.setMenuEnabled(False)
        item.invertY(True)
        item.showGrid(x=True, y=False, alpha=0.15)
        for name in ("left", "bottom"):
            item.getAxis(name).enableAutoSIPrefix(False)
        self._restyle()

    def _restyle(self) -> None:
        """Follow the palette (light or dark)."""
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        self._fg = pal.color(QPalette.ColorRole.Text)
        for name in ("left", "bottom"):
            axis = self.getPlotItem().getAxis(name)
            axis.setPen(self._fg)
            axis.setTextPen(self._fg)

    def changeEvent(self, ev: QEvent) -> None:
        if ev.type() == QEvent.Type.PaletteChange and hasattr(self, "_fg"):
            self._restyle()
        super().changeEvent(ev)

    def draw(
        self,
        title: str,
        rows: Sequence[MixFit],
        values: Sequence[tuple[int, int, int]],
        budget: int,
        *,
        labels: bool,
    ) -> None:
        item = self.getPlotItem()
        item.clear()
        widest_bytes = max([sum(v) for v in values] + [1])
        # a budget far beyond the bars would squeeze them to slivers: then only say it
        off_scale = budget > OFF_SCALE * widest_bytes
        right_bytes = widest_bytes * 1.1 if off_scale else max(widest_bytes, budget) * 1.05
        unit, scale = ("GiB", GIB) if right_bytes >= GIB else ("MiB", MIB)
        item.setLabel("bottom", unit)
        ys = list(range(len(rows)))
        starts = [0.0] * len(rows)
        for k, (_name, colour) in enumerate(SEGMENTS):
            widths = [v[k] / scale for v in values]
            for fits in (True, False):
                idx = [i for i, r in enumerate(rows) if r.fits is fits]
                if not idx:
                    continue
                brush = QColor(colour)
                if not fits:
                    brush.setAlpha(90)
                bar = pg.BarGraphItem(
                    x0=[starts[i] for i in idx],
                    width=[widths[i] for i in idx],
                    y=[ys[i] for i in idx],
                    height=0.72,
                    brush=brush,
                    pen=pg.mkPen(colour if fits else BUDGET_COLOUR, width=1),
                )
                item.addItem(bar)
            starts = [s + w for s, w in zip(starts, widths, strict=True)]
        budget_text = f"budget {format_size(budget, binary=True)}"
        if off_scale:
            budget_text += " →"
        else:
            pen = pg.mkPen(BUDGET_COLOUR, width=2, style=Qt.PenStyle.DashLine)
            item.addItem(pg.InfiniteLine(pos=budget / scale, angle=90, pen=pen))
        item.setTitle(
            f"{title} <span style='color:{BUDGET_COLOUR.name()}'>— {budget_text}</span>",
            color=self._fg,
        )
        left = item.getAxis("left")
        ticks = [(i, (NOT_FIT_MARK if not r.fits else "") + r.label) for i, r in enumerate(rows)]
        left.setTicks([ticks, []])
        left.setStyle(showValues=labels, tickLength=0)
        if not labels:
            left.setWidth(4)
        item.setXRange(0, right_bytes / scale, padding=0)
        item.setYRange(-0.6, len(rows) - 0.4, padding=0)


def legend_html() -> str:
    """The legend, above the plots (never over a bar)."""
    boxes = "&nbsp;&nbsp;".join(
        f"<span style='color:{c.name()}'>■</span> {name}" for name, c in SEGMENTS
    )
    return (
        f"{boxes}&nbsp;&nbsp;<span style='color:{BUDGET_COLOUR.name()}'>┆</span> budget"
        f"&nbsp;&nbsp;→ budget beyond the right edge&nbsp;&nbsp;{NOT_FIT_MARK}pale: does not fit"
    )


class FitChart(QWidget):
    """One or two bar charts of a ``TargetFit``, with a legend."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.main = _Plot(self)
        self.host = _Plot(self)
        self.host.getPlotItem().setYLink(self.main.getPlotItem())
        self.host.hide()
        self.legend = QLabel(legend_html())
        self.legend.setToolTip("The three parts of each bar, in bytes llama.cpp allocates")
        plots = QHBoxLayout()
        plots.addWidget(self.main, 3)
        plots.addWidget(self.host, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.legend)
        layout.addLayout(plots, 1)
        self.values: dict[str, tuple[int, ...]] = {}

    def show_fit(self, fit: TargetFit, kind: str) -> None:
        """Draw ``fit``; ``kind`` is the target's ``memory_kind`` (cpu, unified, discrete)."""
        rows = fit.rows
        self.setMinimumHeight(ROW_PIXELS * len(rows) + 110)  # below this, the view scrolls
        if kind == "cpu":
            host = [_host_segments(r) for r in rows]
            self.main.draw("RAM", rows, host, fit.host_budget, labels=True)
            self.host.hide()
            self.values = {r.label: v for r, v in zip(rows, host, strict=True)}
        elif kind == "unified":
            dev = [_device_segments(r) for r in rows]
            self.main.draw("Unified memory", rows, dev, fit.device_budget, labels=True)
            self.host.hide()
            self.values = {r.label: v for r, v in zip(rows, dev, strict=True)}
        else:
            dev = [_device_segments(r) for r in rows]
            host = [_host_segments(r) for r in rows]
            self.main.draw("GPU memory", rows, dev, fit.device_budget, labels=True)
            self.host.draw("RAM", rows, host, fit.host_budget, labels=False)
            self.host.show()
            self.values = {r.label: d + h for r, d, h in zip(rows, dev, host, strict=True)}

    def clear(self) -> None:
        self.main.getPlotItem().clear()
        self.host.getPlotItem().clear()
        self.host.hide()
        self.values = {}
