"""The job panel: one row per running job — title, phase, item, progress, ETA, Cancel.

Rows are driven by the ``JobRunner``'s signals only (started → row, progressed → update,
ended → gone), so every job any view submits shows up here without the view knowing. The
ETA is the core's ``EtaEstimator`` figure the runner keeps on ``Job.seconds_left``.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .worker import Job, JobRunner

#: the progress bar's resolution (QProgressBar takes integers)
STEPS = 1000

log = logging.getLogger("lwq.gui.jobs")


def format_eta(seconds: float | None) -> str:
    """``"about 2 min 5 s left"``; an empty string before the estimator has a figure."""
    if seconds is None:
        return ""
    s = max(0, round(seconds))
    if s < 60:
        return f"about {s} s left"
    m, s = divmod(s, 60)
    if m < 60:
        return f"about {m} min {s:02d} s left"
    h, m = divmod(m, 60)
    return f"about {h} h {m:02d} min left"


def describe_progress(job: Job) -> str:
    """``"upcast · blk.3.ffn_down.weight"`` for the phase and item of a job's last event."""
    p = job.progress
    if p is None:
        return "starting…"
    return f"{p.phase.value} · {p.item}" if p.item else p.phase.value


class JobRowWidget(QWidget):
    """One running job."""

    def __init__(self, job: Job, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.setObjectName(f"job_row_{job.id}")
        self.title = QLabel(job.title, self)
        self.title.setWordWrap(True)  # a long file name wraps, the dock does not scroll
        self.title.setToolTip(f"Job: {job.title}")
        self.phase = QLabel("starting…", self)
        self.phase.setToolTip("The job's current phase and the item it is working on")
        self.phase.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.phase.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, STEPS)
        self.bar.setValue(0)
        self.bar.setToolTip("How much of the whole job is done")
        self.eta = QLabel("", self)
        self.eta.setToolTip("Time left, estimated from the job's recent progress")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("job_cancel")
        self.cancel_button.setToolTip(f"Stop {job.title!r}; nothing it was writing is kept")
        self.cancel_button.clicked.connect(self._cancel)
        self._runner = runner

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.eta)
        top.addWidget(self.cancel_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addLayout(top)
        box.addWidget(self.bar)
        box.addWidget(self.phase)

    def refresh(self) -> None:
        job = self.job
        self.phase.setText(describe_progress(job))
        if job.progress is not None:
            self.bar.setValue(round(job.progress.position * STEPS))
        self.eta.setText("cancelling…" if job.cancelled else format_eta(job.seconds_left))

    def _cancel(self) -> None:
        self._runner.cancel(self.job)
        self.cancel_button.setEnabled(False)
        self.refresh()


class JobPanelWidget(QScrollArea):
    """The list of running jobs (the job dock's content)."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("job_panel")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setToolTip("Jobs running now; each can be cancelled")
        self._runner = runner
        self.rows: dict[int, JobRowWidget] = {}
        self._phases: dict[int, str] = {}
        inner = QWidget(self)
        self._box = QVBoxLayout(inner)
        self._box.setContentsMargins(2, 2, 2, 2)
        self.empty = QLabel("No job is running.", inner)
        self.empty.setToolTip("Opening a model, collecting importance and the like run here")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._box.addWidget(self.empty)
        self._box.addStretch(1)
        self.setWidget(inner)
        runner.job_started.connect(self._on_started)
        runner.job_progressed.connect(self._on_progressed)
        runner.job_ended.connect(self._on_ended)
        runner.job_finished.connect(lambda j: log.info("job done: %s", j.title))
        runner.job_cancelled.connect(lambda j: log.info("job cancelled: %s", j.title))

    def _on_started(self, job: Job) -> None:
        log.info("job started: %s", job.title)
        row = JobRowWidget(job, self._runner, self.widget())
        self.rows[job.id] = row
        self._box.insertWidget(self._box.count() - 1, row)
        self.empty.hide()

    def _on_progressed(self, job: Job) -> None:
        row = self.rows.get(job.id)
        if row is not None:
            row.refresh()
        if job.progress is not None and self._phases.get(job.id) != job.progress.phase.value:
            self._phases[job.id] = job.progress.phase.value
            log.info("job %s: %s", job.title, job.progress.phase.value)

    def _on_ended(self, job: Job) -> None:
        self._phases.pop(job.id, None)
        row = self.rows.pop(job.id, None)
        if row is not None:
            self._box.removeWidget(row)
            row.hide()  # deleteLater waits for the event loop (processEvents() skips it)
            row.deleteLater()
        self.empty.setVisible(not self.rows)
