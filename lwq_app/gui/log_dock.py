"""The log dock: what logger ``lwq`` says, in the window and in a per-run log file.

Records arrive from any thread (workers log too), so ``LogBufferHandler.emit`` only
appends to a thread-safe deque; a 100 ms timer on the GUI thread moves the batch into the
text view in one append (a burst of records costs one repaint, not one each). The view keeps
the last ``MAX_BLOCKS`` lines; the file ``gui-YYYYmmdd-HHMMSS-PID.log`` under the core's
``log_dir()`` keeps everything of this run.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
from pathlib import Path

from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QFontDatabase
from PySide6.QtWidgets import QDockWidget, QPlainTextEdit, QWidget

from lwq_app.core.jobs import log_dir

#: lines kept in the view (the file keeps them all)
MAX_BLOCKS = 5000
#: milliseconds between two batches moved into the view
FLUSH_MS = 100
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

log = logging.getLogger("lwq.gui")


class LogBufferHandler(logging.Handler):
    """Formats records into a deque, from any thread; the dock drains it on the GUI thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
        self.lines: collections.deque[str] = collections.deque(maxlen=MAX_BLOCKS)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def drain(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                out.append(self.lines.popleft())
            except IndexError:
                return out


def new_gui_log_path() -> Path | None:
    """A fresh ``gui-YYYYmmdd-HHMMSS-PID.log`` in the core's log folder; None if it cannot
    be written (the dock still works, the file is skipped)."""
    name = f"gui-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(100):
            p = folder / (f"{name}.log" if n == 0 else f"{name}-{n}.log")
            with contextlib.suppress(FileExistsError):
                os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                return p
    except OSError:
        return None
    return None


class LogDockWidget(QDockWidget):
    """A dock with the run's log; attaches its handlers to logger ``lwq`` until ``detach``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Log", parent)
        self.setObjectName("log_dock")
        self.setToolTip("What lwq did in this run; everything is also in the log file")
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("log_text")
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_BLOCKS)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setToolTip("The last lines of the log (Open log file shows all of it)")
        self.setWidget(self.text)

        self.handler = LogBufferHandler()
        self.log_path = new_gui_log_path()
        self.file_handler: logging.FileHandler | None = None
        if self.log_path is not None:
            self.file_handler = logging.FileHandler(self.log_path, encoding="utf-8")
            self.file_handler.setLevel(logging.INFO)
            self.file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._logger = logging.getLogger("lwq")
        self._previous_level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self.handler)
        if self.file_handler is not None:
            self._logger.addHandler(self.file_handler)

        self.open_file_action = QAction("Open Log File", self)
        self.open_file_action.setObjectName("open_log_file")
        self.open_file_action.setToolTip(
            f"Open this run's log file ({self.log_path})"
            if self.log_path
            else "No log file: the log folder cannot be written"
        )
        self.open_file_action.setEnabled(self.log_path is not None)
        self.open_file_action.triggered.connect(self.open_log_file)

        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)
        self._timer.start()
        log.info("lwq window started; log file %s", self.log_path or "(none)")

    def flush(self) -> None:
        """Move the buffered lines into the view (and the file to disk)."""
        lines = self.handler.drain()
        if lines:
            self.text.appendPlainText("\n".join(lines))
        if self.file_handler is not None:
            self.file_handler.flush()

    def open_log_file(self) -> None:
        if self.log_path is not None:
            self.flush()
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_path)))

    def detach(self) -> None:
        """Stop listening to logger ``lwq`` and close the file (at shutdown)."""
        self.flush()
        self._timer.stop()
        self._logger.removeHandler(self.handler)
        if self.file_handler is not None:
            self._logger.removeHandler(self.file_handler)
            self.file_handler.close()
        self._logger.setLevel(self._previous_level)
