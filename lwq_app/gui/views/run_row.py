"""One row of the Run step: an entry of the queue, its state, progress, time and buttons.

The row shows what ``ctx.queue`` holds — the core's ``QueueEntry`` and, while it runs, its
``Job`` (progress, the ETA the core's estimator gave) — and sends every button to the
controller; it decides nothing itself. Which buttons a state offers is fixed here: Up, Down
and Remove while queued, Cancel while queued or running, Re-queue once ended unfinished.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.results.run_queue import REQUEUEABLE, JobState, QueueEntry

from ..job_panel import STEPS, describe_progress, format_eta
from ..run_queue import RunQueueController

#: how each state reads in its row
STATE_TEXT = {
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.DONE: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.INTERRUPTED: "interrupted",
    JobState.SKIPPED: "skipped",
}
STATE_TIP = {
    JobState.QUEUED: "Waiting for its turn (and for the step before it)",
    JobState.RUNNING: "Running now",
    JobState.DONE: "Finished; its result is stored beside the model",
    JobState.FAILED: "Failed: the error is in the row; the rest of the queue went on",
    JobState.CANCELLED: "You cancelled it (or quit while it ran); nothing half-written was kept",
    JobState.INTERRUPTED: "The app ended while it ran (killed, crashed or power lost); "
    "its unfinished files were removed",
    JobState.SKIPPED: "Not run: an earlier step of its chain did not finish",
}
#: the state's colour: readable on the light and the dark scheme alike
STATE_COLOR = {
    JobState.QUEUED: "#808080",
    JobState.RUNNING: "#1e88e5",
    JobState.DONE: "#43a047",
    JobState.FAILED: "#e53935",
    JobState.CANCELLED: "#808080",
    JobState.INTERRUPTED: "#fb8c00",
    JobState.SKIPPED: "#808080",
}


def format_elapsed(seconds: float | None) -> str:
    """``"1 min 05 s"``; empty before the job started."""
    if seconds is None:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class ClickableLabel(QLabel):
    clicked = Signal()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


class RunRowWidget(QFrame):
    """The row of one queue entry."""

    def __init__(
        self, entry: QueueEntry, queue: RunQueueController, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.entry = entry
        self._queue = queue
        self.setObjectName(f"run_row_{entry.id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(entry.title, self)
        self.title.setWordWrap(True)
        self.state = QLabel("", self)
        self.state.setObjectName("run_state")
        self.state.setMinimumWidth(80)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, STEPS)
        self.bar.setToolTip("How much of the job is done")
        self.eta = QLabel("", self)
        self.eta.setToolTip("Time left, estimated from the job's recent progress")
        self.elapsed = QLabel("", self)
        self.elapsed.setToolTip("How long it ran")
        self.line = ClickableLabel("", self)
        self.line.setObjectName("run_line")
        self.line.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.line.setWordWrap(True)
        self.line.clicked.connect(self.show_log)

        def button(text: str, tip: str, slot: Callable[[], None]) -> QPushButton:
            b = QPushButton(text, self)
            b.setObjectName(f"run_{text.lower().replace('-', '').replace(' ', '_')}")
            b.setToolTip(tip)
            b.clicked.connect(slot)
            return b

        i = entry.id
        self.up = button("Up", "Run it sooner", lambda: queue.move(i, -1))
        self.down = button("Down", "Run it later", lambda: queue.move(i, 1))
        self.remove = button("Remove", "Take it (and the steps waiting for it) off the queue",
                             lambda: queue.remove(i))  # fmt: skip
        self.cancel = button("Cancel", "Stop it; nothing it was writing is kept",
                             lambda: queue.cancel(i))  # fmt: skip
        self.requeue = button("Re-queue", "Queue it again (with the steps it needs)",
                              lambda: queue.requeue(i))  # fmt: skip

        top = QHBoxLayout()
        top.addWidget(self.state)
        top.addWidget(self.title, 1)
        top.addWidget(self.elapsed)
        top.addWidget(self.eta)
        for b in (self.up, self.down, self.remove, self.requeue, self.cancel):
            top.addWidget(b)
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addLayout(top)
        box.addWidget(self.bar)
        box.addWidget(self.line)
        self.show_entry(entry)

    # -- showing ------------------------------------------------------------------------------
    def show_entry(self, entry: QueueEntry) -> None:
        self.entry = entry
        s = entry.state
        self.state.setText(STATE_TEXT[s])
        self.state.setStyleSheet(f"QLabel {{ color: {STATE_COLOR[s]}; font-weight: bold; }}")
        self.state.setToolTip(STATE_TIP[s])
        self.title.setText(entry.title)
        self.title.setToolTip(self._details())
        queued, running = s is JobState.QUEUED, s is JobState.RUNNING
        self.up.setVisible(queued)
        self.down.setVisible(queued)
        self.remove.setVisible(queued)
        self.cancel.setVisible(queued or running)
        self.requeue.setVisible(s in REQUEUEABLE)
        self.bar.setVisible(running or s is JobState.DONE)
        if s is JobState.DONE:
            self.bar.setValue(STEPS)
        elif not running:
            self.bar.setValue(0)
        if not running:
            self.eta.setText("")
        self.refresh()

    def refresh(self) -> None:
        """The running job's progress, ETA and last line; the elapsed time."""
        e = self.entry
        self.elapsed.setText(format_elapsed(e.elapsed(time.time())))
        job = self._queue.job_for(e.id) if e.state is JobState.RUNNING else None
        if job is not None:
            if job.progress is not None:
                self.bar.setValue(round(job.progress.position * STEPS))
            self.eta.setText("cancelling…" if job.cancelled else format_eta(job.seconds_left))
            self.cancel.setEnabled(not job.cancelled)
            self.line.setText(describe_progress(job))
        else:
            self.cancel.setEnabled(True)
            self.line.setText(self.last_line())
        self.line.setToolTip(self.full_text() or "")
        self.line.setVisible(bool(self.line.text()))  # a queued row stays one line high

    def last_line(self) -> str:
        e = self.entry
        if e.error:
            return e.error
        if e.message:
            return e.message
        lines = self._queue.log_lines(e.id)
        return lines[-1] if lines else ""

    def full_text(self) -> str:
        """The error or result, then the job's progress log this session."""
        e = self.entry
        head = [x for x in (e.error, e.message) if x]
        lines = list(self._queue.log_lines(e.id))
        return "\n".join(head + ([""] if head and lines else []) + lines)

    def _details(self) -> str:
        e = self.entry
        out = f"{e.kind.value}: {e.model}"
        if e.output is not None:
            out += f"\nwrites {e.output}"
        return out

    def show_log(self) -> QDialog:
        """The full error or log in a dialog (a click on the row's last line)."""
        d = QDialog(self)
        d.setWindowTitle(self.entry.title)
        text = QPlainTextEdit(self.full_text() or "(nothing logged yet)", d)
        text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, d)
        buttons.rejected.connect(d.reject)
        lay = QVBoxLayout(d)
        lay.addWidget(text)
        lay.addWidget(buttons)
        d.resize(640, 360)
        d.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        d.open()
        self.log_dialog = d  # kept for tests
        return d
