"""The message bar at the top of the window: the notifier's messages, never a dialog.

A failing job, a bad drop or a saved project is told here, in the window, without stopping
the user: each message is a row (level colour, "title: text", a dismiss button), the newest
on top, at most ``MAX_SHOWN`` at a time; older ones stay in the log dock. An unexpected
error's traceback is in its tooltip and in the log.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from .notifier import Level, Message, Notifier

#: rows shown at once; older messages remain in the log dock
MAX_SHOWN = 3

_COLOURS = {  # background, text: readable in light and dark palettes alike
    Level.ERROR: ("#f8d7da", "#58151c"),
    Level.WARNING: ("#fff3cd", "#664d03"),
    Level.INFO: ("#cfe2ff", "#052c65"),
}


class MessageRowWidget(QWidget):
    """One message with its dismiss button."""

    def __init__(self, message: Message, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message = message
        self.setObjectName(f"message_{message.level.value}")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        bg, fg = _COLOURS[message.level]
        self.setStyleSheet(
            f"MessageRowWidget {{ background: {bg}; border-radius: 4px; }}"
            f" QLabel {{ color: {fg}; }}"
        )
        self.label = QLabel(f"<b>{_escape(message.title)}</b>: {_escape(message.text)}", self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setToolTip(message.detail or f"{message.level.value}: {message.text}")
        self.dismiss_button = QToolButton(self)
        self.dismiss_button.setText("✕")
        self.dismiss_button.setAutoRaise(True)
        self.dismiss_button.setToolTip("Dismiss this message (it stays in the log)")
        box = QHBoxLayout(self)
        box.setContentsMargins(8, 4, 4, 4)
        box.addWidget(self.label, 1)
        box.addWidget(self.dismiss_button, 0, Qt.AlignmentFlag.AlignTop)

    @property
    def text(self) -> str:
        return f"{self.message.title}: {self.message.text}"


class MessageBarWidget(QWidget):
    """Shows what ``Notifier.message_posted`` posts; hidden when there is nothing to show."""

    def __init__(self, notifier: Notifier, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("message_bar")
        self.setToolTip("Messages about what lwq did or could not do")
        self._box = QVBoxLayout(self)
        self._box.setContentsMargins(6, 6, 6, 0)
        self._box.setSpacing(4)
        self.rows: list[MessageRowWidget] = []
        notifier.message_posted.connect(self.show_message)
        self.hide()

    def show_message(self, message: Message) -> MessageRowWidget:
        row = MessageRowWidget(message, self)
        row.dismiss_button.clicked.connect(lambda: self.dismiss(row))
        self._box.insertWidget(0, row)
        self.rows.insert(0, row)
        while len(self.rows) > MAX_SHOWN:
            self.dismiss(self.rows[-1])
        self.show()
        return row

    def dismiss(self, row: MessageRowWidget) -> None:
        if row in self.rows:
            self.rows.remove(row)
            self._box.removeWidget(row)
            row.deleteLater()
        self.setVisible(bool(self.rows))

    def clear(self) -> None:
        for row in list(self.rows):
            self.dismiss(row)

    def texts(self) -> list[str]:
        """The shown messages, newest first (what the tests read)."""
        return [r.text for r in self.rows]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
