"""The one worker bridge: every core job the window starts runs here, off the GUI thread.

A job is the core's ``job(request, *, progress, cancel) -> result``. ``JobRunner.submit``
runs it on Qt's thread pool through superqt's ``FunctionWorker`` and hands the GUI thread
back only data, through queued signals: throttled ``Progress`` events, the result, or the
exception. Native work already lives in the core's child processes, so cancelling a job is
setting its ``CancelToken`` — the core kills the child — never killing a thread.

Errors take one road: ``Cancelled`` ends the job quietly (``job_cancelled``); every other
exception goes to the ``Notifier`` (which decides how to tell the user) and then to the
caller's ``on_error`` if it gave one. No worker ever opens a dialog.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import create_worker

from lwq_app.core.jobs import Cancelled, CancelToken, EtaEstimator, Progress, Throttle

from .notifier import Notifier

#: the fewest seconds between two progress events passed to the GUI thread
PROGRESS_INTERVAL = 0.05

ResultSlot = Callable[[Any], None]
ErrorSlot = Callable[[BaseException], None]


@dataclass(eq=False)
class Job:
    """One submitted job, as the views see it (read on the GUI thread only)."""

    id: int
    title: str
    cancel: CancelToken = field(default_factory=CancelToken)
    eta: EtaEstimator = field(default_factory=EtaEstimator)
    progress: Progress | None = None
    seconds_left: float | None = None
    #: the thread the core function ran on (set by the worker; never the GUI thread)
    thread_name: str = ""
    done: bool = False

    @property
    def cancelled(self) -> bool:
        return self.cancel.cancelled


class _Relay(QObject):
    """Lives on the GUI thread; workers emit on it, so delivery is always queued to it."""

    progressed = Signal(object, object)  # Job, Progress
    ended = Signal(object, object, object)  # Job, result, exception (or None)


class JobRunner(QObject):
    """Runs core jobs on the thread pool and reports them on the GUI thread."""

    job_started = Signal(object)  # Job
    job_progressed = Signal(object)  # Job (its .progress and .seconds_left updated)
    job_finished = Signal(object)  # Job: returned normally
    job_failed = Signal(object, object)  # Job, exception
    job_cancelled = Signal(object)  # Job
    job_ended = Signal(object)  # Job: after any of the three above
    #: every core call made through the bridge, for the test that none runs on the GUI thread
    calls: list[tuple[str, str]]

    def __init__(self, notifier: Notifier, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._notifier = notifier
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._slots: dict[int, tuple[Any, ...]] = {}
        self._relay = _Relay(self)
        self._relay.progressed.connect(self._on_progress)
        self._relay.ended.connect(self._on_ended)
        self.calls = []

    # -- submitting ---------------------------------------------------------------------
    def submit(
        self,
        title: str,
        fn: Callable[..., Any],
        request: Any,
        *,
        on_result: ResultSlot | None = None,
        on_error: ErrorSlot | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> Job:
        """Run ``fn(request, progress=…, cancel=…)`` off the GUI thread; slots run on it."""
        job = Job(next(self._ids), title)
        relay = self._relay
        # called on the worker thread; the first and last events always pass
        sink = Throttle(lambda p: relay.progressed.emit(job, p), PROGRESS_INTERVAL)

        def run() -> None:  # worker thread
            job.thread_name = threading.current_thread().name
            self.calls.append((title, job.thread_name))
            try:
                if threading.current_thread() is threading.main_thread():  # pragma: no cover
                    raise RuntimeError(f"job {title!r} ran on the GUI thread")
                result = fn(request, progress=sink, cancel=job.cancel)
            except BaseException as exc:  # handed to the GUI thread, not lost
                relay.ended.emit(job, None, exc)
            else:
                relay.ended.emit(job, result, None)

        worker = create_worker(run, _start_thread=False)  # superqt keeps it until it ends
        self._jobs[job.id] = job
        self._slots[job.id] = (on_result, on_error, on_cancel)
        self.job_started.emit(job)
        worker.start()
        return job

    def submit_call(
        self,
        title: str,
        fn: Callable[[], Any],
        *,
        on_result: ResultSlot | None = None,
        on_error: ErrorSlot | None = None,
    ) -> Job:
        """``submit`` for a quick core function that reports no progress and has no cancel
        point (a plan file read or write, a table of readouts): ``fn()`` off the GUI thread."""
        return self.submit(title, _plain_call, fn, on_result=on_result, on_error=on_error)

    # -- control --------------------------------------------------------------------------
    @property
    def running(self) -> tuple[Job, ...]:
        return tuple(j for j in self._jobs.values() if not j.done)

    def cancel(self, job: Job) -> None:
        job.cancel.cancel()

    def cancel_all(self) -> None:
        for job in self.running:
            job.cancel.cancel()

    def wait(self, timeout: float) -> bool:
        """Block until every job's thread is done (shutdown only); True if all ended."""
        return bool(QThreadPool.globalInstance().waitForDone(int(timeout * 1000)))

    # -- slots, on the GUI thread -------------------------------------------------------
    def _on_progress(self, job: Job, p: Progress) -> None:
        if job.done:
            return
        job.progress = p
        job.seconds_left = job.eta.update(p.position)
        self.job_progressed.emit(job)

    def _on_ended(self, job: Job, result: Any, exc: BaseException | None) -> None:
        on_result, on_error, on_cancel = self._slots.pop(job.id, (None, None, None))
        self._jobs.pop(job.id, None)
        job.done = True
        try:
            if isinstance(exc, Cancelled) or job.cancel.cancelled:
                self.job_cancelled.emit(job)
                if on_cancel is not None:
                    on_cancel()
            elif exc is not None:
                self.job_failed.emit(job, exc)
                self._notifier.report(exc, job.title)
                if on_error is not None:
                    on_error(exc)
            else:
                self.job_finished.emit(job)
                if on_result is not None:
                    on_result(result)
        except Exception as slot_exc:  # a bug in a view's slot: logged and shown, not lost
            self._notifier.report(slot_exc, f"{job.title} (showing the result)")
        finally:
            self.job_ended.emit(job)


def _plain_call(fn: Callable[[], Any], *, progress: object, cancel: object) -> Any:
    return fn()
