"""The status bar: the job running now and how much memory lwq uses.

Memory is the resident size of this process plus its children (llama.cpp's work runs in the
core's child processes, so the window's own figure would hide most of it), read with psutil
every ``MEMORY_MS`` — a few system calls, nothing heavy on the GUI thread.
"""

from __future__ import annotations

import contextlib

import psutil
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from lwq_app.core.jobs import format_size

from .job_panel import describe_progress
from .worker import Job, JobRunner

MEMORY_MS = 2000


def memory_in_use() -> tuple[int, int]:
    """(bytes resident in this process and its children, number of children)."""
    me = psutil.Process()
    total = me.memory_info().rss
    children = []
    with contextlib.suppress(psutil.Error):
        children = me.children(recursive=True)
    for c in children:
        with contextlib.suppress(psutil.Error):
            total += c.memory_info().rss
    return total, len(children)


class AppStatusBar(QStatusBar):
    """The current job on the left, memory use on the right."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status_bar")
        self._runner = runner
        self.job_label = QLabel("Ready", self)
        self.job_label.setObjectName("status_job")
        self.job_label.setToolTip("The job running now (all of them are in the Jobs panel)")
        self.memory_label = QLabel("", self)
        self.memory_label.setObjectName("status_memory")
        self.memory_label.setToolTip(
            "Memory lwq uses now: this window plus its worker processes (resident size)"
        )
        self.addWidget(self.job_label, 1)
        self.addPermanentWidget(self.memory_label)
        runner.job_started.connect(self._show_job)
        runner.job_progressed.connect(self._show_job)
        runner.job_ended.connect(self._on_ended)
        self._timer = QTimer(self)
        self._timer.setInterval(MEMORY_MS)
        self._timer.timeout.connect(self.refresh_memory)
        self._timer.start()
        self.refresh_memory()

    def _show_job(self, job: Job) -> None:
        running = self._runner.running
        more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
        pct = "" if job.progress is None else f" {job.progress.position:.0%}"
        self.job_label.setText(f"{job.title}: {describe_progress(job)}{pct}{more}")

    def _on_ended(self, _job: Job) -> None:
        running = self._runner.running
        if running:
            self._show_job(running[-1])
        else:
            self.job_label.setText("Ready")

    def refresh_memory(self) -> None:
        try:
            used, n = memory_in_use()
        except psutil.Error:
            return
        extra = f" ({n} worker process{'es' if n != 1 else ''})" if n else ""
        self.memory_label.setText(f"Memory {format_size(used)}{extra}")

    def stop(self) -> None:
        self._timer.stop()
