"""The speed test's turn in the run queue: once asked for, it waits for the running jobs and
then runs alone.

A speed figure means little with other work on the machine, least of all lwq's own: while a
speed test is waiting or running, ``blocks`` tells the queue to start nothing. Before it is
queued the machine's load is sampled (``results.speed.machine_load``, half a second, so off
the GUI thread) and a busy machine is said through the notifier. The test itself is the
core's ``speed_test`` (benches at normal priority, each record stored beside its model).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from lwq_app.core.results.speed import (
    MachineLoad,
    SpeedTestRequest,
    SpeedTestResult,
    machine_load,
    speed_test,
)

from .notifier import Notifier
from .worker import Job, JobRunner


class SpeedTestGate(QObject):
    """Speed tests asked for (in order) and the one running."""

    changed = Signal()  # a test was asked for, started or ended: the queue may start again
    tested = Signal(object)  # SpeedTestResult
    stopped = Signal()  # a running test was stopped from outside (a shutdown): start nothing

    def __init__(self, runner: JobRunner, notifier: Notifier, parent: QObject | None = None):
        super().__init__(parent)
        self._runner, self._notifier = runner, notifier
        self._pending: list[SpeedTestRequest] = []
        self._job: Job | None = None
        self._cancelled = False  # the user stopped the running test

    @property
    def job(self) -> Job | None:
        return self._job

    @property
    def waiting(self) -> bool:
        """A test was asked for and waits for the running jobs to end."""
        return bool(self._pending) and self._job is None

    def ask(self, request: SpeedTestRequest) -> None:
        """Queue ``request`` once the machine's load is known (a busy machine is said)."""

        def go(load: MachineLoad | None = None) -> None:
            if load is not None and load.busy:
                self._notifier.warn(
                    "Speed test",
                    f"the machine is busy ({load.describe()}): the figures will be lower "
                    "than on an idle machine",
                )
            self._pending.append(request)
            self.changed.emit()

        self._runner.submit_call(
            "Measure the machine's load", machine_load, on_result=go, on_error=lambda _e: go()
        )

    def blocks(self, idle: bool) -> bool:
        """Whether the queue must start nothing now; with the queue ``idle``, the first test
        waiting starts."""
        if self._job is not None:
            return True
        if not self._pending:
            return False
        if idle:
            self._start(self._pending.pop(0))
        return True

    def cancel(self) -> None:
        """Drop the tests asked for and stop the one running."""
        self._pending.clear()
        if self._job is not None:
            self._cancelled = True
            self._runner.cancel(self._job)
        self.changed.emit()

    def drop_waiting(self) -> None:
        """Forget the tests asked for (a shutdown is under way)."""
        self._pending.clear()
        self.changed.emit()

    def _start(self, request: SpeedTestRequest) -> None:
        names = ", ".join(m.name for m in request.models)
        self._job = self._runner.submit(
            f"Speed test of {names}",
            speed_test,
            request,
            on_result=self._on_result,
            on_error=lambda _e: self._ended(),
            on_cancel=self._on_cancel,
        )
        self.changed.emit()

    def _ended(self) -> None:
        self._job = None
        self.changed.emit()

    def _on_result(self, result: SpeedTestResult) -> None:
        self._job = None
        self.tested.emit(result)
        self._ended()

    def _on_cancel(self) -> None:
        self._pending.clear()
        if not self._cancelled:
            self.stopped.emit()
        self._cancelled = False
        self._ended()
