"""The Run step: the project's job queue — quantize, PPL/KLD, benchmarks, bench — row by row.

A thin view over ``ctx.queue`` (``RunQueueController``): one ``RunRowWidget`` per entry in
queue order, kept in step with ``entries_changed`` (rows are reused by entry id, so a row
being read or clicked is not rebuilt), its progress from ``entry_progressed``; the elapsed
times tick once a second while something runs. Above the rows: what the queue is doing
(running, paused, a speed test waiting), Resume, Clear finished and the "jobs at once"
setting.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.results.run_queue import ENDED, JobState

from ..context import AppContext
from ..run_queue import MAX_PARALLEL
from .run_row import RunRowWidget

#: milliseconds between two updates of the running rows' elapsed times
TICK_MS = 1000


class RunView(QWidget):
    """The Run page."""

    done_changed = Signal(bool)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._queue = q = ctx.queue
        self.rows: dict[str, RunRowWidget] = {}

        self.status = QLabel("", self)
        self.status.setObjectName("run_status")
        self.status.setWordWrap(True)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setObjectName("run_resume")
        self.resume_button.setToolTip("Start the queued jobs again")
        self.resume_button.clicked.connect(q.resume)
        self.clear_button = QPushButton("Clear finished", self)
        self.clear_button.setObjectName("run_clear")
        self.clear_button.setToolTip("Take the ended jobs off the list (their results stay)")
        self.clear_button.clicked.connect(q.clear_finished)
        self.cancel_speed = QPushButton("Cancel speed test", self)
        self.cancel_speed.setObjectName("run_cancel_speed")
        self.cancel_speed.clicked.connect(q.cancel_speed_test)
        self.parallel = QSpinBox(self)
        self.parallel.setObjectName("run_parallel")
        self.parallel.setRange(1, MAX_PARALLEL)
        self.parallel.setValue(q.max_parallel)
        self.parallel.setToolTip(
            "How many jobs run at the same time. One is fastest on most machines: llama.cpp "
            "already uses every core"
        )
        self.parallel.valueChanged.connect(self._on_parallel)
        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(self.cancel_speed)
        top.addWidget(self.resume_button)
        top.addWidget(self.clear_button)
        top.addWidget(QLabel("Jobs at once", self))
        top.addWidget(self.parallel)

        self.empty = QLabel(
            "Nothing queued. On the Plan step, “Quantize & check” queues quantize, "
            "PPL/KLD against the F16 base and the bench of the plan.",
            self,
        )
        self.empty.setObjectName("run_empty")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._list = QWidget(self)
        self._rows_box = QVBoxLayout(self._list)
        self._rows_box.setContentsMargins(0, 0, 0, 0)
        self._rows_box.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._list)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.empty)
        lay.addWidget(scroll, 1)

        self._tick = QTimer(self)
        self._tick.setInterval(TICK_MS)
        self._tick.timeout.connect(self._on_tick)
        q.entries_changed.connect(self._sync)
        q.entry_progressed.connect(self._on_progressed)
        q.paused_changed.connect(lambda _p: self._update_status())
        q.speed_test_changed.connect(self._update_status)
        self._sync()

    # -- the sidebar's mark ---------------------------------------------------------------------
    def is_done(self) -> bool:
        """Something finished and nothing is left to run."""
        entries = self._queue.entries
        return any(e.state is JobState.DONE for e in entries) and all(
            e.state in ENDED for e in entries
        )

    # -- rows -----------------------------------------------------------------------------------
    def row(self, entry_id: str) -> RunRowWidget:
        return self.rows[entry_id]

    def _sync(self) -> None:
        """Rows for the queue's entries, in its order: reused by id, new ones made, gone
        ones deleted."""
        entries = self._queue.entries
        ids = {e.id for e in entries}
        for entry_id in [i for i in self.rows if i not in ids]:
            w = self.rows.pop(entry_id)
            self._rows_box.removeWidget(w)
            w.deleteLater()
        for pos, e in enumerate(entries):
            found = self.rows.get(e.id)
            if found is None:
                w = self.rows[e.id] = RunRowWidget(e, self._queue, self._list)
            else:
                w = found
                if w.entry != e:
                    w.show_entry(e)
            if self._rows_box.indexOf(w) != pos:
                self._rows_box.removeWidget(w)
                self._rows_box.insertWidget(pos, w)
        self.empty.setVisible(not entries)
        running = any(e.state is JobState.RUNNING for e in entries)
        if running and not self._tick.isActive():
            self._tick.start()
        elif not running:
            self._tick.stop()
        self._update_status()
        self.done_changed.emit(self.is_done())

    def _on_progressed(self, entry_id: str) -> None:
        w = self.rows.get(entry_id)
        if w is not None:
            w.refresh()

    def _on_tick(self) -> None:
        for w in self.rows.values():
            if w.entry.state is JobState.RUNNING:
                w.refresh()

    def _on_parallel(self, n: int) -> None:
        self._queue.max_parallel = n

    def _update_status(self) -> None:
        q = self._queue
        entries = q.entries
        n_run = sum(e.state is JobState.RUNNING for e in entries)
        n_wait = sum(e.state is JobState.QUEUED for e in entries)
        parts = []
        if q.speed_job is not None:
            parts.append("Speed test running alone; the queue waits for it")
        elif q.speed_test_waiting:
            parts.append("Speed test asked for: it starts once the running job ends")
        if n_run:
            parts.append(f"{n_run} running")
        if n_wait:
            parts.append(f"{n_wait} queued")
        if q.paused and n_wait:
            parts.append("paused: Resume starts the queued jobs")
        self.status.setText(" · ".join(parts) if parts else "Idle")
        self.resume_button.setVisible(q.paused and n_wait > 0)
        self.cancel_speed.setVisible(q.speed_job is not None or q.speed_test_waiting)
        self.clear_button.setEnabled(any(e.state in ENDED for e in entries))
