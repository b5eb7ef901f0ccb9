"""The one error road to the user.

Whatever fails — a core job in the worker bridge, a view's slot, a file dropped on the
window — ends here. ``Notifier.report`` maps the core's errors (``LwqError``: their message
already names the file, tensor or line) to a message as it is, and anything else (a bug) to
"unexpected error" with its traceback written to the log; nothing is swallowed. The window
shows ``message_posted`` in its message bar and log dock. Workers never open dialogs: they
only ever reach this object through queued signals, so it runs on the GUI thread.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from enum import Enum

from PySide6.QtCore import QObject, Signal

from lwq_app.core.jobs import InternalError, LwqError, one_line

log = logging.getLogger("lwq.gui")


class Level(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Message:
    """What the window shows: one line of text, what it is about, and how bad it is."""

    level: Level
    title: str  # the job or action: "Collect importance", "Open model"
    text: str  # one line; for a core error, the core's own message
    detail: str = ""  # a traceback, for bugs (also in the log)


class Notifier(QObject):
    """Turns exceptions and notices into ``Message``s, logs them, and posts them."""

    message_posted = Signal(object)  # Message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.messages: list[Message] = []

    def report(self, exc: BaseException, title: str) -> Message:
        """Tell the user that ``title`` failed with ``exc``."""
        if isinstance(exc, (InternalError, LwqError)):  # the message names the log/file
            msg = Message(Level.ERROR, title, one_line(str(exc)))
            log.error("%s: %s", title, msg.text)
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            text = one_line(f"unexpected error ({type(exc).__name__}: {exc}); details in the log")
            msg = Message(Level.ERROR, title, text, tb)
            log.error("%s: unexpected error\n%s", title, tb)
        return self._post(msg)

    def info(self, title: str, text: str) -> Message:
        log.info("%s: %s", title, text)
        return self._post(Message(Level.INFO, title, one_line(text)))

    def warn(self, title: str, text: str) -> Message:
        log.warning("%s: %s", title, text)
        return self._post(Message(Level.WARNING, title, one_line(text)))

    def _post(self, msg: Message) -> Message:
        self.messages.append(msg)
        self.message_posted.emit(msg)
        return msg
