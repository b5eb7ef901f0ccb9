"""Painting of the plan grid: only the visible rows, texts laid out once per type and font
(``QStaticText``), the overlay's dots and the fallback marks from cached pixmaps, so that a
repaint of an 80-layer plan costs a few milliseconds. Also the legend and tooltip texts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from PySide6.QtCore import QPoint, QPointF, QRect, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
    QPolygonF,
    QStaticText,
    QTransform,
)

from lwq_app.core.jobs.units import format_size
from lwq_app.core.plan import PlanCell

from .plan_grid_layout import Geometry, Prepared, bpw_colors, short_name


@dataclass
class PaintState:
    """What the canvas paints besides the plan: selection, drag targets, overlay, marks."""

    selected: set[str]
    targets: set[str]  # the tensors a drag in progress applies to
    dots: dict[str, float]  # name -> overlay area fraction
    overlay: bool
    band: QRect | None  # the rubber band, canvas pixels
    step_label: tuple[QPoint, str] | None


_ALIGN_RIGHT = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight
_CENTER = Qt.AlignmentFlag.AlignCenter
_static_cache: dict[tuple[str, str], tuple[QStaticText, float, float]] = {}


def _static(text: str, font: QFont, key: str) -> tuple[QStaticText, float, float]:
    """A laid-out text and its size, per text and font (``drawStaticText`` of a prepared
    text is several times faster than ``drawText``)."""
    found = _static_cache.get((text, key))
    if found is None:
        if len(_static_cache) > 4096:
            _static_cache.clear()
        st = QStaticText(text)
        st.setTextFormat(Qt.TextFormat.PlainText)
        st.prepare(QTransform(), font)
        size = st.size()
        found = _static_cache[(text, key)] = (st, size.width(), size.height())
    return found


def paint(p: QPainter, g: Geometry, prep: Prepared, st: PaintState, pal: QPalette) -> None:
    """The whole canvas: body (visible rows), row headers, strip and column headers."""
    head_bg = pal.color(QPalette.ColorRole.Button)
    head_fg = pal.color(QPalette.ColorRole.ButtonText)
    p.fillRect(0, 0, g.view_w, g.view_h, pal.color(QPalette.ColorRole.Base))
    rows = g.visible_rows()
    n_cols, col_w, row_h = g.n_cols, g.col_w, g.row_h
    font = p.font()
    key = font.key()
    texts = {t: _static(t, font, key) for t in prep.texts}
    p.save()
    p.setClipRect(QRect(g.left_w, g.top_h, g.body_w, g.body_h))
    missing = QPen(pal.color(QPalette.ColorRole.Mid), 1, Qt.PenStyle.DotLine)
    x0 = g.x_of(0)
    for i in rows:
        y = g.y_of(i)
        cells = prep.rows[i]
        if len(cells) < n_cols:
            present = {j for j, *_ in cells}
            p.setPen(missing)
            for j in range(n_cols):
                if j not in present:
                    p.drawRect(QRect(x0 + j * col_w + 3, y + 3, col_w - 7, row_h - 7))
        for j, c, bg, fg in cells:
            _cell(p, QRect(x0 + j * col_w, y, col_w, row_h), c, bg, fg, st, texts)
    p.restore()

    p.save()
    p.setClipRect(QRect(0, g.top_h, g.left_w, g.body_h))
    p.setPen(head_fg)
    for i in rows:
        r = g.row_header_rect(i)
        p.fillRect(r.adjusted(0, 0, -1, -1), head_bg)
        p.drawText(r.adjusted(0, 0, -8, 0), _ALIGN_RIGHT, str(prep.grid.layers[i]))
    p.restore()

    p.save()
    p.setClipRect(QRect(g.left_w, 0, g.body_w, g.top_h))
    for k, (c, bg, fg) in enumerate(prep.strip):
        r = g.strip_rect(k)
        p.setPen(pal.color(QPalette.ColorRole.Text))
        p.drawText(QRect(r.x(), 0, r.width(), g.label_h), _CENTER, short_name(c.name))
        _cell(p, r, c, bg, fg, st, texts)
    for j, kind in enumerate(prep.grid.kinds):
        r = g.column_header_rect(j)
        p.fillRect(r.adjusted(0, 0, -1, -1), head_bg)
        p.setPen(head_fg)
        p.drawText(r, _CENTER, kind)
    p.restore()

    p.fillRect(QRect(0, g.header_y, g.left_w - 1, g.row_h - 1), head_bg)
    p.setPen(head_fg)
    p.drawText(QRect(0, g.header_y, g.left_w - 8, g.row_h), _ALIGN_RIGHT, "layer")
    if prep.strip:
        p.setPen(pal.color(QPalette.ColorRole.Text))
        p.drawText(QRect(0, g.strip_y, g.left_w - 8, g.row_h), _ALIGN_RIGHT, "other")
    _marks(p, st, pal)


def _marks(p: QPainter, st: PaintState, pal: QPalette) -> None:
    """The rubber band and the step count beside the cursor."""
    if st.band is not None:
        hl = pal.color(QPalette.ColorRole.Highlight)
        fill = QColor(hl)
        fill.setAlpha(50)
        p.fillRect(st.band, fill)
        p.setPen(QPen(hl, 1))
        p.drawRect(st.band)
    if st.step_label is not None:
        pos, text = st.step_label
        fm = p.fontMetrics()
        box = QRect(pos + QPoint(16, -fm.height() - 12), fm.size(0, text) + QSize(14, 8))
        p.fillRect(box, pal.color(QPalette.ColorRole.ToolTipBase))
        p.setPen(QPen(pal.color(QPalette.ColorRole.ToolTipText), 1))
        p.drawRect(box.adjusted(0, 0, -1, -1))
        p.drawText(box, _CENTER, text)


def _cell(
    p: QPainter,
    r: QRect,
    c: PlanCell,
    bg: QColor,
    fg: QColor,
    st: PaintState,
    texts: dict[str, tuple[QStaticText, float, float]],
) -> None:
    inner = r.adjusted(1, 1, -1, -1)
    p.fillRect(inner, bg)
    text_r = inner
    if st.overlay:
        d = r.height()
        text_r = inner.adjusted(0, 0, -d + 6, 0)
        f = st.dots.get(c.name)
        if f:
            dot = _dot(d, round(math.sqrt(f) * 16), fg.rgba(), p.device().devicePixelRatioF())
            p.drawPixmap(inner.right() - d + 4, inner.y() + (inner.height() - d) // 2, dot)
    p.setPen(fg)
    text, w, h = texts[c.effective]
    p.drawStaticText(
        QPointF(text_r.x() + (text_r.width() - w) / 2, text_r.y() + (text_r.height() - h) / 2), text
    )
    if c.fallback:
        p.drawPixmap(inner.topLeft(), _corner(fg.rgba(), p.device().devicePixelRatioF()))
    if c.name in st.targets:
        p.setPen(QPen(fg, 2, Qt.PenStyle.DashLine))
        p.drawRect(inner.adjusted(1, 1, -1, -1))
    elif c.name in st.selected:
        pen = QPen(fg, 3)
        pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
        p.setPen(pen)
        p.drawRect(inner.adjusted(1, 1, -2, -2))


@lru_cache(maxsize=256)
def _dot(d: int, level: int, rgba: int, dpr: float) -> QPixmap:
    """A ``d``-pixel square with the overlay's dot: a faint ring the size of the largest
    value's dot and a disc of area ``(level / 16)²`` of it (drawing a pixmap is far cheaper
    than two antialiased ellipses per cell)."""
    pm = QPixmap(round(d * dpr), round(d * dpr))
    pm.setDevicePixelRatio(dpr)
    pm.fill(Qt.GlobalColor.transparent)
    q = QPainter(pm)
    q.setRenderHint(QPainter.RenderHint.Antialiasing)
    centre, full = QPointF(d / 2, d / 2), d / 2 - 5
    fg = QColor.fromRgba(rgba)
    ring = QColor(fg)
    ring.setAlpha(120)
    q.setPen(QPen(ring, 1))
    q.drawEllipse(centre, full, full)
    rad = max(full * level / 16, 1.5)
    q.setPen(Qt.PenStyle.NoPen)
    q.setBrush(fg)
    q.drawEllipse(centre, rad, rad)
    q.end()
    return pm


@lru_cache(maxsize=16)
def _corner(rgba: int, dpr: float) -> QPixmap:
    """The fallback mark: a small triangle in the cell's top-left corner."""
    s = 9
    pm = QPixmap(round(s * dpr), round(s * dpr))
    pm.setDevicePixelRatio(dpr)
    pm.fill(Qt.GlobalColor.transparent)
    q = QPainter(pm)
    q.setRenderHint(QPainter.RenderHint.Antialiasing)
    q.setPen(Qt.PenStyle.NoPen)
    q.setBrush(QColor.fromRgba(rgba))
    q.drawPolygon(QPolygonF([QPointF(0, 0), QPointF(s, 0), QPointF(0, s)]))
    q.end()
    return pm


def legend_html(prep: Prepared, overlay_label: str | None) -> str:
    """The bits legend: a swatch per type shown (with its bpw), the fallback mark if any
    cell has one, the overlay's dot, and how to edit."""
    cells = [c for row in prep.rows for _, c, _, _ in row] + [c for c, _, _ in prep.strip]
    swatches = []
    for bpw, name in sorted({(c.bpw, c.effective) for c in cells}):
        bg, fg = bpw_colors(bpw)
        swatches.append(
            f'<span style="background-color:{bg.name()}; color:{fg.name()}">'
            f"&nbsp;{name}&nbsp;{bpw:.3g}&nbsp;</span>"
        )
    parts = ["Bits per weight: " + " ".join(swatches)]
    if any(c.fallback for c in cells):
        parts.append(
            "◤ fallback: the requested type cannot hold this tensor, shown is the one written."
        )
    if overlay_label is not None:
        parts.append(f"● area = {overlay_label or 'overlay'} (relative to the largest).")
    parts.append("Drag a cell, header or selection up for more bits, down for fewer; "
                 "Shift+drag selects a rectangle; +/− step the selection.")  # fmt: skip
    return "<br>".join(parts)


def cell_tooltip(c: PlanCell, values: Mapping[str, float] | None, label: str) -> str:
    """Name, requested and written type, bits per weight and bytes (and the overlay's value)."""
    types = (
        f"requested {c.requested}, written {c.effective} (fallback)"
        if c.fallback
        else f"type {c.effective}"
    )
    size = f"{format_size(c.n_bytes, binary=True)} ({c.n_bytes:,} bytes)"
    lines = [c.name, types, f"{c.bpw:.4g} bits per weight · {size}"]
    if values is not None and c.name in values:
        lines.append(f"{label or 'overlay'}: {values[c.name]:.4g}")
    return "\n".join(lines)
