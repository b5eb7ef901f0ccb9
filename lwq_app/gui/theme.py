"""Light or dark, as the system says: Fusion with a dark palette when the scheme is dark.

Qt ≥ 6.5 reports the system's colour scheme (``styleHints().colorScheme()``) and signals
its changes; the native styles do not all honour a dark scheme, so a dark system gets Fusion
(the style that follows a supplied palette) and the palette below, and a light one the
style and palette the application started with.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


def dark_palette() -> QPalette:
    """A dark palette for Fusion (window, text, selection and disabled roles)."""
    p = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 48), QColor(220, 220, 220)
    disabled = QColor(127, 127, 127)
    accent = QColor(42, 130, 218)
    for role, color in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.ToolTipBase, window),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.PlaceholderText, disabled),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.BrightText, QColor(255, 80, 80)),
        (QPalette.ColorRole.Link, accent),
        (QPalette.ColorRole.Highlight, accent),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.Light, QColor(70, 70, 74)),
        (QPalette.ColorRole.Midlight, QColor(60, 60, 64)),
        (QPalette.ColorRole.Mid, QColor(40, 40, 42)),
        (QPalette.ColorRole.Dark, QColor(20, 20, 20)),
        (QPalette.ColorRole.Shadow, QColor(0, 0, 0)),
    ):
        p.setColor(role, color)
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.HighlightedText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def is_dark() -> bool:
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


class ThemeFollower:
    """Applies the scheme now and again whenever the system changes it."""

    def __init__(self, app: QApplication) -> None:
        self._app = app
        style = app.style()
        self._light_style = style.name() if style is not None else "Fusion"
        self._light_palette = app.palette()
        self.apply()
        QGuiApplication.styleHints().colorSchemeChanged.connect(self.apply)

    def apply(self, *_: object) -> None:
        if is_dark():
            self._app.setStyle("Fusion")
            self._app.setPalette(dark_palette())
        else:
            self._app.setStyle(self._light_style)
            self._app.setPalette(self._light_palette)
